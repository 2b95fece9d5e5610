"""Full fidelity (every GPU, collectives as rendezvous) against representative fidelity, and stragglers in both."""

from __future__ import annotations

import pytest

from moesim.simulator.cli import app
from moesim.simulator.engine.cohorts import GpuLayout, UnitSpec, equivalence_classes, full_layout
from moesim.simulator.engine import PipelineEngine, TailSpec
from moesim.simulator.metrics import rank_breakdowns
from moesim.simulator.pricing import Segment, StagePrice
from moesim.simulator.schedules import Schedule, ScheduleError, Step, get_schedule
from moesim.simulator.simulate import simulate
from tests.conftest import tiny_dense
from moesim.workloads.loader import load_scenario
from moesim.workloads.ops import Phase, Stream
from moesim.workloads.scenario import Straggler

NO_TAIL = TailSpec(0.0, 0.0, 0.0)


def tiny_moe(**overrides):
    """DeepSeek-V2-Lite cut to 4 layers on 16 GPUs: pp 2 × dp 8, two EP groups of 4 per pipeline rank."""
    sets = {"parallelism.ep": 4, "model.layers": 4, "parallelism.stage_layers": [2, 2],
            "parallelism.global_batch": 64, "parallelism.seq_len": 1024}
    sets.update(overrides)
    return load_scenario(preset="deepseek-v2-lite-h800", overrides=[f"{k}={v}" for k, v in sets.items()])


def straggler(gpu: int, slowdown: float) -> str:
    return f'[{{"gpu": {gpu}, "slowdown": {slowdown}}}]'


def step_times(scenario) -> tuple[float, float, float]:
    rep = simulate(scenario, check_memory=False).step_time_s
    full = scenario.model_copy(update={"run": scenario.run.model_copy(update={"fidelity": "full"})})
    shared = simulate(full, check_memory=False, full_units="classes").step_time_s
    alone = simulate(full, check_memory=False, full_units="gpus").step_time_s
    return rep, shared, alone


@pytest.mark.parametrize("make", [
    lambda: tiny_dense(**{"cluster.gpus": 8, "parallelism.dp": 2, "parallelism.global_batch": 16}),
    lambda: tiny_dense(**{"cluster.gpus": 16, "parallelism.dp": 2, "parallelism.tp": 2,
                          "parallelism.global_batch": 16}),
    lambda: tiny_moe(),
    lambda: tiny_moe(**{"schedule": "dualpipe", "parallelism.global_batch": 128}),
    lambda: tiny_moe(**{"schedule": "zb-h1"}),
    lambda: tiny_moe(**{"schedule": "interleaved", "parallelism.virtual_stages": 2,
                        "parallelism.stage_layers": [1, 1, 1, 1]}),
    lambda: tiny_moe(**{"schedule": "dualpipev", "parallelism.virtual_stages": 2,
                        "parallelism.stage_layers": [1, 1, 1, 1]}),
    lambda: load_scenario(preset="deepseek-v2-lite-h800"),
], ids=["tiny-dense-dp2", "tiny-dense-tp2", "tiny-moe-1f1b", "tiny-moe-dualpipe", "tiny-moe-zbh1",
        "tiny-moe-interleaved", "tiny-moe-dualpipev", "deepseek-v2-lite"])
def test_full_and_representative_agree_on_balanced_scenarios(make):
    rep, shared, alone = step_times(make())
    assert shared == pytest.approx(rep, rel=0.01)
    assert alone == pytest.approx(rep, rel=0.01)


def test_every_gpu_its_own_unit_gives_the_same_timeline_as_shared_units():
    """Sharing identical GPUs is an optimisation only: same rows, same times, with a straggler too."""
    sc = tiny_moe(**{"run.fidelity": "full", "faults.stragglers": straggler(5, 1.4)})
    shared = simulate(sc, keep_timeline=True, check_memory=False, full_units="classes")
    alone = simulate(sc, keep_timeline=True, check_memory=False, full_units="gpus")
    assert alone.simulated_units == 16 > shared.simulated_units  # every GPU simulated; 6 classes
    assert sorted(shared.timeline.records) == sorted(alone.timeline.records)
    assert shared.timeline.gpu_events == alone.timeline.gpu_events == alone.timeline.events


@pytest.mark.parametrize("make", [
    lambda: tiny_moe(**{"schedule": "dualpipe", "parallelism.global_batch": 128}),
    lambda: tiny_dense(**{"cluster.gpus": 16, "parallelism.dp": 2, "parallelism.tp": 2,
                          "parallelism.global_batch": 16}),
], ids=["moe-dualpipe", "dense-tp2"])
def test_classes_and_gpus_agree_with_stragglers(make):
    sc = make()
    stragglers = [Straggler(gpu=1, slowdown=1.25), Straggler(gpu=9, slowdown=1.5)]
    sc = sc.model_copy(update={"run": sc.run.model_copy(update={"fidelity": "full"}),
                               "faults": sc.faults.model_copy(update={"stragglers": stragglers})})
    classes = simulate(sc, keep_timeline=True, check_memory=False, full_units="classes")
    gpus = simulate(sc, keep_timeline=True, check_memory=False, full_units="gpus")
    assert sorted(classes.timeline.records) == sorted(gpus.timeline.records)
    assert classes.step_time_s == gpus.step_time_s


