"""Curves know where they were measured: domains, the shape model outside them, the rate ceiling, refused points,
and extrapolation error measured by `calibrate validate`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim.calibration.cost_model import CostModel
from moesim.calibration.domain import DOMAIN_MARGIN
from moesim.calibration.fit import ClassModel
from moesim.calibration.profile import KernelPoint, Profile, builtin_profile, load_profiles
from moesim.calibration.projection import project
from moesim.calibration.shape_model import ceiling_key, gemm_tiles
from moesim.simulator.cli import app
from moesim.simulator.simulate import simulate
from moesim.topologies.gpus import gpu_spec
from moesim.workloads.loader import load_scenario
from moesim.workloads.ops import Kind, Op, Phase
from moesim.workloads.scenario import GpuSpec

PEAKS = {"bf16_tflops": 400.0, "fp8_tflops": 800.0, "hbm_tbps": 2.0, "sms": 100.0}
H800 = GpuSpec(**gpu_spec("h800"))


def gemm_point(m: int, n: int, k: int, tflops: float, launches: int = 1, sms: int | None = None) -> KernelPoint:
    flops = 2.0 * m * n * k * launches
    return KernelPoint(op="gemm", dtype="bf16", shape=[m, n, k], tflops=tflops, time_us=flops / tflops / 1e6,
                       launches=launches, sms=sms, source="hand-made")


def test_domain_of_hand_made_points():
    points = [gemm_point(256, 512, 1024, 100), gemm_point(1024, 2048, 512, 200), gemm_point(4096, 1024, 2048, 300)]
    domain = ClassModel("gemm", "bf16", "normal", points, PEAKS).domain
    assert domain.dims == (("m", 256, 4096), ("n", 512, 2048), ("k", 512, 2048))
    assert domain.work == (2.0 * 256 * 512 * 1024, 2.0 * 4096 * 1024 * 2048)
    assert domain.sms == (100, 100)
    assert domain.outside((1024, 1024, 1024), 1, 2.0 * 1024 ** 3, 100) is None
    assert domain.outside((1024, 2048 * DOMAIN_MARGIN, 1024), 1, 2.0 * 1024 ** 3, 100) is None  # the margin
    assert domain.outside((1024, 2561, 1024), 1, 2.0 * 1024 ** 3, 100) == "n=2561 > 2048 measured"
    assert domain.outside((128, 1024, 1024), 1, 2.0 * 1024 ** 3, 100) == "m=128 < 256 measured"
    assert domain.outside((1024, 1024, 1024), 1, 2.0 * 1024 ** 3, 50) == "SMs=50 outside 100-100 measured"
    # An in-situ class total records only its largest kernel: FLOPs per kernel up to it, no single dimension.
    total = ClassModel("gemm", "bf16", "normal", [gemm_point(4096, 7168, 256, 300, launches=3, sms=80)], PEAKS)
    assert total.domain.dims == (("m", None, None), ("n", None, None), ("k", None, None))
    assert total.domain.work == (None, 2.0 * 4096 * 7168 * 256)
    assert total.domain.outside((64, 99999, 8), 1, 2.0 * 64 * 99999 * 8, 80) is None
    assert total.domain.outside((4096, 7168, 512), 1, 2.0 * 4096 * 7168 * 512, 80) == \
        "FLOPs=3.01e+10 > 1.5e+10 measured"


def test_the_calibrated_island_does_not_move():
    """DeepSeek-V3's first MoE layer per kernel class, as priced before domains existed (main at 539815e)."""
    before = {"attention.bwd": 0.0037769605476081548, "attention.fwd": 0.0012366302063282551,
              "gemm.dgrad": 0.0021676633320972236, "gemm.fprop": 0.002675356060937397,
              "gemm.wgrad": 0.0029979066532441123, "grouped_gemm.fprop": 0.0028825195062724424,
              "grouped_gemm.wgrad": 0.003980031199476193, "fp8.quant": 0.0017842952138749806}
    rows = {r["class"]: r for r in simulate(load_scenario(preset="deepseek-v3-h800")).op_classes}
    for name, seconds in before.items():
        assert rows[name]["kernel_s"] == pytest.approx(seconds, rel=1e-12, abs=0), name
        assert "outside measured range" not in rows[name]["priced_by"]


