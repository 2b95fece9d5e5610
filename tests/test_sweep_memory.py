"""Sweeps check memory before simulating: a point whose memory floor is over HBM is refused unsimulated, the floor
never exceeds what the simulation measures, and invalid rows carry no metrics."""

from __future__ import annotations

import pytest

import moesim.simulator.sweep.row as row_module
from moesim.simulator.memory import memory_floor
from moesim.simulator.simulate import simulate
from moesim.simulator.sweep import parse_spec, run_sweep
from moesim.simulator.sweep.spec import base_data
from moesim.workloads.loader import load_scenario

# DeepSeek-V2-Lite on 16 H800: GPipe holds every micro-batch, so large micro-batches overflow 80 GB.
SPEC = {"name": "v2-lite memory", "base": {"preset": "deepseek-v2-lite-h800"},
        "set": {"parallelism.stage_layers": None},
        "points": [{"parallelism.pp": 1, "parallelism.dp": 16, "parallelism.ep": 16},
                   {"parallelism.pp": 3, "parallelism.dp": 8, "parallelism.ep": 8, "cluster.gpus": 24}],
        "grid": {"schedule": ["gpipe", "1f1b"], "parallelism.micro_batch_size": [1, 2, 4]}}


def test_memory_refused_points_are_never_simulated(tmp_path, monkeypatch):
    calls = []
    real = row_module.simulate

    def counting(scenario, *args, **kwargs):
        calls.append(scenario)
        return real(scenario, *args, **kwargs)

    monkeypatch.setattr(row_module, "simulate", counting)
    spec = parse_spec(SPEC)
    run = run_sweep(spec, base_data(spec), tmp_path / "out.csv", workers=1)
    invalid = [r for r in run.rows if r["status"] == "invalid"]
    floor_refused = [r for r in invalid if "needs at least" in r["reason"]]
    assert floor_refused and run.status["ok"]
    # Simulated: the points that passed the floor, nothing else.
    assert len(calls) == len(run.rows) - len(floor_refused)
    assert run.unsimulated == len(floor_refused)
    assert all("step_time_s" not in r and "max_peak_memory_gb" not in r for r in invalid)
    assert all("step_time_s" in r for r in run.rows if r["status"] == "ok")


@pytest.mark.parametrize("preset,sets", [
    ("deepseek-v2-lite-h800", ["schedule=gpipe", "parallelism.micro_batch_size=4", "parallelism.stage_layers=null",
                               "parallelism.pp=1", "parallelism.dp=16", "parallelism.ep=16"]),
    ("mixtral-8x7b-h100", ["schedule=1f1b", "parallelism.micro_batch_size=2"]),
    ("mixtral-8x7b-h100", ["schedule=zb-h1"]),
    ("mixtral-8x7b-h100", ["schedule=dualpipe", "parallelism.micro_batch_size=2"]),
    ("mixtral-8x7b-h100", ["schedule=dualpipev", "parallelism.virtual_stages=2"]),
    ("mixtral-8x7b-h100", ["schedule=interleaved", "parallelism.virtual_stages=2"]),
    ("deepseek-v3-h800", []),
])
def test_memory_floor_is_a_lower_bound(preset, sets):
    """Weights, gradients and optimizer states exactly as simulated; activations at most the simulated peak."""
    scenario = load_scenario(preset=preset, overrides=[*sets, "run.check_memory=false"])
    result = simulate(scenario)
    floors = memory_floor(scenario)
    assert len(floors) == len(result.stages)
    for floor, stage in zip(floors, result.stages):
        assert floor.weights_gb == stage.weights_gb
        assert floor.gradients_gb == stage.gradients_gb
        assert floor.optimizer_gb == stage.optimizer_states_gb
        assert 0 < floor.activations_gb <= stage.activations_gb * (1 + 1e-12)


def test_over_memory_after_simulating_is_invalid_without_metrics(monkeypatch):
    """A point the floor lets through but the simulation finds over HBM: refused with simulate's own message."""
    from moesim.simulator.memory import MemoryBreakdown, MemoryLayoutError
    from moesim.simulator.sweep.row import over_memory, run_point
    from moesim.simulator.sweep.spec import Point

    monkeypatch.setattr(row_module, "memory_floor", lambda scenario: [MemoryBreakdown(0.0, 0.0, 0.0, 0.0)])
    sets = {"schedule": "gpipe", "parallelism.micro_batch_size": 4, "parallelism.stage_layers": None,
            "parallelism.pp": 1, "parallelism.dp": 16, "parallelism.ep": 16}
    row = run_point(base_data(parse_spec(SPEC)), Point("k", sets), None)
    with pytest.raises(MemoryLayoutError) as err:
        simulate(load_scenario(preset="deepseek-v2-lite-h800", overrides=[f"{k}={'null' if v is None else v}"
                                                                           for k, v in sets.items()]))
    assert row["status"] == "invalid" and over_memory(row)
    assert row["reason"] == str(err.value)
    assert "step_time_s" not in row and "fits_in_memory" not in row
