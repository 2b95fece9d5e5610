"""Trace import, summary, export round trip and replay, checked against the raw events of DeepSeek's trace."""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from moesim.simulator.cli import app
from moesim.simulator.export import write_chrome_trace
from moesim.simulator.replay import replay
from moesim.simulator.simulate import simulate
from moesim.workloads.errors import ScenarioError
from moesim.workloads.loader import load_scenario
from moesim.workloads.traces import TraceError, load_trace
from moesim.workloads.traces.classify import KernelClass, classify, short_name
from moesim.workloads.traces.kineto import parse_trace
from moesim.workloads.traces.phases import comm_split, phase_instances
from moesim.workloads.traces.summary import summarize
from tests.conftest import tiny_dense

REPO = Path(__file__).resolve().parent.parent
# The full trace sits in ../shared next to a checkout; MOESIM_DEEPSEEK_TRACE points elsewhere (a worktree).
FULL_TRACE = Path(os.environ.get("MOESIM_DEEPSEEK_TRACE",
                                 REPO.parent / "shared/data/deepseek-profile-data/train.json"))
EXCERPT = REPO / "tests/data/deepseek-train-excerpt.json"
TRACE = FULL_TRACE if FULL_TRACE.is_file() else EXCERPT
PHASES = ["combine(B)", "attn(F)", "mlp(B)", "dispatch(F)", "dispatch(B)", "mlp(W)", "mlp(F)", "attn(B)",
          "attn(W)", "combine(F)"]


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(TRACE.read_text())


@pytest.fixture(scope="module")
def summary() -> dict:
    return summarize(load_trace(TRACE))


def _raw_kernels(raw):
    return [e for e in raw["traceEvents"] if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy",
                                                                                   "gpu_memset")]


def test_streams_match_raw_events(raw, summary):
    counts, durations = defaultdict(int), defaultdict(float)
    for e in _raw_kernels(raw):
        counts[e["args"]["stream"]] += 1
        durations[e["args"]["stream"]] += e["dur"]
    assert {int(s) for s in summary["streams"]} == set(counts) == {7, 23, 27}
    for stream, s in summary["streams"].items():
        assert s["kernels"] == counts[int(stream)]
        assert s["kernel_us"] == pytest.approx(durations[int(stream)])
    assert summary["trace"]["device"] == "NVIDIA H800" and summary["trace"]["sms"] == 132
    assert summary["trace"]["world_size"] == 64
    # Every GPU activity is linked to its launch by an ac2g flow.
    assert summary["trace"]["flow_links"] == len(_raw_kernels(raw))


def test_phase_times_match_raw_events(raw, summary):
    """Each phase's GPU time, recomputed from correlation ids and annotation intervals with plain loops."""
    events = raw["traceEvents"]
    launch_ts = {e["args"]["correlation"]: e["ts"] for e in events
                 if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}
    annotations = [e for e in events if e.get("cat") == "user_annotation" and e["name"] in PHASES]
    expected = defaultdict(float)
    expected_count = defaultdict(int)
    for k in _raw_kernels(raw):
        ts = launch_ts[k["args"]["correlation"]]
        inside = [a for a in annotations if a["ts"] <= ts < a["ts"] + a["dur"]]
        assert len(inside) == 1, "DeepSeek's phase annotations do not nest"
        expected[inside[0]["name"]] += k["dur"]
        expected_count[inside[0]["name"]] += 1
    assert list(summary["phases"]) == PHASES
    layers = 4 if TRACE == FULL_TRACE else 2
    for name in PHASES:
        p = summary["phases"][name]
        assert p["instances"] == layers
        assert p["gpu_us"] == pytest.approx(expected[name])
        assert p["kernels"] == expected_count[name]
        assert sum(p["per_layer_gpu_us"]) == pytest.approx(expected[name])
    # Compute phases run on the compute streams, communication phases on the communication stream.
    assert set(summary["phases"]["dispatch(F)"]["streams"]) == {"27"}
    assert set(summary["phases"]["mlp(W)"]["streams"]) == {"7", "23"}  # weight-gradient GEMMs on a side stream