def test_deepseek_v3_output_head_is_priced_by_the_shape_model():
    result = simulate(load_scenario(preset="deepseek-v3-h800"))
    head = [o for o in result.outside_range if o["op"] == "head.F"]
    assert len(head) == 1
    assert head[0]["shape"] == "4096×129280×7168" and head[0]["why"].startswith("n=129280 > 7168 measured")
    assert "outside measured range: n=129280 > 7168 measured" in head[0]["note"]
    assert "priced by the shape model" in head[0]["note"]
    # The run's notes name the ops in one line: the head's three passes, the MTP projection's, the dense FFN's.
    summary = [n for n in result.cost_model_notes if "outside their measured range" in n]
    assert summary == ["9 ops priced outside their measured range by the shape model: ffn.up.F/B/W (gemm fp8, "
                       "772–921 TFLOPS); mtp_proj.F/B/W, head.F/B/W (gemm bf16, 674 TFLOPS); --op-classes lists "
                       "each and why"]
    # The head's 4096×129280×7168 forward on the 112 SMs left beside communication: 64,640 tiles of 128×64 in 578
    # waves, clamped at the fastest measured BF16 GEMM on this SM design (MAMF, 794.5 TFLOPS on all 132 SMs).
    model = CostModel(load_profiles(None, "h800"), H800, "cutlass")
    op = Op("head.F", Kind.GEMM, Phase.F, "HEAD", "bf16", 2.0 * 4096 * 129280 * 7168, 0.0, (4096, 129280, 7168))
    mamf = 111669149696.0 / 140.55273718816866e-6  # the H100 profile's 2048×2048×13312 point, FLOP/s
    assert model.op_time_s(op, 112) == pytest.approx(op.flops / (mamf * 112 / 132), rel=1e-12)
    assert model.outside_reason(op, 112).startswith("n=129280 > 7168 measured")


def test_h100_bf16_rate_stays_under_its_fastest_point():
    model = CostModel(builtin_profile("h100"), GpuSpec(**gpu_spec("h100")))
    n = 16384
    op = Op("big", Kind.GEMM, Phase.F, "MLP", "bf16", 2.0 * n ** 3, 0.0, (n, n, n))
    assert op.flops / model.op_time_s(op) / 1e12 == pytest.approx(794.5, rel=1e-9)  # the fit alone reached 831


@settings(max_examples=150, deadline=None)
@given(m=st.integers(1, 1 << 17), n=st.integers(1, 1 << 18), k=st.integers(1, 1 << 17),
       dtype=st.sampled_from(["bf16", "fp8"]), phase=st.sampled_from(list(Phase)), sms=st.sampled_from([66, 112, 132]))
def test_no_rate_above_the_fastest_measured_point_or_the_peak(m, n, k, dtype, phase, sms):
    model = CostModel(load_profiles(None, "h800"), H800, "cutlass")
    flops = 2.0 * m * n * k
    op = Op("x", Kind.GEMM, phase, "MLP", dtype, flops, (m * k + k * n) * 2 + m * n * 2, (m, n, k))
    seconds = model.op_time_s(op, sms)
    ceiling = model.ceilings[ceiling_key("gemm", dtype, op.gemm_pass, "")]
    peak = (H800.bf16_tflops if dtype == "bf16" else H800.fp8_tflops) * 1e12 * sms / H800.sms
    assert ceiling.fraction <= 1.0
    assert flops / seconds <= ceiling.fraction * peak * (1 + 1e-9)


