"""The Llama 3 405B preset as the paper ran it: TP8 CP1 PP16 DP64 on 8192 H100 with an interleaved schedule."""

from __future__ import annotations

from moesim.simulator.schedules import get_schedule
from moesim.simulator.simulate import simulate
from moesim.workloads.loader import load_scenario


def test_llama3_preset_runs_the_papers_interleaved_layout():
    sc = load_scenario(preset="llama3-405b-h100")
    par = sc.parallelism
    assert (sc.cluster.gpus, par.tp, par.cp, par.pp, par.dp, par.seq_len) == (8192, 8, 1, 16, 64, 8192)
    assert sc.tokens_per_step == 16 * 2 ** 20  # 16M tokens per batch (Table 4)
    assert (sc.schedule, par.virtual_stages, sc.micro_batches) == ("interleaved", 8, 32)
    layers = sc.layers_per_stage()
    # One layer per model chunk; the first chunk holds only the embedding, the last only the output head.
    assert len(layers) == 128 and layers[0] == layers[-1] == 0 and set(layers[1:-1]) == {1}
    schedule = get_schedule(sc.schedule)(par.pp, sc.micro_batches, par.virtual_stages)
    per_rank = [sum(layers[s] for s in schedule.rank_stages(rank)) for rank in range(par.pp)]
    assert per_rank == [7] + [8] * 14 + [7]  # one layer fewer on the first and the last stage (§3.3.2)

    result = simulate(sc)  # the memory check is on: a layout over 80 GB would raise
    assert result.fits_in_memory and max(s.peak_memory_gb for s in result.stages) <= 80
    # Megatron's interleaved warm-up, (pp − rank − 1)·2 + (v − 1)·pp forwards, plus the one in steady state.
    assert [s.peak_inflight for s in result.stages] == [2 * (16 - r - 1) + 7 * 16 + 1 for r in range(16)]
    # The bubble is (pp − 1)/v chunk-times of the rank's whole per-micro-batch work or more, far under 1F1B's.
    for s in result.stages[1:-1]:
        work_per_micro_batch = (s.forward_s + s.backward_input_s + s.backward_weight_s) / sc.micro_batches
        assert 15 / 8 * work_per_micro_batch <= s.bubble_s < 15 * work_per_micro_batch / 4


def test_llama3_16k_gpu_layouts_are_valid_schedules():
    for sets in (["cluster.gpus=16384", "parallelism.dp=128"],
                 ["cluster.gpus=16384", "parallelism.dp=8", "parallelism.cp=16", "parallelism.seq_len=131072",
                  "parallelism.global_batch=128"]):
        sc = load_scenario(preset="llama3-405b-h100", overrides=sets)
        assert sc.micro_batches == 16 and sc.tokens_per_step >= 16 * 2 ** 20
        get_schedule(sc.schedule)(sc.parallelism.pp, sc.micro_batches, sc.parallelism.virtual_stages)