def test_overlap_matches_a_microsecond_grid(raw, summary):
    """Compute/communication overlap recomputed on a 1 µs grid (the trace's times are whole microseconds)."""
    kernels = _raw_kernels(raw)
    t0 = min(k["ts"] for k in kernels)
    span = int(max(k["ts"] + k["dur"] for k in kernels) - t0) + 1
    comm, compute = np.zeros(span, bool), np.zeros(span, bool)
    for k in kernels:
        is_comm = "dpsk::ep" in k["name"] and "cast" not in k["name"]
        (comm if is_comm else compute)[int(k["ts"] - t0):int(k["ts"] - t0 + k["dur"])] = True
    o = summary["overlap"]
    assert o["comm_busy_us"] == pytest.approx(comm.sum())
    assert o["compute_busy_us"] == pytest.approx(compute.sum())
    assert o["overlap_us"] == pytest.approx((comm & compute).sum())
    assert o["comm_exposed_us"] == pytest.approx((comm & ~compute).sum())
    assert 0.9 < o["comm_hidden_fraction"] < 1.0  # DualPipe's overlapped chunk pair hides most communication


def test_comm_waiting_is_separated_from_transfer(summary):
    instances, loose = phase_instances(load_trace(TRACE))
    assert not loose
    splits = comm_split(instances)
    for name in ("dispatch(F)", "dispatch(B)", "combine(F)", "combine(B)"):
        split, phase = splits[name], summary["phases"][name]
        comm_us = sum(k.dur_us for i in instances if i.name == name for k in i.kernels
                      if classify(k.name) in (KernelClass.DISPATCH, KernelClass.COMBINE))
        assert split.total_us == pytest.approx(comm_us)
        assert split.transfer_us > 0 and split.sync_us > 0 and split.waiting_us > 0
        # The least instance of each kernel is all transfer (or sync): waiting is what the others add.
        assert phase["comm"]["waiting_us"] < comm_us / 2
    for name in ("attn(F)", "mlp(B)"):
        assert splits[name].total_us == 0.0


@pytest.mark.parametrize("name, expected", [
    ("void dpsk::ep::internode::dispatch<false, 8, true, 8>(int4*, float*)", KernelClass.DISPATCH),
    ("void dpsk::ep::internode::notify_dispatch<false, 8>(int const*)", KernelClass.DISPATCH),
    ("void dpsk::ep::internode::cached_notify<false>(int, int)", KernelClass.COMBINE),
    ("void cutlass::device_kernel<dpsk::grouped_gemm::cuda::m_grouped_fp8_ptp128c::GemmKernel>(x)",
     KernelClass.GROUPED_GEMM),
    ("void cutlass::device_kernel<dpsk::grouped_gemm::cuda::fp8_ptp128c::GemmKernel>(x)", KernelClass.GEMM),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_nn_n_tilesize128x128x64_warpgroupsize1x1x1_execute", KernelClass.GEMM),
    ("void cutlass::device_kernel<flash::FlashAttnBwd<flash::CollectiveMainloopBwd<2>>>(x)",
     KernelClass.ATTENTION_BWD),
    ("void flash::compute_attn_ws<Flash_fwd_kernel_traits<192, 128>>(x)", KernelClass.ATTENTION_FWD),
    ("void cuda::per_token_cast_to_fp8_with_channels<__nv_bfloat16, 128>(x)", KernelClass.QUANTIZE),
    ("void layer_norm::ln_fwd_kernel<layer_norm::Kernel_traits<7168u>>(x)", KernelClass.NORM),
    ("ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevComm*)", KernelClass.COLLECTIVE),
    ("void dpsk::grouped_gemm::cuda::utils::transpose<512, 128, 4, 4>(unsigned char const*)", KernelClass.OTHER),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<float>>(int)",
     KernelClass.OTHER),
])
def test_classify(name, expected):
    assert classify(name) is expected


def test_short_name():
    assert short_name("void dpsk::ep::internode::combine<false, 8>(int4*, float*)") == "dpsk::ep::internode::combine"