def test_tiles_and_waves_by_hand():
    # 4096×256 on 112 SMs: 128×64 tiles, 32×4 = 128 tiles in 2 waves of 112 → 128/224 of the padded work used.
    assert gemm_tiles(4096, 256, 7168, 1, 112) == (pytest.approx(128 / 224), "128×64 tiles, 128 in 2 waves")
    # Many small experts: 32 groups of 40 rows each pad to a 64-row tile (m ≤ 64).
    use, _ = gemm_tiles(40, 4096, 2048, 32, 132)
    tiles = 32 * 1 * 64  # 64-row × 64-column tiles
    assert use == pytest.approx(32 * 40 * 4096 / (-(-tiles // 132) * 132 * 64 * 64))


def test_profile_point_faster_than_peak_is_refused(tmp_path, runner):
    data = json.loads(builtin_profile("h800").model_dump_json())
    data["points"][3]["tflops"] = 2500.0
    with pytest.raises(ValueError, match=r"points\[3\] \(gemm fp8_gemm_1d2d 64×7168×16384 fp8\): 2500.0 TFLOPS "
                                         r"is faster than the fp8 peak of 1978.9 TFLOPS"):
        Profile.model_validate(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    for args in (["calibrate", "show", str(bad)], ["simulate", "--profile", str(bad)]):
        out = runner.invoke(app, args)
        assert out.exit_code == 2 and "Traceback" not in out.output
        lines = out.output.strip().splitlines()
        assert len(lines) == 1 and "points[3]" in lines[0] and "peaks.fp8_tflops" in lines[0], out.output
    # The shipped profiles load: the CPU's peak is an estimate its points may beat; in-situ GB/s are not measured.
    for name in ("h800", "h800-trace", "h100", "cpu"):
        builtin_profile(name)
    # Projections too (an in-situ profile's projection keeps its model-counted GB/s, scaled by HBM bandwidth).
    for name in ("h800", "h800-trace", "h100"):
        projected = project(builtin_profile(name), gpu_spec("h200"), "h200")
        assert Profile.model_validate_json(projected.model_dump_json()).points == projected.points


def test_calibrate_validate_measures_extrapolation(runner):
    out = runner.invoke(app, ["calibrate", "validate", "--profile", "h100", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    gemm = {c["direction"]: c for c in data["extrapolation"] if c["class"] == "gemm bf16"}
    assert set(gemm) == {"small→large", "large→small"}
    assert gemm["small→large"]["fitted_on"] + len(gemm["small→large"]["curve_errors"]) == 26
    assert len(gemm["small→large"]["shape_model_errors"]) == len(gemm["small→large"]["curve_errors"])
    every = {c["class"]: c["errors"] for c in data["shape_model"]}
    assert len(every["gemm bf16"]) == 26 and len(every["attention/causal_fwd bf16"]) == 6


def test_op_classes_lists_every_op_outside_its_measured_range():
    """`simulate --op-classes` prints the whole step's out-of-range ops (the head is outside the layer table)."""
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "moesim.simulator.cli", "simulate", "--op-classes"], env=env,
                          capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    rows = [line for line in done.stdout.splitlines() if line.startswith("│ head.")]
    assert [row.split("│")[1].strip() for row in rows] == ["head.B", "head.F", "head.W"]
    assert "n=129280 > 7168 measured" in rows[1] and "674 on 112 SMs" in rows[1]


def test_calibrate_run_refuses_a_measurement_faster_than_the_peak_in_one_line(runner, monkeypatch, tmp_path):
    """A kernel timed faster than the catalogue's peak (a wrong catalogue entry, a broken timer) ends
    `calibrate run` with the point named in one line, not a pydantic dump; nothing is written."""
    import moesim.calibration.run

    def measured(*args, **kwargs):
        peaks = {"bf16_tflops": 989.4, "fp8_tflops": 1978.9, "hbm_tbps": 3.35, "sms": 132.0}
        point = KernelPoint(op="gemm", dtype="bf16", shape=[4096, 4096, 4096], kernel="torch.mm", tflops=1500.0,
                            source="calibrate run")
        return Profile(device="NVIDIA H100 80GB HBM3", origin="measured", peaks=peaks, points=[point])

    monkeypatch.setattr(moesim.calibration.run, "run_calibration", measured)
    target = tmp_path / "gpu.json"
    out = runner.invoke(app, ["calibrate", "run", "--device", "cpu", "-o", str(target)])
    assert out.exit_code == 2 and "Traceback" not in out.output
    last = out.output.strip().splitlines()[-1]
    assert last.startswith("error: calibrate run: points[0] (gemm torch.mm 4096×4096×4096 bf16): 1500.0 TFLOPS is "
                           "faster than the bf16 peak of 989.4 TFLOPS"), out.output
    assert not target.exists()
