"""A pipeline rank's result is the runner's breakdown extended with its memory; users' files keep their columns."""

from __future__ import annotations

from dataclasses import fields

from moesim.simulator.engine.ledger import RankBreakdown
from moesim.simulator.simulate import simulate
from moesim.simulator.sweep.row import METRIC_COLUMNS, result_columns
from tests.conftest import tiny_dense

# What `moesim simulate --json` has printed for each stage, in this order (users' files and scripts read it).
JSON_STAGE_KEYS = ["forward_s", "backward_input_s", "backward_weight_s", "exposed_comm_s", "bubble_s", "optimizer_s",
                   "comm_s", "peak_inflight", "peak_memory_gb", "weights_gb", "gradients_gb", "optimizer_states_gb",
                   "activations_gb", "gpu", "host_bound_s"]


def test_a_stage_result_holds_the_runners_breakdown_as_it_is():
    result = simulate(tiny_dense(), keep_timeline=True)
    assert all(isinstance(stage, RankBreakdown) for stage in result.stages)
    for rank, stage in enumerate(result.stages):
        breakdown = result.timeline.breakdowns[rank]
        assert {f.name: getattr(stage, f.name) for f in fields(RankBreakdown)} == vars(breakdown)


def test_json_stages_and_sweep_columns_keep_their_keys_in_order():
    result = simulate(tiny_dense())
    assert all(list(stage) == JSON_STAGE_KEYS for stage in result.to_dict()["stages"])
    stage_columns = [c for c in METRIC_COLUMNS if c.startswith("max_")]
    assert stage_columns == [f"max_{key}" for key in JSON_STAGE_KEYS]
    row = result_columns(result)
    assert [c for c in row if c.startswith("max_")] == stage_columns
    assert row["max_bubble_s"] == max(stage.bubble_s for stage in result.stages)
