"""--samples: jittered kernel times and resampled routing give p50/p95; the same seed gives the same numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from moesim.simulator.cli import app
from moesim.simulator.simulate import simulate
from moesim.simulator.uncertainty import sample_step_times
from tests.conftest import tiny_dense


def test_samples_spread_around_the_unjittered_step_and_repeat_with_the_seed():
    s = tiny_dense(**{"run.samples": 12})
    base = simulate(s).step_time_s
    first = sample_step_times(s)
    assert len(first.step_times_s) == 12
    assert len(set(first.step_times_s)) > 1  # the jitter does something
    assert first.quantile(0.05) < base * 1.02 and first.quantile(0.95) > base * 0.98
    assert sample_step_times(s).step_times_s == first.step_times_s  # same seed, same numbers
    other = sample_step_times(tiny_dense(**{"run.samples": 12, "run.seed": 7}))
    assert other.step_times_s != first.step_times_s


def test_more_kernel_spread_gives_a_wider_distribution():
    narrow = sample_step_times(tiny_dense(**{"run.samples": 16, "run.kernel_time_cv": 0.01}))
    wide = sample_step_times(tiny_dense(**{"run.samples": 16, "run.kernel_time_cv": 0.2}))
    assert np.std(wide.step_times_s) > 3 * np.std(narrow.step_times_s)


def test_zero_spread_reproduces_the_plain_simulation():
    s = tiny_dense(**{"run.samples": 3, "run.kernel_time_cv": 0.0})
    assert sample_step_times(s).step_times_s == pytest.approx([simulate(s).step_time_s] * 3)


def test_cli_samples_json_has_quantiles_and_a_histogram(runner):
    out = runner.invoke(app, ["simulate", "--preset", "deepseek-v2-lite-h800", "--samples", "4", "--json"])
    assert out.exit_code == 0, out.output
    samples = json.loads(out.output)["samples"]
    assert samples["samples"] == 4 and samples["p50_s"] <= samples["p95_s"]
    assert sum(samples["histogram"]["counts"]) == 4


@pytest.mark.parametrize("args,message", [
    (["simulate", "--samples", "0"], "Invalid value for '--samples'"),
    (["simulate", "--bogus"], "No such option: --bogus"),
    (["nonsuch"], "No such command 'nonsuch'"),
])
def test_usage_errors_are_one_line_with_exit_2(args, message):
    proc = subprocess.run([sys.executable, "-m", "moesim.simulator.cli", *args], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr
