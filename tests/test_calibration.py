"""Calibration: real torch kernels at tiny sizes on CPU, fit, fallback, profiles, projection, gloo, validate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from moesim.calibration.cost_model import CostModel, point_op
from moesim.calibration.fit import fit_report
from moesim.calibration.profile import Profile, builtin_profile, load_profile
from moesim.calibration.projection import is_memory_bound, project
from moesim.calibration.sweep import preset_cases
from moesim.simulator.cli import app
from moesim.topologies.gpus import gpu_spec
from moesim.workloads.ops import Kind, Op, OpClass, Phase
from moesim.workloads.scenario import GpuSpec

TINY = {"gemm": 4e6, "grouped_gemm": 4e6, "attention": 2e6, "elementwise": 2e5}


@pytest.fixture(scope="module")
def measured() -> Profile:
    """A real CPU calibration at tiny sizes: every kernel class, two cases per class."""
    pytest.importorskip("torch")
    from moesim.calibration.run import Budget, run_calibration

    return run_calibration("cpu", ops=["gemm", "grouped_gemm", "attention", "elementwise"],
                           presets=["deepseek-v2-lite-h800", "deepseek-v3-h800"], command="pytest",
                           budget=Budget(TINY, 2, 1, 3, (4096,)))


def test_cpu_benchmarks_cover_every_kernel_class(measured):
    classes = {(p.op, p.layout) for p in measured.points}
    assert {("gemm", "normal"), ("grouped_gemm", "contiguous"), ("grouped_gemm", "masked"),
            ("attention", "causal_fwd"), ("attention", "causal_bwd")} <= classes
    assert {"fp8_cast", "swiglu", "rmsnorm", "rope", "add"} <= {lay for op, lay in classes if op == "elementwise"}
    assert all(p.time_us > 0 and p.sms == 1 for p in measured.points)
    # No FP8 tensor cores on a CPU: the FP8 GEMM runs as a labelled BF16 stand-in.
    assert any("stand-in" in p.kernel and p.dtype == "bf16" for p in measured.points)
    mla = [p for p in measured.points if p.op == "attention" and p.shape[3:] == [192, 128]]
    assert mla, "MLA head dims (d_qk 192, d_v 128) are kept when shapes are scaled down"
    for key in ("device_name", "torch", "date", "command", "peaks", "fp8_gemm"):
        assert measured.provenance[key]
    assert measured.fit and measured.efficiency["memory"].value > 0


def test_fit_reproduces_its_points(measured):
    for profile in (measured, builtin_profile("h800")):
        for library in sorted({p.library for p in profile.points} - {""}) or ["deepgemm"]:
            model = CostModel(profile, profile.device_spec(), library)  # each kernel generation prices its own
            for p in profile.points:
                if p.library not in ("", library):
                    continue
                predicted = model.op_time_s(point_op(p), p.sms or int(profile.peaks["sms"]), p.layout)
                assert predicted == pytest.approx(p.seconds(), rel=1e-6), (p.op, p.layout, p.gemm_pass, p.shape)
            assert not model.fallbacks


def test_fit_curve_follows_overhead_plus_rate():
    # Points made from time = 5 µs + flops / 100 TFLOPS: the curve recovers both and has no error.
    from moesim.calibration.profile import KernelPoint

    points = []
    for m in (64, 256, 1024, 4096):
        flops = 2.0 * m * 1024 * 1024
        seconds = 5e-6 + flops / 100e12
        points.append(KernelPoint(op="gemm", dtype="bf16", shape=[m, 1024, 1024], tflops=flops / seconds / 1e12,
                                  time_us=seconds * 1e6, source="synthetic"))
    profile = Profile(device="x", peaks={"bf16_tflops": 400, "fp8_tflops": 800, "hbm_tbps": 2, "sms": 100},
                      points=points)
    (fit,) = fit_report(profile)
    assert fit.overhead_us == pytest.approx(5.0, rel=1e-6)
    assert fit.rate == pytest.approx(100.0, rel=1e-6) and fit.memory_gbps is None
    assert fit.curve_max_error < 1e-9 and fit.loo_max_error < 1e-6
    # Away from the points the model follows the curve: 2048 rows, and half the SMs halve the rate.
    model = CostModel(profile, profile.device_spec())
    op = Op("x", Kind.GEMM, Phase.F, "MLP", "bf16", 2.0 * 2048 * 1024 * 1024, 0.0, (2048, 1024, 1024))
    assert model.op_time_s(op) == pytest.approx(5e-6 + op.flops / 100e12, rel=1e-6)
    assert model.op_time_s(op, 50) > model.op_time_s(op)


def test_missing_point_falls_back_to_roofline_with_warning():
    profile = builtin_profile("h800")  # FP8 GEMM points only: no attention, no bf16 GEMM, no elementwise
    gpu = GpuSpec(**gpu_spec("h800"))
    model = CostModel(profile, gpu)
    attn = Op("core_attn.F", Kind.ATTENTION, Phase.F, "ATTN", "bf16", 1e12, 1e8, (1, 128, 4096, 192, 128))
    stated = profile.efficiency["attention"].value
    assert model.op_time_s(attn, 112) == pytest.approx(1e12 / (stated * 989.4e12 * 112 / 132))
    norm = Op("attn_norm.F", Kind.ELEMENTWISE, Phase.F, "ATTN", "bf16", 0.0, 3e8, kernel=OpClass.NORM)
    assert model.op_time_s(norm) == pytest.approx(3e8 / (profile.efficiency["memory"].value * 3.35e12))
    notes = " ".join(model.fallbacks.values())
    assert "attention in bf16: no measured points; roofline" in notes
    assert "elementwise norm: no measured points; memory roofline" in notes


def test_simulate_shows_fallback_notes_and_takes_cpu_profile():
    from moesim.simulator.simulate import simulate
    from tests.conftest import tiny_dense

    result = simulate(tiny_dense(), load_profile("h800"))
    assert any("roofline" in n for n in result.cost_model_notes)
    cpu = simulate(tiny_dense(), load_profile("cpu"))
    assert cpu.step_time_s > 0 and cpu.step_time_s != result.step_time_s


def test_profile_round_trips(measured, tmp_path):
    path = tmp_path / "p.json"
    measured.save(path)
    assert Profile.load(path) == Profile.model_validate(json.loads(path.read_text()))
    assert Profile.load(path).model_dump(exclude_none=True) == measured.model_dump(exclude_none=True)
    assert load_profile(str(path)).device == measured.device


def test_projection_labels_itself_and_scales_by_specs():
    h800 = builtin_profile("h800")
    h200 = project(h800, gpu_spec("h200"), "h200")
    assert "projected from H800-SXM5" in h200.origin and "projected" in h200.device
    assert h200.provenance["projected_onto"] == "h200" and not h200.collectives
    for before, after in zip(h800.points, h200.points):
        expected = 4.8 / 3.35 if is_memory_bound(before, h800.peaks) else 1.0  # same tensor peak, faster HBM
        assert after.tflops == pytest.approx(before.tflops * expected)
    assert any(is_memory_bound(p, h800.peaks) for p in h800.points)


def test_gloo_collectives_in_two_real_processes():
    pytest.importorskip("torch")
    from moesim.calibration.bench.collectives import bus_gbps, run_collectives

    rows = run_collectives("gloo", 2, [4096], patterns=("all_reduce", "all_to_all"), warmup=1, repeats=3)
    assert [(r[0], r[1]) for r in rows] == [("all_reduce", 4096), ("all_to_all", 4096)]
    assert all(r[2] and r[2] > 0 for r in rows)
    assert bus_gbps("all_reduce", 2, 4096, rows[0][2]) > 0


def test_sweep_derives_the_presets_shapes():
    cases = {(c.op, c.dtype, c.shape, c.groups, c.layout) for c in preset_cases(["deepseek-v3-h800"])}
    assert ("attention", "bf16", (1, 128, 4096, 192, 128), 1, "causal_fwd") in cases
    assert ("gemm", "fp8", (4096, 2112, 7168), 1, "normal") in cases  # fused q_a + kv_a, as in DeepGEMM
    assert any(op == "grouped_gemm" and g == 4 and lay == "masked" for op, _, _, g, lay in cases)


def test_validate_prints_errors_against_published_kernels(runner):
    result = runner.invoke(app, ["calibrate", "validate", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    sources = {r["source"].split()[0] for r in data["rows"]}
    assert sources == {"DeepGEMM", "trace"} and len(data["rows"]) == 56
    assert 0 < data["summary"]["all"]["mean_abs_error"] < data["summary"]["all"]["max_abs_error"] < 1


def test_committed_trace_excerpt_matches_the_trace():
    from moesim.calibration.trace_kernels import committed_excerpt, extract, find_trace

    trace = find_trace(Path(__file__).resolve().parents[1])
    if trace is None:
        pytest.skip("the DeepSeek trace is not beside this checkout")
    assert extract(trace) == committed_excerpt()


def test_cli_show_fit_compare_project(runner, tmp_path):
    out = tmp_path / "h200.json"
    assert runner.invoke(app, ["calibrate", "project", "h800", "--gpu", "h200", "-o", str(out)]).exit_code == 0
    again = runner.invoke(app, ["calibrate", "project", "h800", "--gpu", "h200", "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    show = runner.invoke(app, ["calibrate", "show", str(out)])
    assert show.exit_code == 0 and "projected from H800-SXM5" in show.output
    compare = runner.invoke(app, ["calibrate", "compare", "h800", str(out), "--json"])
    ratios = [p["time_ratio_b_over_a"] for p in json.loads(compare.output)["shared_points"]]
    assert len(ratios) == len(builtin_profile("h800").points) and min(ratios) < 1.0 and max(ratios) == pytest.approx(1.0)
    fit = runner.invoke(app, ["calibrate", "fit", "cpu"])
    assert fit.exit_code == 0 and "LOO" in fit.output


def test_cli_bad_input_is_one_line(runner, tmp_path):
    existing = tmp_path / "p.json"
    existing.write_text("{}")
    cases = [
        (["calibrate", "run", "--ops", "gemm,warp", "-o", str(tmp_path / "x.json")], "--ops warp"),
        (["calibrate", "run", "-o", str(existing)], "--force"),
        (["calibrate", "run", "--device", "tpu", "-o", str(tmp_path / "y.json")], "--device tpu"),
        (["calibrate", "show", str(tmp_path / "missing.json")], "profile"),
        (["calibrate", "project", "h800", "--gpu", "b100", "-o", str(tmp_path / "z.json")], "--gpu b100"),
    ]
    for args, expected in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output and "Traceback" not in result.output


def test_simulate_does_not_import_torch():
    code = ("import sys, moesim.simulator.cli, moesim.simulator.simulate, moesim.calibration.validate, moesim.calibration.projection; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_random_inputs_are_never_zero():
    torch = pytest.importorskip("torch")
    from moesim.calibration.timing import buffer_count, random_nonzero

    x = random_nonzero(torch, (4096,), torch.bfloat16, "cpu", torch.Generator().manual_seed(0))
    assert bool((x.abs() >= 0.5).all()) and bool((x > 0).any()) and bool((x < 0).any())
    assert buffer_count(1 << 20, 32 << 20) == 16 and buffer_count(1 << 30, 32 << 20) == 2


def test_committed_cpu_profile_reproduces_its_points():
    profile = builtin_profile("cpu")
    model = CostModel(profile, profile.device_spec())
    for p in profile.points:
        predicted = model.op_time_s(point_op(p), p.sms or int(profile.peaks["sms"]), p.layout)
        assert predicted == pytest.approx(p.seconds(), rel=1e-6), (p.op, p.layout, p.shape)


def test_validate_without_the_trace_reads_the_committed_excerpt(monkeypatch):
    import moesim.calibration.validate as validate

    monkeypatch.setattr(validate, "find_trace", lambda root: None)
    profile = builtin_profile("h800")
    rows, notes, origin = validate.validation_rows(profile, GpuSpec(**gpu_spec("h800")), Path("."))
    assert "committed excerpt" in origin and len(rows) == 56
    trace_rows = [r for r in rows if r.source.startswith("trace")]
    assert {r.sms for r in trace_rows} == {112} and all(r.measured_us > 100 for r in trace_rows)
    assert any("attention" in n for n in notes)  # the H800 profile has no attention points


def test_fp8_paths_checked_against_bf16(monkeypatch):
    # CPU torch runs torch._scaled_mm (not with block scales): enabling the FP8 path here exercises the probe,
    # which must settle on a form that agrees with BF16, and the FP8 GEMM and masked grouped GEMM built on it.
    torch = pytest.importorskip("torch")
    import moesim.calibration.bench.gemm as gemm_bench
    import moesim.calibration.bench.grouped_gemm as grouped_bench
    from moesim.calibration.timing import Timer

    monkeypatch.setattr(gemm_bench, "fp8_available", lambda torch, device: True)
    monkeypatch.setattr(grouped_bench, "fp8_available", lambda torch, device: True)
    fp8 = gemm_bench.Fp8Gemm(torch, "cpu")
    assert fp8.form in ("block", "block-contiguous", "rowwise")
    timer = Timer(torch, "cpu", 1, 2)
    got = gemm_bench.gemm(torch, timer, "cpu", 128, 256, 256, fp8, 1e6)
    assert got.dtype == "fp8" and got.seconds > 0 and "torch._scaled_mm" in got.kernel
    masked = grouped_bench.grouped_gemm(torch, timer, "cpu", 2, 40, 128, 128, "masked", 1e6, fp8,
                                        grouped_bench.Fp8GroupedGemm(torch, "cpu"))
    assert masked.dtype == "fp8" and masked.groups == 2 and masked.flops == 2.0 * 80 * 128 * 128
