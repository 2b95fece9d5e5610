"""The built-in profiles by GPU kind: the H100 profile's published points, and simulate taking the profile of the
scenario's GPU when none is named."""

from __future__ import annotations

import json

import pytest
import yaml

from moesim.calibration.cost_model import CostModel, point_op
from moesim.calibration.profile import builtin_profile, load_profiles
from moesim.simulator.cli import app
from moesim.simulator.simulate import simulate
from tests.conftest import tiny_dense
from moesim.topologies.gpus import gpu_spec
from moesim.workloads.scenario import GpuSpec


@pytest.fixture(scope="module")
def h100():
    return builtin_profile("h100")


def test_h100_profile_is_published_and_every_point_names_its_source(h100):
    assert h100.device == "H100-SXM5" and h100.origin == "published"
    spec = gpu_spec("h100")
    assert h100.peaks == {"bf16_tflops": spec["bf16_tflops"], "fp8_tflops": spec["fp8_tflops"],
                          "hbm_tbps": spec["hbm_tbps"], "sms": float(spec["sms"])}
    classes = {(p.op, p.dtype, p.layout) for p in h100.points}
    assert classes == {("gemm", "bf16", "normal"), ("gemm", "fp8", "normal"), ("attention", "bf16", "causal_fwd"),
                       ("attention", "bf16", "causal_bwd")}
    for p in h100.points:
        assert p.kernel and ("sm_90" in p.source or "H100" in p.source)
    for p in h100.points:
        if p.op == "gemm":  # the published rate is the point's FLOPs over its time
            assert p.flops_executed() / p.seconds() / 1e12 == pytest.approx(p.tflops, rel=1e-9)
        elif p.layout == "causal_fwd":  # FlashAttention-3 counts 4·b·s²·h·d / 2 causal forward FLOPs
            b, h, s, d, _ = p.shape
            assert 4 * b * s * s * h * d / 2 / p.seconds() / 1e12 == pytest.approx(p.tflops, rel=1e-9)
    fa3 = [p for p in h100.points if p.layout == "causal_fwd" and p.shape[2] == 8192]
    assert len(fa3) == 1 and fa3[0].tflops == 602 and fa3[0].shape == [2, 16, 8192, 128, 128]


def test_h100_profile_prices_its_own_points_exactly(h100):
    model = CostModel(h100, GpuSpec(**gpu_spec("h100")))
    for p in h100.points:
        assert model.op_time_s(point_op(p)) == pytest.approx(p.seconds(), rel=1e-9)
    assert not model.fallbacks


@pytest.mark.parametrize("gpu, devices", [
    ("h100", ["H100-SXM5", "H800-SXM5"]), ("H100-SXM5", ["H100-SXM5", "H800-SXM5"]),
    ("NVIDIA H100 80GB HBM3", ["H100-SXM5", "H800-SXM5"]), ("h200", ["H100-SXM5", "H800-SXM5"]),
    ("h800", ["NVIDIA H800", "H800-SXM5"]), ("a100", ["NVIDIA H800", "H800-SXM5"]),
    # No shipped measurements: the H800's whole stack, projected (CostModel.projected says which classes).
    ("b200", ["NVIDIA H800", "H800-SXM5"]), ("GB200 (Blackwell GPU in GB200 NVL72)", ["NVIDIA H800", "H800-SXM5"]),
    ("l40s", ["H800-SXM5"])])
def test_each_gpu_is_priced_by_its_own_profiles_first(gpu, devices):
    assert [p.device for p in load_profiles(None, gpu)] == devices


def test_simulate_prices_with_the_profile_of_the_scenarios_gpu(h100):
    on_h100 = tiny_dense()
    default = simulate(on_h100)
    assert default.step_time_s == simulate(on_h100, [h100, builtin_profile("h800")]).step_time_s
    assert default.step_time_s != simulate(on_h100, builtin_profile("h800")).step_time_s
    assert not any("gemm in bf16" in n or "attention in bf16" in n for n in default.cost_model_notes)
    on_h800 = tiny_dense(**{"cluster.gpu": "h800"})
    assert simulate(on_h800).step_time_s == simulate(on_h800, load_profiles("h800-trace,h800")).step_time_s
    assert any("gemm in bf16: no measured points" in n
               for n in simulate(on_h800, builtin_profile("h800")).cost_model_notes)


def test_simulate_cli_defaults_to_the_gpus_profile_and_takes_another(tmp_path, runner, h100):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_dense().model_dump(mode="json")))
    default = runner.invoke(app, ["simulate", str(path), "--json"])
    named = runner.invoke(app, ["simulate", str(path), "--json", "--profile", "h800"])
    assert default.exit_code == 0 and named.exit_code == 0, default.output + named.output
    step = json.loads(default.output)["step_time_s"]
    assert step == simulate(tiny_dense(), [h100, builtin_profile("h800")]).step_time_s  # the H100 stack
    assert json.loads(named.output)["step_time_s"] == simulate(tiny_dense(), builtin_profile("h800")).step_time_s
