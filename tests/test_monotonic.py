"""Whole-simulator sanity: the step never gets faster when the machine gets slower or the work larger."""

from __future__ import annotations

import pytest

from moesim.calibration.profile import builtin_profile
from moesim.simulator.simulate import simulate
from moesim.workloads.loader import load_scenario


def step_s(preset: str, *overrides: str, profile=None) -> float:
    return simulate(load_scenario(preset=preset, overrides=list(overrides)), profile,
                    check_memory=False).step_time_s


@pytest.mark.parametrize("preset", ["deepseek-v2-lite-h800", "mixtral-8x7b-h100"])
def test_step_time_falls_as_nic_bandwidth_rises(preset):
    times = [step_s(preset, f"cluster.network.nic_gbytes_per_s={gbps}") for gbps in (12.5, 25.0, 50.0, 100.0)]
    assert times == sorted(times, reverse=True) and times[0] > times[-1]


@pytest.mark.parametrize("preset", ["deepseek-v2-lite-h800", "mixtral-8x7b-h100"])
def test_step_time_grows_with_the_sequence_and_the_batch(preset):
    assert step_s(preset, "parallelism.seq_len=2048") < step_s(preset)
    base = load_scenario(preset=preset).parallelism.global_batch
    assert step_s(preset) < step_s(preset, f"parallelism.global_batch={2 * base}")


def test_faster_gpus_never_slow_the_step():
    # H100 and H200 share H800's tensor peaks but have more NVLink; H200 adds HBM bandwidth. The same kernel
    # measurements price all three, so that only the hardware differs (by default each GPU takes its own
    # built-in profile, whose kernels may differ: cuBLAS on H100, DeepGEMM on H800).
    h800 = builtin_profile("h800")
    times = [step_s("deepseek-v2-lite-h800", f"cluster.gpu={gpu}", profile=h800) for gpu in ("h800", "h100", "h200")]
    assert times == sorted(times, reverse=True)
