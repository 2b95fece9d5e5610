"""In-situ calibration from a real profiler trace: ``moesim calibrate from-trace`` (calibration/from_trace.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moesim.calibration.from_trace import attributed_us, profile_from_trace
from moesim.calibration.profile import builtin_profile
from moesim.calibration.trace_kernels import find_trace
from moesim.simulator.cli import app
from moesim.workloads.loader import load_scenario
from moesim.workloads.traces import load_trace
from moesim.workloads.traces.kineto import Kernel

EXCERPT = Path(__file__).parent / "data" / "deepseek-train-excerpt.json"
PEAKS = {"bf16_tflops": 989.4, "fp8_tflops": 1978.9, "hbm_tbps": 3.35, "sms": 132.0}


def _kernel(stream: int, start: float, dur: float) -> Kernel:
    return Kernel("k", 0, stream, start, dur, 0)


def test_concurrent_kernels_share_their_time_and_are_never_summed():
    # Two compute streams overlap for 4 µs; a communication-stream kernel keeps its own time; an instant
    # kernel takes nothing.
    kernels = [_kernel(7, 0.0, 10.0), _kernel(23, 6.0, 8.0), _kernel(27, 0.0, 30.0), _kernel(7, 12.0, 0.0)]
    shares = attributed_us(kernels, comm_streams={27})
    assert shares[0] == pytest.approx(6.0 + 4.0 / 2, abs=1e-9)
    assert shares[1] == pytest.approx(4.0 / 2 + 4.0, abs=1e-9)
    assert shares[0] + shares[1] == pytest.approx(14.0, abs=1e-9)  # the union of the two compute intervals
    assert shares[2] == 30.0 and shares[3] == 0.0


def test_from_trace_reproduces_each_class_of_the_excerpt(runner, tmp_path):
    out = tmp_path / "insitu.json"
    result = runner.invoke(app, ["calibrate", "from-trace", str(EXCERPT), "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["unknown_kernels"] == []
    classes = {c["class"]: c for c in report["classes"]}
    # Every compute class of a real FP8 MoE layer pair is fitted, GEMMs by pass and pooled per component.
    for cls in ("fp8.quant", "fp8.quant_t", "fp8.weight_t", "moe.permute", "router", "attention.bwd_pre",
                "grouped_gemm.wgrad.fp8@MLP", "gemm.fprop.fp8@ATTN", "attention.fwd"):
        assert cls in classes
    for c in classes.values():
        assert abs(c["error"]) < 0.05, c  # the fitted profile prices the trace's shapes as measured
        assert len(c["loo_errors"]) == 2  # each of the two layer pairs predicted by a profile without it
    total_trace = sum(c["trace_us"] for c in classes.values())
    total_model = sum(c["model_us"] for c in classes.values())
    assert abs(total_model / total_trace - 1) < 0.02
    profile = json.loads(out.read_text())
    assert profile["origin"] == "in-situ" and profile["provenance"]["sha256"]
    assert "cuda::per_channel_cast_and_transpose" in profile["class_kernels"]["fp8.quant_t"]
    assert profile["launch_gap"]["value_us"] > 0


def test_committed_in_situ_profile_is_what_from_trace_builds():
    trace = find_trace(Path(__file__).resolve().parents[1])
    if trace is None:
        pytest.skip("the DeepSeek trace is not beside this checkout (CI lays ../shared beside it)")
    built, _, unknown = profile_from_trace(load_trace(trace), load_scenario(preset="deepseek-v3-h800"), PEAKS)
    committed = builtin_profile("h800-trace")
    assert unknown == []
    assert [p.model_dump() for p in built.points] == [p.model_dump() for p in committed.points]
    assert built.class_kernels == committed.class_kernels and built.launch_gap == committed.launch_gap
    assert built.host == committed.host  # the host side: calibration/host_trace.py


def test_unknown_kernels_are_named_in_one_warning(runner, tmp_path):
    data = json.loads(EXCERPT.read_text())
    kernels = [e for e in data["traceEvents"] if e.get("cat") == "kernel"]
    kernels[5]["name"] = "void mystery_kernel<7>(float*)"
    path = tmp_path / "odd.json"
    path.write_text(json.dumps(data))
    result = runner.invoke(app, ["calibrate", "from-trace", str(path), "-o", str(tmp_path / "p.json")])
    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "mystery_kernel" in warnings[0] and "'add'" in warnings[0]


def _without_annotations() -> str:
    data = json.loads(EXCERPT.read_text())
    data["traceEvents"] = [e for e in data["traceEvents"] if e.get("cat") != "user_annotation"]
    return json.dumps(data)


@pytest.mark.parametrize("text, expect", [
    (lambda: "{not json", "train.json"), (lambda: '{"traceEvents": []}', "no GPU kernels"),
    (_without_annotations, "no phase annotations"),
])
def test_malformed_traces_are_one_line_errors(runner, tmp_path, text, expect):
    path = tmp_path / "train.json"
    path.write_text(text())
    result = runner.invoke(app, ["calibrate", "from-trace", str(path), "-o", str(tmp_path / "p.json")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0]
    assert not (tmp_path / "p.json").exists()


def test_simulate_says_what_priced_each_class(runner):
    result = runner.invoke(app, ["simulate", "--json"])
    data = json.loads(result.output)
    sources = data["cost_model_sources"]
    assert "in-situ" in sources["grouped_gemm.wgrad fp8"] and "cutlass" in sources["grouped_gemm.wgrad fp8"]
    rows = {r["class"]: r for r in data["op_classes"]}
    assert rows["fp8.quant_t"]["ops"] > 0 and rows["ep.notify"]["stream"] == "comm"
    deepgemm = json.loads(runner.invoke(app, ["simulate", "--json", "--set", "training.kernels=deepgemm"]).output)
    assert "published" in deepgemm["cost_model_sources"]["grouped_gemm.fprop fp8"]
    assert deepgemm["step_time_s"] < data["step_time_s"]  # DeepGEMM is faster than the kernels before it
