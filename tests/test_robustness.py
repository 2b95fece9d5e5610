"""Every bad input issue 16 found, as a new user typed it: a one-line error naming the field and the fix (exit 2,
no traceback, no numpy warning), or a correct answer; each ran into a traceback, a hang or nonsense before."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_dense
from tests.test_fuzz_cli import run_cli
from moesim.workloads.errors import ScenarioError
from moesim.workloads.files import write_atomic
from moesim.workloads.quantities import BANDWIDTH_GBYTES_PER_S, FRACTION


def refused(args: list[str], *words: str, within_s: float = 20.0) -> str:
    """Run ``moesim ARGS``; it must exit 2 quickly with one ``error:`` line holding every one of ``words``."""
    start = time.perf_counter()
    code, out, err = run_cli(args)
    assert time.perf_counter() - start < within_s, f"moesim {args} took too long to refuse"
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, out, err)
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def tiny(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(json.loads(tiny_dense().model_dump_json())))
    return path


# --- were tracebacks ---------------------------------------------------------------------------------------
def test_an_infinite_straggler_slowdown_is_refused():
    refused(["simulate", "--set", "faults.stragglers=[{gpu: 5, slowdown: .inf}]"],
            "faults.stragglers.0.slowdown", "finite")


def test_a_node_size_that_splits_ep_groups_is_refused():
    refused(["simulate", "--set", "cluster.node.gpus_per_node=3"], "cluster.node.gpus_per_node=3")
    refused(["simulate", "-p", "deepseek-v2-lite-h800", "--set", "cluster.node.gpus_per_node=6",
             "--set", "cluster.gpus=24", "--set", "parallelism.dp=12"], "parallelism.ep=8 spans nodes",
            "multiple of cluster.node.gpus_per_node=6")


def test_report_refuses_a_non_numeric_metric_and_an_all_failed_sweep(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("gpus,step_time_s,cost_usd\n8,abc,5\n16,2.0,xyz\n")
    refused(["report", str(bad), "-o", str(tmp_path / "a.html")], "row 1", "step_time_s='abc'")
    failed = tmp_path / "failed.csv"
    failed.write_text("gpus,step_time_s,status,reason\n8,,invalid,ep must divide\n16,,invalid,pp too big\n")
    refused(["report", str(failed), "-o", str(tmp_path / "b.html")], "every layout failed", "ep must divide")
    assert not list(tmp_path.glob("*.html"))


def test_a_65536_gpu_all_to_all_is_refused_before_building_anything():
    refused(["collective", "all-to-all", "--topology", "ft3", "--radix", "64", "--gpus", "65536", "--bytes", "1MB"],
            "4,294,901,760", "limit of 500,000", "--gpus", within_s=5)


def test_the_calibration_copy_is_sized_from_at_most_96_mb_of_cache(monkeypatch):
    from moesim.calibration import run
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: "491520K")  # a VM reporting its host's 480 MB L3
    assert run.cache_bytes(None, "cpu") == run.MAX_CPU_CACHE_BYTES == 96 << 20


# --- never finished ----------------------------------------------------------------------------------------
def test_a_hundred_million_micro_batch_schedule_is_refused():
    refused(["schedule", "1f1b", "--pp", "4", "--microbatches", "100000000"], "1,200,000,000",
            "limit of 1,000,000", "--microbatches", within_s=5)


def test_a_hundred_million_sequence_batch_is_refused():
    refused(["simulate", "-p", "deepseek-v2-lite-h800", "--set", "parallelism.global_batch=128000000"],
            "pipeline tasks", "parallelism.global_batch", within_s=10)


def test_a_radix_128_three_tier_fat_tree_is_refused():
    refused(["topology", "describe", "ft3", "--radix", "128"], "524,288 GPUs", "limit is 300,000", within_s=5)


# --- were silent nonsense ----------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
def test_schedule_chunk_times_must_be_finite_and_non_negative(value):
    refused(["schedule", "1f1b", "--pp", "4", "--f", value], "'--f'")


def test_schedule_times_take_units():
    code, out, _ = run_cli(["schedule", "gpipe", "--pp", "2", "--microbatches", "2", "--f", "500ms", "--b", "1s",
                            "--w", "0", "--json"])
    assert code == 0
    # GPipe, 2 ranks, 2 micro-batches: (m + p - 1) forwards then (m + p - 1) backwards.
    assert json.loads(out)["makespan"] == pytest.approx(3 * 0.5 + 3 * 1.0, abs=1e-9)


@pytest.mark.parametrize("setting, words", [
    ("cluster.network.nic_gbytes_per_s=1e-300", ("nic_gbytes_per_s", "≥ 0.001 GB/s")),
    ("training.tokens=inf", ("training.tokens", "finite")),
    ("training.tokens=1e300", ("training.tokens", "≤ 1e+18")),
    ("routing.zipf_alpha=1000", ("routing.zipf_alpha", "≤ 100")),
])
def test_out_of_range_scenario_numbers_are_refused(setting, words):
    refused(["simulate", "-p", "mixtral-8x7b-h100", "--set", setting], *words)


def test_efficiency_above_one_is_refused_alike_by_simulate_and_collective():
    both = [refused(["collective", "all-to-all", "--gpus", "16", "--nic-efficiency", "2"]),
            refused(["simulate", "-p", "mixtral-8x7b-h100", "--set", "cluster.network.nic_efficiency=2"])]
    with pytest.raises(ValueError) as rule:
        FRACTION(2)
    assert all(str(rule.value) in line for line in both)


def test_routing_top_and_collective_topk_must_be_positive():
    refused(["routing", "-p", "mixtral-8x7b-h100", "--top", "-3"], "'--top'")
    refused(["collective", "ep-dispatch", "--topk", "0"], "'--topk'")


def test_a_steep_zipf_skew_runs_without_numpy_warnings():
    code, out, _ = run_cli(["routing", "-p", "mixtral-8x7b-h100", "--set", "routing.name=zipf",
                            "--set", "routing.zipf_alpha=100", "--json"])  # run_cli fails on a RuntimeWarning
    assert code == 0
    shares = json.loads(out)["expert_tokens_per_micro_batch"]
    assert sum(sorted(shares)[-2:]) / sum(shares) > 0.99  # top-2: every token picks the two hottest experts


def test_plan_names_the_flag_of_a_nan_budget():
    refused(["plan", "-m", "mixtral-8x7b", "-t", "1T", "--budget-usd", "nan"], "'--budget-usd'", "finite")
    refused(["plan", "-m", "mixtral-8x7b", "-t", "1e400T"], "--tokens", "finite")


def test_a_directory_given_as_a_scenario_is_named_as_one(tmp_path):
    refused(["simulate", str(tmp_path)], "is a directory")


def test_a_bad_profile_names_its_field(tmp_path):
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({"device": "x", "gemm": 5}))
    refused(["simulate", "-p", "mixtral-8x7b-h100", "--profile", str(profile)], "--profile", "peaks",
            "required field")


# --- units -------------------------------------------------------------------------------------------------
def test_a_400_gbit_nic_is_50_gbytes(tiny):
    steps = []
    for value in ("400Gb/s", "50GB/s", "50", "0.05TB/s"):
        code, out, _ = run_cli(["simulate", "-p", "mixtral-8x7b-h100", "--set",
                                f"cluster.network.nic_gbytes_per_s={value}", "--json"])
        assert code == 0
        steps.append(json.loads(out)["step_time_s"])
    assert steps[1:] == [steps[0]] * 3
    assert BANDWIDTH_GBYTES_PER_S("400Gb/s") == 50.0


def test_the_old_ambiguous_names_and_units_are_refused_with_the_new_name():
    refused(["simulate", "--set", "cluster.network.nic_gbps=400"], "renamed nic_gbytes_per_s", "400Gb/s")
    refused(["simulate", "--set", "faults.reliability.storage_gbps_per_node=50"],
            "renamed storage_gbytes_per_s_per_node")
    refused(["simulate", "--set", "cluster.network.nic_gbytes_per_s=400gbps"], "ambiguous", "Gb/s", "GB/s")
    refused(["topology", "describe", "ft2", "--nic-gbps", "400"], "--nic-gbytes-per-s")


def test_a_scenario_file_with_the_old_name_is_refused(tmp_path):
    data = json.loads(tiny_dense().model_dump_json())
    data["cluster"]["network"]["nic_gbps"] = data["cluster"]["network"].pop("nic_gbytes_per_s")
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(data))
    refused(["simulate", str(path)], "cluster.network", "nic_gbps was renamed nic_gbytes_per_s")


# --- files -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_respect_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        path = write_atomic(tmp_path / "out.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_replacing_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    path.chmod(0o640)
    write_atomic(path, "new", force=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text() == "new"


def test_every_command_refuses_a_missing_output_folder(tmp_path, tiny):
    missing = tmp_path / "no" / "such"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "base": {"scenario": str(tiny)}, "grid": {"run.seed": [0]}}))
    results = tmp_path / "r.csv"
    results.write_text("gpus,step_time_s\n4,1.0\n")
    for args in (["simulate", str(tiny), "--report", str(missing / "r.html")],
                 ["simulate", str(tiny), "--trace", str(missing / "t.json")],
                 ["report", str(results), "-o", str(missing / "r.html")],
                 ["schedule", "1f1b", "--html", str(missing / "g.html")],
                 ["topology", "describe", "ft2", "--radix", "8", "--draw", str(missing / "t.html")],
                 ["sweep", str(spec), "-o", str(missing / "s.csv"), "--workers", "1"]):
        refused(args, "does not exist; create it first")
    assert not (tmp_path / "no").exists()
    with pytest.raises(ScenarioError, match="create it first"):
        write_atomic(missing / "x.json", "x")


def test_a_bug_is_one_line_and_exit_70_not_a_traceback(monkeypatch):
    """The last line of defence: an exception no input check caught (a bug) is still one line, exit 70."""
    from moesim.simulator.commands import schedule

    def broken(*_):
        raise ZeroDivisionError("float division by zero")
    monkeypatch.setattr(schedule, "_run_uniform", broken)
    monkeypatch.delenv("MOESIM_TRACEBACK", raising=False)
    code, _, err = run_cli(["schedule", "1f1b"])
    assert code == 70 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("internal error") and "ZeroDivisionError: float division by zero" in err
