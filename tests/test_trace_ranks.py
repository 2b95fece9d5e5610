"""The exported trace shows ranks: one named process per pipeline rank (per recorded GPU in full fidelity), and a
folder of per-rank files that HolisticTraceAnalysis (the `hta` extra) reads, rank by rank, with the idle time
moesim's own breakdown gives."""

from __future__ import annotations

import json

import pytest

from moesim.simulator.cli import app
from moesim.simulator.export import write_chrome_trace
from moesim.simulator.simulate import simulate
from moesim.workloads.loader import load_scenario

PRESET = "deepseek-v2-lite-h800"  # 2 pipeline ranks of 8 GPUs, host costs from train.json


def process_names(data: dict) -> dict[int, str]:
    return {e["pid"]: e["args"]["name"] for e in data["traceEvents"] if e.get("name") == "process_name"}


def test_full_fidelity_names_each_recorded_gpu_and_its_pipeline_rank(tmp_path):
    result = simulate(load_scenario(preset=PRESET, overrides=["run.fidelity=full"]), keep_timeline=True)
    data = json.loads(write_chrome_trace(result.timeline, tmp_path / "full.json").read_text())
    assert process_names(data) == {0: "GPU 0 (pipeline rank 0; 8 GPUs alike)",
                                   8: "GPU 8 (pipeline rank 1; 8 GPUs alike)"}
    assert {e["pid"] for e in data["traceEvents"]} == {0, 8}  # no process without events, none unnamed


def test_a_folder_gets_one_file_per_rank_each_naming_its_rank(tmp_path, runner):
    out = runner.invoke(app, ["simulate", "-p", PRESET, "--trace", str(tmp_path)])
    assert out.exit_code == 0, out.output
    files = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert files == ["rank_0.json", "rank_1.json"]
    for rank in (0, 1):
        data = json.loads((tmp_path / f"rank_{rank}.json").read_text())
        assert data["distributedInfo"]["rank"] == rank and data["distributedInfo"]["world_size"] == 2
        assert process_names(data) == {rank: f"pipeline rank {rank}"}
        assert {e["pid"] for e in data["traceEvents"]} == {rank}
    again = runner.invoke(app, ["simulate", "-p", PRESET, "--trace", str(tmp_path)])
    assert again.exit_code == 2 and "--force" in again.output
    new = runner.invoke(app, ["simulate", "-p", PRESET, "--trace", str(tmp_path / "new") + "/"])
    assert new.exit_code == 0 and sorted(p.name for p in (tmp_path / "new").iterdir()) == files
    missing = runner.invoke(app, ["simulate", "-p", PRESET, "--trace", str(tmp_path / "nope" / "deeper") + "/"])
    assert missing.exit_code == 2 and "does not exist; create it first" in missing.output


def test_holistic_trace_analysis_reads_each_rank_with_moesims_idle_time(tmp_path, monkeypatch):
    """HTA's idle time of a rank is the time, between the rank's first kernel and its last, when no kernel runs:
    moesim's bubble plus its host-bound time (the GPU waiting for the CPU to launch), less the part of them
    before the first kernel and after the last. Exact to the nanoseconds the trace is written in."""
    hta = pytest.importorskip("hta.trace_analysis", reason="HolisticTraceAnalysis is not installed: "
                              "pip install 'moesim[hta]'")
    monkeypatch.setenv("HTA_DISABLE_NS_ROUNDING", "1")  # HTA would round each kernel to whole microseconds
    result = simulate(load_scenario(preset=PRESET), keep_timeline=True)
    write_chrome_trace(result.timeline, tmp_path)
    breakdown = hta.TraceAnalysis(trace_dir=str(tmp_path)).get_temporal_breakdown(visualize=False)
    assert sorted(breakdown["rank"]) == [0, 1]  # one rank per file, not every GPU folded into rank 0
    timeline = result.timeline
    for rank, stage in enumerate(result.stages):
        kernels = [r for r in timeline.records if r[0] == rank and r[1] != "host"]
        first_s, last_s = min(r[2] for r in kernels), max(r[3] for r in kernels)
        outside_s = first_s + (timeline.makespan_s - last_s)
        expected_us = (stage.bubble_s + stage.host_bound_s - outside_s) * 1e6
        idle_us = float(breakdown.loc[breakdown["rank"] == rank, "idle_time(us)"].iloc[0])
        assert idle_us == pytest.approx(expected_us, abs=1e-3 * len(kernels)), rank
    rank0 = breakdown.loc[breakdown["rank"] == 0].iloc[0]
    assert rank0["idle_time_pctg"] > 20  # the first pipeline rank's bubble, which one merged rank hid (0 %)