def test_balanced_gpus_form_one_class_per_pipeline_rank_and_a_straggler_splits_its_group():
    sc = tiny_moe()
    assert len(set(equivalence_classes(sc, {}))) == 2
    labels = equivalence_classes(sc, {5: 1.4})
    # Rank 0: the straggler, its three EP peers, the other EP group; rank 1: GPU 13 (the straggler's pipeline
    # partner), its EP peers, the other group.
    assert len(set(labels)) == 6
    assert labels[4] == labels[6] == labels[7] != labels[5]
    assert labels[0] == labels[3] != labels[4]
    assert labels[12] == labels[14] != labels[13]


def test_straggler_in_full_mode_slows_its_ep_peers_not_the_other_group():
    base = simulate(tiny_moe(**{"run.fidelity": "full"}), keep_timeline=True, check_memory=False)
    slow = simulate(tiny_moe(**{"run.fidelity": "full", "faults.stragglers": straggler(5, 1.5)}),
                    keep_timeline=True, check_memory=False)

    def streams(result, gpu):
        compute = comm = 0.0
        dispatch_end = 0.0
        for rank, stream, start, end, label, *_ in result.timeline.records:
            if rank != gpu or label.startswith("send") or label in ("grad_reduce_scatter", "param_all_gather"):
                continue
            if stream == "compute":
                compute += end - start
            else:
                comm += end - start
                dispatch_end = max(dispatch_end, end)
        return compute, comm, dispatch_end

    members = slow.timeline.members
    assert members[5] == 1 and members[4] == 3 and members[0] == 4  # straggler, its peers, the other group
    peer_compute, peer_comm, peer_last = streams(slow, 4)
    base_compute, base_comm, base_last = streams(base, 0)
    other_compute, other_comm, _ = streams(slow, 0)
    assert peer_compute == pytest.approx(base_compute)  # the peers' own kernels are not slower ...
    assert peer_comm > 1.2 * base_comm  # ... but they wait in dispatch and combine for the straggler
    assert peer_last > base_last
    assert other_comm < peer_comm
    straggler_compute = streams(slow, 5)[0]
    assert straggler_compute == pytest.approx(1.5 * base_compute)
    # The pipeline rank's breakdown is its busiest GPU's: the straggler's.
    assert slow.stages[0].gpu == 5
    assert slow.step_time_s > base.step_time_s


def test_rendezvous_ends_for_all_members_at_the_last_arrival_plus_the_transfer():
    """Two GPUs, F = 1 s of compute then a 0.25 s EP collective; GPU 0 is 2× slow, so both end at 2.25 s."""
    segments = (Segment("ATTN", Stream.COMPUTE, 1.0, Phase.F), Segment("DISPATCH", Stream.COMM, 0.25, Phase.F,
                                                                       group="ep"))
    none = (Segment("x", Stream.COMPUTE, 0.0, Phase.B),)
    price = StagePrice({Phase.F: segments, Phase.B: none, Phase.W: none}, 0.0, 0.0, 1.0)
    groups = {"ep": (0, 2), "tp": (1, 1), "tail": (0, 2)}
    layout = GpuLayout(2, 1, [UnitSpec(0, (0,), (2.0,), [0], dict(groups), [(0, 0)]),
                              UnitSpec(0, (1,), (1.0,), [1], {**groups, "tp": (2, 1)}, [(0, 1)])], 2,
                       {0: 1, 1: 1}, 2)
    timeline = PipelineEngine(get_schedule("gpipe")(1, 1), [price], 0.0, NO_TAIL, layout=layout).run()
    dispatch = {r[0]: (r[2], r[3]) for r in timeline.records if r[4] == "DISPATCH"}
    assert dispatch == {0: (2.0, 2.25), 1: (1.0, 2.25)}
    assert timeline.makespan_s == pytest.approx(2.25)


def test_full_timeline_rows_are_gpus_on_the_ranks_that_run_their_stages():
    sc = tiny_moe(**{"run.fidelity": "full", "schedule": "dualpipe", "parallelism.global_batch": 128,
                     "faults.stragglers": straggler(9, 1.2)})
    result = simulate(sc, keep_timeline=True, check_memory=False)
    tl = result.timeline
    schedule = get_schedule("dualpipe")(2, sc.micro_batches)
    assert tl.fidelity == "full" and tl.ranks == 16
    assert sum(tl.members.values()) == 16
    for rank, stream, start, end, label, phase, mb, stage in tl.records:
        assert rank // 8 == tl.pipeline_rank[rank]
        if phase in ("F", "B", "W"):
            assert tl.pipeline_rank[rank] == schedule.rank_of(mb, stage)


