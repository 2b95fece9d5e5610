"""The host side of a profiler trace (issue 21): launch cost per kernel, host syncs, GPU time waiting on the host
(calibration/host_trace.py, printed and stored by ``moesim calibrate from-trace``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moesim.calibration.from_trace import comm_streams_of
from moesim.calibration.host import HostModel
from moesim.calibration.host_trace import host_report
from moesim.calibration.profile import builtin_profile, load_profiles
from moesim.calibration.trace_kernels import find_trace
from moesim.simulator.cli import app
from moesim.workloads.traces import load_trace
from moesim.workloads.traces.kineto import parse_trace

EXCERPT = Path(__file__).parent / "data" / "deepseek-train-excerpt.json"
ADD = "void at::native::vectorized_elementwise_kernel<4>(int)"
QUANT = "void cuda::per_token_cast_to_fp8_with_channels<128>(float const*)"
GEMM = "sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64"
NOTIFY = "void dpsk::ep::internode::notify_dispatch<false, 8>(int const*)"
DISPATCH = "void dpsk::ep::internode::dispatch<false, 8, true, 8>(int4*)"


def hand_trace() -> list[dict]:
    """One host thread (pid 1, tid 1), a compute stream (7) and a communication stream (20); times in µs.

    Launches return at 15, 45, 56, 75 (notify); the thread then idles 75→1200 while the GPU works through what it
    launched (a spin on the notify's token counts, which the GPU reaches at 1190), launches the dispatch (returns
    1215) and an add (1235), copies a result device-to-host (1250–1280: the GPU had drained at 1270), synchronises
    the device (1290–1310: already drained) and launches an add (1325) and a quant (1346).
    """
    events = [{"ph": "X", "cat": "cpu_op", "name": "aten::add", "pid": 1, "tid": 1, "ts": 0, "dur": 20},
              {"ph": "X", "cat": "cpu_op", "name": "deep_ep::dispatch", "pid": 1, "tid": 1, "ts": 1200, "dur": 20}]
    launches = [  # (correlation, call, call ts, call dur, GPU category, kernel, stream, kernel ts, kernel dur)
        (1, "cudaLaunchKernel", 10, 5, "kernel", ADD, 7, 20, 30),
        (2, "cudaLaunchKernel", 40, 5, "kernel", QUANT, 7, 50, 10),
        (3, "cudaLaunchKernel", 52, 4, "kernel", GEMM, 7, 60, 100),
        (4, "cudaLaunchKernelExC", 70, 5, "kernel", NOTIFY, 20, 1100, 90),
        (5, "cudaLaunchKernelExC", 1210, 5, "kernel", DISPATCH, 20, 1220, 50),
        (6, "cudaLaunchKernel", 1230, 5, "kernel", ADD, 7, 1240, 10),
        (7, "cudaMemcpyAsync", 1250, 30, "gpu_memcpy", "Memcpy DtoH (Device -> Pageable)", 7, 1260, 5),
        (9, "cudaLaunchKernel", 1320, 5, "kernel", ADD, 7, 1330, 10),
        (10, "cudaLaunchKernel", 1340, 6, "kernel", QUANT, 7, 1400, 10),
    ]
    for corr, call, ts, dur, cat, kernel, stream, kts, kdur in launches:
        events += [{"ph": "X", "cat": "cuda_runtime", "name": call, "pid": 1, "tid": 1, "ts": ts, "dur": dur,
                    "args": {"correlation": corr}},
                   {"ph": "X", "cat": cat, "name": kernel, "pid": 0, "tid": stream, "ts": kts, "dur": kdur,
                    "args": {"stream": stream, "correlation": corr, "device": 0}},
                   {"ph": "s", "cat": "ac2g", "name": "ac2g", "id": corr, "pid": 1, "tid": 1, "ts": ts},
                   {"ph": "f", "cat": "ac2g", "name": "ac2g", "id": corr, "pid": 0, "tid": stream, "ts": kts}]
    events.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaDeviceSynchronize", "pid": 1, "tid": 1,
                   "ts": 1290, "dur": 20, "args": {"correlation": 8}})
    return events


def test_host_costs_of_a_hand_made_trace():
    trace = parse_trace(hand_trace(), "hand.json")
    assert comm_streams_of(trace) == {20}
    report = host_report(trace, comm_streams_of(trace))
    assert (report.cpu_ops, report.runtime_calls, report.launches, report.flow_links) == (2, 10, 8, 9)
    # Return to return: 45-15 (quant), 56-45 (GEMM, fprop by its "tn" letters), 75-56 (notify), 1235-1215 (add),
    # 1346-1325 (quant). Left out: the dispatch (the wait is inside), the add after the copy and the sync.
    assert report.launch_us == {"fp8.quant": [30.0, 21.0], "gemm.fprop": [11.0], "ep.notify": [19.0],
                                "add": [20.0]}
    assert sorted(report.all_launch_us) == [11.0, 19.0, 20.0, 21.0, 30.0] and report.measured == 5
    syncs = [(s.name, s.blocked_us, s.own_us) for s in report.syncs]
    assert syncs == [("wait (dpsk::ep::internode::notify_dispatch)", 1125.0, 20.0),  # 75→1200; 1190→1210
                     ("cudaMemcpyAsync", 30.0, 10.0),  # the GPU drained at 1270, the call returned at 1280
                     ("cudaDeviceSynchronize", 20.0, 20.0)]  # already drained: the whole call is its own cost
    # Stream 7 idles 160→1240 (the add launched at 1235: 1075 µs waiting, 1050 of them while the host spun),
    # 1250→1260 (behind the copy's own call), 1265→1330 (the add launched at 1325: 60 µs, 35 in the copy and
    # the sync), 1340→1400 (the quant launched at 1346: 6 µs).
    assert report.compute_idle_us == 1080 + 10 + 65 + 60
    assert report.host_wait_us == 1075 + 60 + 6
    assert report.host_wait_in_sync_us == 1050 + 15 + 20
    assert report.span_us == 1390
    costs = report.costs
    assert costs.launch_us == {"add": 20.0, "ep.notify": 19.0, "fp8.quant": 25.5, "gemm.fprop": 11.0,
                               "default": 20.0}
    assert costs.sync_us == 20.0 and "hand.json" in costs.source


def test_host_model_prices_ops_from_the_costs():
    from moesim.workloads.ops import Kind, Op, OpClass, Phase
    costs = host_report(trace := parse_trace(hand_trace(), "hand.json"), comm_streams_of(trace)).costs
    model = HostModel.from_profiles([builtin_profile("h800").model_copy(update={"host": costs})])
    quant = Op("q", Kind.ELEMENTWISE, Phase.F, "ATTN", "bf16", kernel=OpClass.QUANT)
    norm = Op("n", Kind.ELEMENTWISE, Phase.F, "ATTN", "bf16", kernel=OpClass.NORM)
    assert model.op_launch_s(quant) == pytest.approx(25.5e-6, abs=1e-15)
    assert model.op_launch_s(norm) == pytest.approx(20e-6, abs=1e-15)  # a class the trace did not show: default
    assert model.sync_s == pytest.approx(20e-6, abs=1e-15)


def test_a_trace_without_host_events_still_calibrates(runner, tmp_path):
    # No CPU ops or runtime calls; the flow events still place each kernel in its phase annotation.
    data = json.loads(EXCERPT.read_text())
    data["traceEvents"] = [e for e in data["traceEvents"] if e.get("cat") not in ("cuda_runtime", "cuda_driver",
                                                                                  "cpu_op")]
    bare = tmp_path / "kernels-only.json"
    bare.write_text(json.dumps(data))
    assert host_report(load_trace(bare), set()) is None
    out = tmp_path / "insitu.json"
    result = runner.invoke(app, ["calibrate", "from-trace", str(bare), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["host"] is None and "host costs not measured" in report["host_note"]
    assert "host" not in json.loads(out.read_text()) and report["points"] > 0
    result = runner.invoke(app, ["calibrate", "from-trace", str(bare), "-o", str(out), "--force"])
    assert result.exit_code == 0 and "note: kernels-only.json: no CUDA runtime launch calls" in result.output


def test_the_excerpt_reports_its_host_side(runner, tmp_path):
    result = runner.invoke(app, ["calibrate", "from-trace", str(EXCERPT), "-o", str(tmp_path / "p.json"), "--json"])
    host = json.loads(result.output)["host"]
    assert host["launches"] == host["flow_links"] > 400
    assert 5 < host["launch_median_us"] < 100  # tens of µs per kernel, as a PyTorch host thread takes
    assert json.loads((tmp_path / "p.json").read_text())["host"]["launch_us"]["default"] == host["launch_median_us"]


def test_deepseeks_trace_host_side_and_the_shipped_profiles():
    path = find_trace(Path(__file__).resolve().parents[1])
    if path is None:
        pytest.skip("the DeepSeek trace is not beside this checkout (CI lays ../shared beside it)")
    trace = load_trace(path)
    report = host_report(trace, comm_streams_of(trace))
    assert (report.cpu_ops, report.launches, report.flow_links) == (4387, 983, 983)
    # Four spins on DeepEP's notify_dispatch (the dispatcher reads its token counts on the host; 2-23 ms each,
    # the host being that far ahead of the GPU) and the final cudaDeviceSynchronize.
    names = [s.name for s in report.syncs]
    assert names == ["wait (dpsk::ep::internode::notify_dispatch)"] * 4 + ["cudaDeviceSynchronize"]
    assert all(s.own_us < 100 for s in report.syncs)
    assert report.measured == 978 and 10 < report.costs.launch_us["default"] < 50
    # A big model's kernels hide the host: the GPU waited on it for well under 1 % of the span.
    assert 0 < report.host_wait_us < 0.01 * report.span_us
    assert builtin_profile("h800-trace").host.launch_us == report.costs.launch_us
    # The H100's published profile carries the same host costs (host CPU time does not depend on the GPU).
    for gpu in ("h800", "h100", "h200"):
        assert HostModel.from_profiles(load_profiles(None, gpu)).launch_s["default"] == pytest.approx(
            report.costs.launch_us["default"] * 1e-6, abs=1e-15)
