"""``moesim validate``: published runs simulated with the real engine, errors and summary, bad input."""

from __future__ import annotations

import json

import pytest
import yaml

from simulator.cli import app
from simulator.simulate import simulate
from simulator.validation import METRICS, load_runs, summary, validate_runs
from tests.conftest import tiny_dense, tiny_dense_sets
from workloads.loader import load_scenario


def _runs_file(tmp_path, runs, name="runs.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"runs": runs}, sort_keys=False))
    return path


def _tiny_run(name, metric, published, **overrides):
    return {"name": name, "preset": "mixtral-8x7b-h100", "set": tiny_dense_sets(**overrides), "metric": metric,
            "published": published, "source": "a test figure"}


def test_bundled_table_names_each_figure_and_its_source():
    runs = {r.name: r for r in load_runs()}
    deepseek = runs["deepseek-v3"]
    assert (deepseek.preset, deepseek.metric, deepseek.published) == ("deepseek-v3-h800",
                                                                      "gpu_hours_per_trillion_tokens", 180_000)
    assert "2412.19437" in deepseek.source
    llama = {r.published: r for r in runs.values() if r.preset == "llama3-405b-h100"}
    assert set(llama) == {430, 400, 380}  # Table 4: 8,192 GPUs; 16,384 GPUs; 16,384 GPUs with CP16
    for run in llama.values():
        assert "2407.21783" in run.source and "Table 4" in run.source and run.metric == "tflops_per_gpu_causal"
    assert "cluster.gpus=16384" in llama[400].set and "parallelism.cp=16" in llama[380].set
    for run in runs.values():  # every run is a valid scenario as written
        load_scenario(preset=run.preset, overrides=run.set)


def test_comparisons_are_the_engines_own_results(tmp_path):
    runs = load_runs(_runs_file(tmp_path, [
        _tiny_run("fast", "step_time_s", 1e-3),
        _tiny_run("mfu", "mfu_causal", 0.5, **{"parallelism.pp": 2, "parallelism.dp": 2}),
    ]))
    fast, mfu = validate_runs(runs)
    step = simulate(tiny_dense()).step_time_s
    assert fast.simulated == step and fast.error == pytest.approx(step / 1e-3 - 1, rel=1e-12)
    assert fast.error > 0 and fast.fits_in_memory and fast.gpus == 4
    expected = simulate(tiny_dense(**{"parallelism.pp": 2, "parallelism.dp": 2})).mfu_causal
    assert mfu.simulated == expected and mfu.error == pytest.approx(expected / 0.5 - 1, rel=1e-12)
    total = summary([fast, mfu])
    assert total["mean_abs_error"] == pytest.approx((abs(fast.error) + abs(mfu.error)) / 2, rel=1e-12)
    worst = max((fast, mfu), key=lambda c: abs(c.error))
    assert (total["worst_run"], total["worst_error"]) == (worst.name, worst.error)


def test_cli_reports_large_errors_and_exits_0(tmp_path, runner):
    path = _runs_file(tmp_path, [_tiny_run("far-off", "tokens_per_s", 1.0),
                                 _tiny_run("other", "training_days", 1e9)])
    out = runner.invoke(app, ["validate", str(path), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert [r["name"] for r in data["runs"]] == ["far-off", "other"]
    assert data["runs"][0]["error"] > 1000 and data["runs"][1]["error"] < -0.99  # a report, not a target
    assert data["summary"]["worst_run"] == "far-off"
    text = runner.invoke(app, ["validate", str(path), "--only", "other"])
    assert text.exit_code == 0 and "other" in text.output and "far-off" not in text.output
    assert "average |error|" in text.output and "a test figure" in text.output


def test_cli_on_the_bundled_deepseek_run(runner):
    out = runner.invoke(app, ["validate", "--only", "deepseek-v3", "--json"])
    assert out.exit_code == 0, out.output
    run, = json.loads(out.output)["runs"]
    expected = simulate(load_scenario(preset="deepseek-v3-h800")).gpu_hours_per_trillion_tokens
    assert run["simulated"] == expected and run["published"] == 180_000
    assert run["error"] == pytest.approx(expected / 180_000 - 1, rel=1e-12)


@pytest.mark.parametrize("runs, message", [
    ([_tiny_run("x", "speed", 1.0)], "'speed' is not a simulate result field"),
    ([_tiny_run("x", "step_time_s", 0)], "published"),
    ([dict(_tiny_run("x", "step_time_s", 1.0), preset="nope")], "run x: unknown preset 'nope'"),
    ([dict(_tiny_run("x", "step_time_s", 1.0), set=["parallelism.bogus=1"])], "run x: --set parallelism.bogus"),
    ([_tiny_run("x", "step_time_s", 1.0), _tiny_run("x", "mfu_causal", 0.5)], "x appears more than once"),
    ([dict(_tiny_run("x", "step_time_s", 1.0), source="")], "source"),
    ([], "runs"),
])
def test_bad_runs_files_are_one_line_errors(tmp_path, runner, runs, message):
    out = runner.invoke(app, ["validate", str(_runs_file(tmp_path, runs))])
    assert out.exit_code == 2, out.output
    assert message in out.output and len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output


def test_missing_malformed_and_unknown_selections(tmp_path, runner):
    out = runner.invoke(app, ["validate", str(tmp_path / "none.yaml")])
    assert out.exit_code == 2 and "not found" in out.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs: [unclosed")
    out = runner.invoke(app, ["validate", str(bad)])
    assert out.exit_code == 2 and "malformed YAML" in out.output
    out = runner.invoke(app, ["validate", "--only", "no-such-run"])
    assert out.exit_code == 2 and "no such run" in out.output and "deepseek-v3" in out.output


def test_metrics_are_result_fields():
    result = simulate(tiny_dense())
    for metric in METRICS:
        assert isinstance(getattr(result, metric), float)