def test_layout_units_cover_every_gpu_once():
    sc = load_scenario(preset="mixtral-8x7b-h100", overrides=["faults.stragglers=" + straggler(17, 1.1)])
    for units in ("classes", "gpus", "auto"):
        layout = full_layout(sc, units)
        gpus = sorted(g for u in layout.units for g in u.gpus)
        assert gpus == list(range(32))
        for u in layout.units:
            assert all(g // 8 == u.rank for g in u.gpus)
            assert layout.units[u.peers[u.rank]] is u


def test_cli_simulate_full_fidelity(runner):
    result = runner.invoke(app, ["simulate", "--preset", "deepseek-v2-lite-h800", "--set", "run.fidelity=full"])
    assert result.exit_code == 0, result.output
    assert "full fidelity" in result.output
    bad = runner.invoke(app, ["simulate", "--preset", "deepseek-v2-lite-h800", "--set", "run.fidelity=every"])
    assert bad.exit_code == 2 and "run.fidelity" in bad.output


class _BackwardFirst(Schedule):
    """A broken program: the last rank issues its backward before the forward it needs."""

    name = "backward-first"

    def programs(self):
        return [[Step(0, 0, Phase.F), Step(0, 0, Phase.B)], [Step(0, 1, Phase.B), Step(0, 1, Phase.F)]]


def test_a_program_that_cannot_finish_is_reported_as_a_deadlock_in_both_fidelities():
    price = StagePrice({p: (Segment(p.value, Stream.COMPUTE, 1.0, p),) for p in Phase}, 0.0, 0.0, 1.0)
    groups = {"ep": (0, 1), "tp": (0, 1), "tail": (0, 1)}
    layout = GpuLayout(4, 2, [UnitSpec(r, (2 * r + i,), (1.0,), [i, 2 + i],
                                       {**groups, "tail": (r, 2)}, [(0, 2 * r + i)])
                              for r in range(2) for i in range(2)], 4, {0: 1, 1: 1, 2: 1, 3: 1}, 2)
    for kwargs in ({}, {"layout": layout}):
        with pytest.raises(ScheduleError, match=r"deadlocked: (rank|GPU) \d.* stuck at B B0@\d \(\d+/\d+ tasks"):
            PipelineEngine(_BackwardFirst(2, 1), [price, price], 0.0, NO_TAIL, **kwargs).run()


def test_skewed_routing_in_full_mode_runs_each_gpu_at_its_own_expert_load():
    """Zipf routing: the busiest EP rank's GPUs set the pace (as representative prices every GPU), while the
    least loaded ones finish their expert GEMMs sooner and wait at the combine."""
    sc = tiny_moe(**{"routing.name": "zipf"})
    rep = simulate(sc, check_memory=False)
    full_sc = tiny_moe(**{"routing.name": "zipf", "run.fidelity": "full"})
    full = simulate(full_sc, keep_timeline=True, check_memory=False)
    classes = simulate(full_sc, keep_timeline=True, check_memory=False, full_units="classes")
    assert full.step_time_s == pytest.approx(rep.step_time_s, rel=1e-9)
    assert sorted(classes.timeline.records) == sorted(full.timeline.records)
    breakdowns = dict(zip(full.timeline.row_ranks(), rank_breakdowns(full.timeline, [1.0, 1.0])))
    on_rank0 = {g: b for g, b in breakdowns.items() if full.timeline.pipeline_rank[g] == 0}
    busy = {g: b.forward_s + b.backward_input_s + b.backward_weight_s for g, b in on_rank0.items()}
    busiest, idlest = max(busy, key=busy.get), min(busy, key=busy.get)
    rep_busy = rep.stages[0].forward_s + rep.stages[0].backward_input_s + rep.stages[0].backward_weight_s
    assert busy[busiest] == pytest.approx(rep_busy)
    assert busy[idlest] < busy[busiest]
    assert on_rank0[idlest].exposed_comm_s > on_rank0[busiest].exposed_comm_s
    assert full.stages[0].gpu == busiest


def test_deepseek_v3_with_a_straggler_classes_and_gpus_agree():
    """At full scale many collectives of different groups share stream positions on different pipeline ranks;
    each must still meet only its own members (a rendezvous keyed without its group once mixed them up)."""
    sc = load_scenario(preset="deepseek-v3-h800", overrides=["run.fidelity=full",
                                                              "faults.stragglers=" + straggler(200, 1.3)])
    classes = simulate(sc, keep_timeline=True, check_memory=False, full_units="classes")
    gpus = simulate(sc, keep_timeline=True, check_memory=False, full_units="gpus")
    assert classes.simulated_units < 100 < gpus.simulated_units
    assert classes.step_time_s == gpus.step_time_s
    assert sorted(classes.timeline.records) == sorted(gpus.timeline.records)
