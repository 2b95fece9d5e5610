"""``moesim validate``: published runs simulated with the real engine, errors and summary, bad input."""

from __future__ import annotations

import json

import pytest
import yaml

from moesim.simulator.cli import app
from moesim.simulator.simulate import simulate
from moesim.simulator.validation import DERIVED, METRICS, OFF_ABS_ERROR, load_runs, metric_value, off, summary, validate_runs
from tests.conftest import tiny_dense, tiny_dense_sets
from moesim.workloads.loader import load_scenario
from moesim.workloads.model import parameter_counts


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


def test_bundled_table_is_wide():
    """At least 10 runs from at least three software stacks, dense and MoE, at least three with ≤ 10 B
    activated parameters; each with a source and, where the publication is silent, a note."""
    runs = load_runs()
    scenarios = {r.name: load_scenario(preset=r.preset, overrides=r.set) for r in runs}
    assert len(runs) >= 10 and len({r.stack for r in runs}) >= 3 and all(r.stack for r in runs)
    small = [n for n, s in scenarios.items() if parameter_counts(s.model).activated <= 10e9]
    assert len(small) >= 3, small
    assert {s.model.moe is None for s in scenarios.values()} == {True, False}  # dense and MoE
    assert any(scenarios[n].model.moe is not None for n in small)  # a small-activated MoE among them
    assert all(r.note and len(r.source) > 40 for r in runs)
    nemo = {r.name: r for r in runs}["llama3-8b-nemo-24.07"]  # one row read back as published
    assert (nemo.published, nemo.metric) == (12273, "tokens_per_s_per_gpu") and "8e3d65dc" in nemo.source
    titan = {r.name: r for r in runs}["llama3.1-8b-torchtitan-128gpus"]
    assert titan.published == 5605 and "Table 3" in titan.source and scenarios[titan.name].cluster.gpus == 128


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
    ([_tiny_run("x", "speed", 1.0)], "'speed' is not a validate metric"),
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


def test_metrics_are_result_fields_or_derived_from_them():
    result = simulate(tiny_dense())
    for metric in METRICS:
        if metric not in DERIVED:
            value = getattr(result, metric)
            assert isinstance(value, float) and metric_value(result, metric) == value
    assert metric_value(result, "tokens_per_s_per_gpu") == result.tokens_per_s / result.gpus == result.tokens_per_s / 4


def test_runs_off_by_more_than_10_percent_are_listed_with_why(tmp_path, runner):
    step = simulate(tiny_dense()).step_time_s
    path = _runs_file(tmp_path, [
        dict(_tiny_run("close", "step_time_s", step * 1.05), note="a note"),
        dict(_tiny_run("far", "step_time_s", step / 2), note="the note", known_gap="a missing feature"),
        dict(_tiny_run("far-note", "step_time_s", step * 2), note="only a note"),
    ])
    comparisons = validate_runs(load_runs(path))
    assert [c.name for c in off(comparisons)] == ["far", "far-note"] and OFF_ABS_ERROR == 0.10
    assert summary(comparisons)["off"] == 2
    out = runner.invoke(app, ["validate", str(path)])
    assert out.exit_code == 0, out.output
    lines = [line for line in out.output.splitlines() if line.startswith("off ")]
    assert lines == ["off far +100.0%: a missing feature", "off far-note -50.0%: cause not known; assumed: only a note"]
    assert "2 of 3 off by more than 10%" in out.output
    data = json.loads(runner.invoke(app, ["validate", str(path), "--json"]).output)
    assert data["runs"][1]["known_gap"] == "a missing feature" and data["summary"]["off"] == 2


@pytest.mark.parametrize("preset, total_b, activated_b, non_embedding_b", [
    # DeepSeek-V2 TR (arXiv 2405.04434) §3.1.2: "236B total parameters, of which 21B are activated for each token"
    ("deepseek-v2-h800", 236, 21, None),
    # Qwen3-30B-A3B model card: "30.5B in total and 3.3B activated", "Non-Embedding: 29.9B" (activated there
    # counts the embedding; moesim's does not, so only the other two are compared)
    ("qwen3-30b-a3b-h100", 30.5, None, 29.9),
    # Qwen3-235B-A22B model card: "235B in total and 22B activated", "Non-Embedding: 234B"
    ("qwen3-235b-a22b-h100", 235, 22, 234),
])
def test_new_moe_presets_have_the_published_parameter_counts(preset, total_b, activated_b, non_embedding_b):
    """Each published figure to within half a unit of its last printed digit."""
    model = load_scenario(preset=preset).model
    counts = parameter_counts(model)
    half = 0.05 if total_b % 1 else 0.5
    assert abs(counts.total / 1e9 - total_b) <= half
    if activated_b is not None:
        assert abs(counts.activated / 1e9 - activated_b) <= 0.5
    if non_embedding_b is not None:  # neither the embedding table nor the (untied) output head
        assert abs((counts.total - 2 * model.vocab * model.hidden) / 1e9 - non_embedding_b) <= half