@pytest.mark.parametrize("content, message", [
    ("{not json", "malformed JSON"),
    ('{"traceEvents": 3}', "not a Chrome trace"),
    ('{"traceEvents": [{"ph": "X", "cat": "kernel", "ts": "soon", "dur": 1, "args": {"stream": 7}}]}', ".ts must be"),
    ('{"traceEvents": [{"ph": "X", "cat": "kernel", "ts": 1, "dur": -4, "args": {"stream": 7}}]}', "negative"),
    ('{"traceEvents": [{"ph": "X", "cat": "kernel", "ts": 1, "dur": 4, "args": {}}]}', "no integer stream"),
    ('{"traceEvents": [{"ph": "X", "cat": "cpu_op", "ts": 1, "dur": 4}]}', "no GPU kernels"),
    ('[1, 2]', "traceEvents[0] is not an object"),
])
def test_malformed_traces_fail_in_one_line(tmp_path, runner, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(TraceError, match=re.escape(message)):
        load_trace(path)
    out = runner.invoke(app, ["trace", "summarize", str(path)])
    assert out.exit_code == 2
    assert message in out.output and "Traceback" not in out.output


def test_oversized_and_missing_traces_are_refused(tmp_path, runner):
    with pytest.raises(TraceError, match=r"the limit is 1,000"):
        load_trace(TRACE, max_bytes=1000)
    out = runner.invoke(app, ["trace", "summarize", str(tmp_path / "nope.json")])
    assert out.exit_code == 2 and "not found" in out.output


def test_gzipped_traces(tmp_path):
    import gzip
    packed = tmp_path / "trace.json.gz"
    packed.write_bytes(gzip.compress(TRACE.read_bytes()))
    assert len(load_trace(packed).kernels) == len(load_trace(TRACE).kernels)
    limit = packed.stat().st_size + 1  # the file passes the size check, its contents do not
    with pytest.raises(TraceError, match=f"decompresses to more than {limit:,} bytes"):
        load_trace(packed, max_bytes=limit)
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(TraceError, match="cannot read"):
        load_trace(broken)


def test_summarize_cli(runner):
    out = runner.invoke(app, ["trace", "summarize", str(TRACE), "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["kernel_classes"]["grouped_gemm"]["kernels"] > 0
    assert data["per_layer_costs"]["attn(B)"]["compute_us"] > data["per_layer_costs"]["attn(F)"]["compute_us"]
    out = runner.invoke(app, ["trace", "summarize", str(TRACE)])
    assert out.exit_code == 0 and "dispatch(F)" in out.output and "hidden" in out.output


# --- export → import ----------------------------------------------------------------------------------------
def test_export_round_trips_through_the_importer(tmp_path):
    result = simulate(tiny_dense(), keep_timeline=True)
    timeline = result.timeline
    path = write_chrome_trace(timeline, tmp_path / "step.json")
    trace = load_trace(path)
    # Every record is a kernel but the waits for the host thread (slices of their own, "host_wait").
    kernels = [r for r in timeline.records if r[1] != "host"]
    assert len(kernels) < len(timeline.records)  # the H100 profile carries host costs
    assert len(trace.kernels) == len(kernels)
    assert trace.flow_links == len(kernels)
    busy = defaultdict(float)
    for rank, stream, start, end, *_ in kernels:
        busy[(rank, stream)] += end - start
    imported = defaultdict(float)
    for k in trace.kernels:
        imported[(k.device, k.args["stream_name"])] += k.dur_us * 1e-6
    assert imported.keys() == busy.keys()
    for key, seconds in busy.items():  # times are written in whole nanoseconds
        assert imported[key] == pytest.approx(seconds, abs=1e-9 * len(timeline.records))
    # Every F/B/W record comes back inside its own phase annotation.
    instances, loose = phase_instances(trace)
    by_name = defaultdict(int)
    for inst in instances:
        assert len(inst.kernels) == 1
        k = inst.kernels[0]
        assert inst.name == f"{k.name}({k.args['phase']})"
        by_name[inst.phase] += 1
    records_fbw = sum(1 for r in kernels if r[5] in "FBW")
    assert sum(by_name.values()) == records_fbw
    assert {k.args["phase"] for k in loose} <= {"dp", "opt"}  # the step's tail has no F/B/W phase
    s = summarize(trace)
    assert s["trace"]["world_size"] == timeline.ranks
    # The span runs from the first kernel, which starts once the host has launched it.
    first_s = min(r[2] for r in kernels)
    assert s["overlap"]["span_us"] == pytest.approx((timeline.makespan_s - first_s) * 1e6)


def test_export_is_valid_chrome_trace(tmp_path):
    timeline = simulate(tiny_dense(), keep_timeline=True).timeline
    data = json.loads(write_chrome_trace(timeline, tmp_path / "t.json").read_text())
    events = data["traceEvents"]
    names = {(e["pid"], e["args"]["name"]) for e in events if e.get("name") == "process_name"}
    assert len(names) == timeline.ranks
    for e in events:
        assert e["ph"] in ("X", "M", "s", "f")
        if e["ph"] == "X":
            assert e["dur"] >= 0 and isinstance(e["pid"], int) and isinstance(e["tid"], int)
    threads = {(e["pid"], e["args"]["name"]) for e in events if e.get("name") == "thread_name"}
    assert (0, "stream 7 (compute)") in threads and (0, "stream 27 (comm)") in threads
    # Slices on one thread must nest or follow each other (Perfetto drops those that partly overlap); it
    # reads times as whole nanoseconds.
    by_thread = defaultdict(list)
    for e in events:
        if e["ph"] == "X":
            start_ns, dur_ns = round(e["ts"] * 1000), round(e["dur"] * 1000)
            by_thread[(e["pid"], e["tid"])].append((start_ns, start_ns + dur_ns))
    for slices in by_thread.values():
        slices.sort()
        for (s0, e0), (s1, e1) in zip(slices, slices[1:]):
            assert s1 >= e0 or e1 <= e0, "partly overlapping slices on one thread"


def test_trace_option_does_not_overwrite(tmp_path, runner):
    out_file = tmp_path / "step.json"
    args = ["simulate", "--preset", "deepseek-v2-lite-h800", "--trace", str(out_file)]
    assert runner.invoke(app, args).exit_code == 0
    first = out_file.read_text()
    out = runner.invoke(app, args)
    assert out.exit_code == 2 and "--force" in out.output
    assert out_file.read_text() == first
    assert runner.invoke(app, args + ["--force"]).exit_code == 0
    out = runner.invoke(app, ["simulate", "--trace", str(tmp_path / "missing" / "x.json")])
    assert out.exit_code == 2 and "does not exist" in out.output


# --- replay -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def deepseek_replay():
    return replay(load_trace(TRACE), load_scenario(preset="deepseek-v3-h800"))


def test_replay_takes_moe_layers_from_the_trace(deepseek_replay):
    r = deepseek_replay
    assert r.costs.shapes == {"ep": 64, "tp": 1, "hidden": 7168, "seq_len": 4096}
    assert len(r.costs.costs) == 10
    instances, _ = phase_instances(load_trace(TRACE))
    mean_attn_f = np.mean([sum(k.dur_us for k in i.kernels) for i in instances if i.name == "attn(F)"]) * 1e-6
    attn_f = r.costs.costs[("ATTN", _phase("F"))]
    assert attn_f.trace_s == pytest.approx(mean_attn_f)
    for c in r.costs.costs.values():
        assert c.scale == pytest.approx(1.0)  # the preset has the traced shapes
    # 58 MoE layers: ATTN in F, B and W; DISPATCH and COMBINE in F and B.
    assert r.sources["trace"] == {"ATTN": 174, "COMBINE": 116, "DISPATCH": 116, "MLP": 174}
    assert "ATTN (dense layer)" in r.sources["cost model"] and "EMBED" in r.sources["cost model"]
    assert r.result.step_time_s > 0 and r.model_only_step_s > 0
    assert r.result.step_time_s != pytest.approx(r.model_only_step_s)


def test_replay_counts_concurrent_streams_once(raw, deepseek_replay):
    """mlp(W) runs weight-gradient GEMMs on stream 23 while stream 7 computes: its replayed compute time is the
    wall time those kernels cover (recomputed here on the trace's 1 µs grid from the raw events), not their sum."""
    events = raw["traceEvents"]
    launch_ts = {e["args"]["correlation"]: e["ts"] for e in events
                 if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}
    instances = [e for e in events if e.get("cat") == "user_annotation" and e["name"] == "mlp(W)"]
    walls, sums, streams = [], [], set()
    for a in instances:
        kernels = [k for k in _raw_kernels(raw) if a["ts"] <= launch_ts[k["args"]["correlation"]] < a["ts"] + a["dur"]
                   and "dpsk::ep" not in k["name"]]
        t0 = min(k["ts"] for k in kernels)
        busy = np.zeros(int(max(k["ts"] + k["dur"] for k in kernels) - t0) + 1, bool)
        for k in kernels:
            busy[int(k["ts"] - t0):int(k["ts"] - t0 + k["dur"])] = True
            streams.add(k["args"]["stream"])
        walls.append(busy.sum())
        sums.append(sum(k["dur"] for k in kernels))
    assert streams == {7, 23}
    mlp_w = deepseek_replay.costs.costs[("MLP", _phase("W"))]
    assert mlp_w.trace_s == pytest.approx(np.mean(walls) * 1e-6, rel=1e-9)
    assert np.mean(walls) < 0.95 * np.mean(sums)  # the side stream overlaps the main one by over 5 %
    # Phases that run on one stream are unchanged: their wall time is their kernels' sum.
    attn_f = deepseek_replay.costs.costs[("ATTN", _phase("F"))]
    costs = summarize(load_trace(TRACE))["per_layer_costs"]
    assert costs["attn(F)"]["compute_us"] == pytest.approx(costs["attn(F)"]["compute_kernel_sum_us"])
    assert costs["mlp(W)"]["compute_kernel_sum_us"] == pytest.approx(np.mean(sums))
    assert attn_f.trace_s == pytest.approx(costs["attn(F)"]["compute_us"] * 1e-6)


def test_replay_scales_with_the_scenario(deepseek_replay):
    longer = replay(load_trace(TRACE), load_scenario(preset="deepseek-v3-h800", overrides=[
        "parallelism.seq_len=8192", "parallelism.global_batch=7680", "run.check_memory=false"]))
    mlp = longer.costs.costs[("MLP", _phase("F"))]
    attn = longer.costs.costs[("ATTN", _phase("B"))]
    assert 1.8 < mlp.scale < 2.2  # twice the tokens, twice the expert rows
    assert attn.scale > mlp.scale  # attention's score matrix grows with the square of the sequence
    skewed = replay(load_trace(TRACE), load_scenario(preset="deepseek-v3-h800", overrides=[
        "routing.name=zipf", "routing.zipf_alpha=0.5"]))
    assert skewed.costs.costs[("MLP", _phase("F"))].scale > 1.5
    assert skewed.costs.costs[("ATTN", _phase("F"))].scale == pytest.approx(1.0)
    assert skewed.result.step_time_s > deepseek_replay.result.step_time_s


def test_replay_cli(tmp_path, runner):
    out_file = tmp_path / "replay.json"
    out = runner.invoke(app, ["replay", str(TRACE), "--preset", "deepseek-v2-lite-h800", "--json",
                              "--trace", str(out_file)])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["sources"]["trace"] and data["sources"]["cost model"]
    assert data["result"]["step_time_s"] > 0
    assert load_trace(out_file).kernels
    out = runner.invoke(app, ["replay", str(TRACE), "--preset", "llama3-405b-h100"])
    assert out.exit_code == 2 and "no moe" in out.output


def test_replay_onto_another_model_needs_the_traced_model(runner):
    lite = load_scenario(preset="deepseek-v2-lite-h800")
    plain = replay(load_trace(TRACE), lite)
    assert any("--traced-as" in note for note in plain.costs.notes)
    named = replay(load_trace(TRACE), lite, traced_as=load_scenario(preset="deepseek-v3-h800"))
    assert not any("--traced-as" in note for note in named.costs.notes)
    # DeepSeek-V3's attention (128 heads, hidden 7168) against V2-Lite's (16 heads, hidden 2048), priced by the
    # cost model: V2-Lite runs its attention in a fraction of V3's time, and the replay scales by that ratio.
    attn = named.costs.costs[("ATTN", _phase("F"))]
    assert attn.scale < 0.5
    assert attn.replay_s == pytest.approx(attn.trace_s * attn.scale)
    out = runner.invoke(app, ["replay", str(TRACE), "--traced-as", "bogus"])
    assert out.exit_code == 2 and "--traced-as: unknown preset 'bogus'" in out.output


def test_replay_needs_phase_annotations(tmp_path):
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({"traceEvents": [
        {"ph": "X", "cat": "kernel", "name": "gemm", "ts": 0, "dur": 5, "args": {"stream": 7}}]}))
    with pytest.raises(ScenarioError, match="phase annotations"):
        replay(load_trace(path), load_scenario(preset="deepseek-v2-lite-h800"))


def test_parse_trace_accepts_a_bare_event_list():
    trace = parse_trace([{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 2, "args": {"stream": 3}}])
    assert trace.streams == [3] and trace.span_us == 2


def _phase(letter):
    from moesim.workloads.ops import Phase
    return Phase(letter)


def _synthetic(events):
    return parse_trace({"traceEvents": events})


def test_attribution_follows_the_launching_thread():
    """Autograd launches backward kernels from its own thread while the phase range sits on the main thread;
    a kernel launched inside a non-phase range of its own thread belongs to no phase."""
    def kernel(corr, ts):
        return {"ph": "X", "cat": "kernel", "name": f"k{corr}", "pid": 0, "tid": 7, "ts": ts + 1, "dur": 1,
                "args": {"stream": 7, "correlation": corr}}

    def launch(corr, tid, ts):
        return {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 10, "tid": tid, "ts": ts,
                "dur": 1, "args": {"correlation": corr}}

    def annotation(name, tid, ts, dur):
        return {"ph": "X", "cat": "user_annotation", "name": name, "pid": 10, "tid": tid, "ts": ts, "dur": dur}

    trace = _synthetic([
        annotation("attn(B)", 1, 100, 50), annotation("optimizer", 2, 120, 10), annotation("mlp(F)", 1, 150, 50),
        launch(1, 1, 110), kernel(1, 110),   # main thread inside attn(B)
        launch(2, 3, 140), kernel(2, 140),   # autograd thread (no ranges): the process's phase at that time
        launch(3, 2, 125), kernel(3, 125),   # inside a non-phase range of its own thread
        launch(4, 1, 150), kernel(4, 150),   # the instant attn(B) ends and mlp(F) begins: mlp(F)
        launch(5, 1, 300), kernel(5, 300),   # outside every range
    ])
    instances, loose = phase_instances(trace)
    owned = {i.name: sorted(k.correlation for k in i.kernels) for i in instances}
    assert owned == {"attn(B)": [1, 2], "mlp(F)": [4]}
    assert sorted(k.correlation for k in loose) == [3, 5]
    # Flow events take precedence over correlation ids for the launch's time and thread.
    flows = _synthetic([annotation("attn(F)", 1, 0, 10), kernel(9, 50),
                        {"ph": "s", "cat": "ac2g", "id": 9, "pid": 10, "tid": 1, "ts": 5},
                        {"ph": "f", "cat": "ac2g", "id": 9, "pid": 0, "tid": 7, "ts": 51, "bp": "e"}])
    assert flows.flow_links == 1
    assert [i.name for i in phase_instances(flows)[0] if i.kernels] == ["attn(F)"]


def test_a_real_cpu_only_torch_profile_is_refused_in_one_line(tmp_path, runner):
    """torch.profiler's own Chrome export, CPU activities only: annotations but no GPU kernels to import."""
    torch = pytest.importorskip("torch")
    from torch.profiler import ProfilerActivity, profile, record_function
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for phase in ("attn(F)", "mlp(F)"):
            with record_function(phase):
                torch.randn(64, 64) @ torch.randn(64, 64)
    path = tmp_path / "cpu.json"
    prof.export_chrome_trace(str(path))
    data = json.loads(path.read_text())
    names = {e.get("name") for e in data["traceEvents"] if e.get("cat") == "user_annotation"}
    assert {"attn(F)", "mlp(F)"} <= names
    out = runner.invoke(app, ["trace", "summarize", str(path)])
    assert out.exit_code == 2 and "no GPU kernels" in out.output and "ProfilerActivity.CUDA" in out.output
