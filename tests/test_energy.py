"""Energy (kWh) and cost (USD) of a step and a run, from the scenario's energy section (simulator/energy.py)."""

from __future__ import annotations

import pytest

from moesim.simulator.energy import energy_report
from moesim.simulator.simulate import simulate
from moesim.workloads.errors import ScenarioError
from moesim.workloads.loader import load_scenario

SMALL = ["cluster.gpus=16", "parallelism.dp=8", "parallelism.pp=2", "parallelism.ep=8", "parallelism.stage_layers=null",
         "model.layers=4", "model.moe.first_dense_layers=1", "model.mtp_depth=0", "parallelism.global_batch=32",
         "run.check_memory=false"]


def test_energy_is_power_times_time_at_the_catalogue_tdp():
    scenario = load_scenario(preset="deepseek-v3-gb200-nvl72", overrides=[
        "energy.node_overhead_w_per_gpu=300", "energy.network_w_per_gpu=20", "energy.pue=1.25",
        "energy.usd_per_gpu_hour=3", "energy.usd_per_kwh=0.1"])
    out = energy_report(scenario, step_time_s=10.0, training_days=20.0)
    per_gpu_w = (1200 + 300 + 20) * 1.25  # GB200 TDP 1,200 W (catalogue), overhead, network, PUE
    step_kwh = 2048 * per_gpu_w * 10.0 / 3.6e6
    steps = 1.48e13 / (15360 * 4096)
    assert out["power_per_gpu_w"] == per_gpu_w and out["gpu_power_w"] == 1200
    assert out["kwh_per_step"] == pytest.approx(step_kwh, rel=1e-12)
    assert out["run_mwh"] == pytest.approx(step_kwh * steps / 1000, rel=1e-12)
    assert out["run_gpu_hours"] == pytest.approx(2048 * 20 * 24, rel=1e-12)
    assert out["run_usd"] == pytest.approx(2048 * 20 * 24 * 3 + step_kwh * steps * 0.1, rel=1e-12)
    assert "TDP" in out["gpu_power_source"]


def test_simulated_energy_follows_the_step_and_is_absent_without_a_section():
    with_energy = simulate(load_scenario(preset="deepseek-v3-b200", overrides=SMALL))
    row = with_energy.to_dict()["energy"]
    assert row["kwh_per_step"] == pytest.approx(16 * 1000 * with_energy.step_time_s / 3.6e6, rel=1e-12)
    assert row["run_usd"] is None  # no price given
    without = simulate(load_scenario(preset="deepseek-v3-h800", overrides=SMALL)).to_dict()
    assert "energy" not in without


def test_a_gpu_without_published_power_needs_one():
    with pytest.raises(ScenarioError, match="energy.gpu_power_w: B300-SXM .* has no published power"):
        load_scenario(preset="deepseek-v3-b200", overrides=["cluster.gpu=b300"])
    assert load_scenario(preset="deepseek-v3-b200", overrides=["cluster.gpu=b300", "energy.gpu_power_w=1100"])


def test_simulate_prints_energy_and_cost_only_with_a_section(runner):
    from moesim.simulator.cli import app

    small = [a for item in SMALL for a in ("--set", item)]
    shown = runner.invoke(app, ["simulate", "-p", "deepseek-v3-b200", *small, "--set", "energy.usd_per_gpu_hour=3"])
    text = " ".join(shown.output.split())  # the console wraps long rows
    assert shown.exit_code == 0 and "energy (per step | run)" in text and "at 1,000 W per GPU; $" in text
    hidden = runner.invoke(app, ["simulate", "-p", "deepseek-v3-h800", *small])
    assert hidden.exit_code == 0 and "energy (per step" not in hidden.output
