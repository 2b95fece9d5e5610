"""`moesim plan` across GPU kinds: each kind on its own node (an NVL72 domain for GB200), a price per kind, and
plans ranked by time, cost, GPU-hours or energy."""

from __future__ import annotations

import json

import pytest

from moesim.simulator.cli import app
from moesim.simulator.planner.request import PlanRequest, energy_mwh
from moesim.simulator.planner.space import node_gpus
from moesim.workloads.presets import preset_data


def test_each_kind_plans_on_its_own_nvlink_domain():
    base = preset_data("deepseek-v3-h800")
    assert [node_gpus(base, k) for k in ("h800", "h100", "b200", "gb200", "gb300")] == [8, 8, 8, 64, 64]


def test_ranking_keys_and_prices_per_kind():
    request = PlanRequest(tokens=1e12, gpus_kinds=["h800", "b200"], batch_range=(1, 1), objective="energy",
                          price_per_gpu_hour=2.0, prices={"b200": 3.5})
    assert request.cost_usd(100, 10, "b200") == 100 * 10 * 24 * 3.5
    assert request.cost_usd(100, 10, "h800") == 100 * 10 * 24 * 2.0
    assert request.rank(100, 10, "b200") == (100 * 10 * 24 * 1000 / 1e6, 10)  # B200 TDP 1,000 W
    assert energy_mwh(100, 10, "h800") == 100 * 10 * 24 * 700 / 1e6
    gpu_hours = request.model_copy(update={"objective": "gpu-hours"})
    assert gpu_hours.rank(100, 10, "b200") == (24_000, 10)


def test_plan_across_kinds_ranks_by_energy(runner):
    result = runner.invoke(app, [
        "plan", "--model", "deepseek-v3", "--tokens", "2T", "--gpu", "h800,gb200", "--gpus", "1024", "--pp", "16",
        "--tp", "1", "--micro-batch-sizes", "1", "--schedules", "dualpipe", "--recompute", "none", "--zero-stages", "1",
        "--global-batch", "15360", "--objective", "energy", "--price-per-gpu-hour", "h800=2,gb200=4", "--json",
        "-w", "1"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    plans = answer["plans"]
    assert plans and [p["energy_mwh"] for p in plans] == sorted(p["energy_mwh"] for p in plans)
    assert answer["search"]["candidates"] >= 2  # layouts on both kinds; the H800 ones are set aside by their bounds
    assert answer["search"]["exact"] and plans[0]["layout"]["gpu"] == "gb200"
    for p in answer["simulated"]:
        node = p["overrides"].get("cluster.node.gpus_per_node")
        assert node == (64 if p["layout"]["gpu"] == "gb200" else None)
        price = 4 if p["layout"]["gpu"] == "gb200" else 2
        assert p["cost_usd"] == pytest.approx(p["gpu_hours"] * price, rel=1e-9)


@pytest.mark.parametrize("args, message", [
    (["--price-per-gpu-hour", "b200=3"], "--price-per-gpu-hour 'b200=3': b200 is not one of --gpu h800"),
    (["--price-per-gpu-hour", "h800=cheap"], "--price-per-gpu-hour 'h800=cheap'"),
    (["--objective", "carbon"], "choose time, cost, gpu-hours or energy"),
])
def test_plan_bad_prices_and_objectives(runner, args, message):
    result = runner.invoke(app, ["plan", "--model", "deepseek-v3", "--tokens", "1T", "--gpu", "h800", *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
