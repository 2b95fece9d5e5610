"""A GPU with no measurements (Blackwell) is priced from another GPU's measurements carried over by its specs, and
every output names the classes that were projected and by which scaling."""

from __future__ import annotations

import json

import pytest

from moesim.calibration.cost_model import CostModel
from moesim.calibration.profile import builtin_profile, load_profiles
from moesim.simulator.cli import app
from moesim.topologies.gpus import gpu_spec
from moesim.workloads.scenario import GpuSpec

B200, H800 = gpu_spec("b200"), gpu_spec("h800")


def test_calibrate_project_says_class_by_class_which_scaling_carried_it(runner):
    result = runner.invoke(app, ["calibrate", "project", "h800", "--gpu", "b200", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["classes"]
    assert rows and all(r["compute_bound"] + r["memory_bound"] == r["points"] for r in rows)
    for r in rows:  # the spec ratios, exactly: 4500 / 1978.9 FP8 tensor peak, 8.0 / 3.35 HBM
        if r["compute_bound"]:
            assert r["tensor_peak_ratio"] == pytest.approx(B200["fp8_tflops"] / H800["fp8_tflops"], rel=1e-12)
        if r["memory_bound"]:
            assert r["hbm_ratio"] == pytest.approx(B200["hbm_tbps"] / H800["hbm_tbps"], rel=1e-12)


def test_a_gpu_without_fp8_drops_fp8_points(runner):
    result = runner.invoke(app, ["calibrate", "project", "h800", "--gpu", "a100", "--json"])
    rows = json.loads(result.output)["classes"]
    assert all(r["dropped"] == r["points"] for r in rows if r["dtype"] == "fp8")


def test_cost_model_names_projected_classes_only_for_another_design():
    from moesim.workloads.ops import Kind, Op, Phase

    gemm = Op("x.F", Kind.GEMM, Phase.F, "MLP", "fp8", 2 * 4096 * 7168 * 7168, 4096 * 7168 * 3, (4096, 7168, 7168))
    on_b200 = CostModel(load_profiles(None, "b200"), GpuSpec(**B200), "deepgemm")
    on_b200.op_time_s(gemm)
    assert on_b200.projected["gemm.fprop fp8"].endswith(f"×{4500 / 1978.9:.3f} by FP8 tensor peak")
    assert "projected ×2.274 by FP8 tensor peak" in on_b200.sources["gemm.fprop fp8"]
    assert on_b200.notes()[-1].startswith("1 class projected, not measured on B200-SXM")
    on_h100 = CostModel(builtin_profile("h800"), GpuSpec(**gpu_spec("h100")), "deepgemm")  # same SMs and peaks
    on_h100.op_time_s(gemm)
    assert not on_h100.projected and not any("projected" in n for n in on_h100.notes())
