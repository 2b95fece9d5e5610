"""The SimPy engine on pipelines whose step time is derived by hand."""

from __future__ import annotations

import numpy as np
import pytest

from moesim.simulator.engine import PipelineEngine, TailSpec, Timeline
from moesim.simulator.engine.ledger import peak_held
from moesim.simulator.metrics import rank_breakdowns, uncovered_s
from moesim.simulator.pricing import Segment, StagePrice
from moesim.simulator.schedules import ScheduleError, get_schedule
from moesim.simulator.simulate import simulate
from moesim.workloads.ops import Phase, Stream
from tests.conftest import tiny_dense

NO_TAIL = TailSpec(0.0, 0.0, 0.0)


def uniform(stages: int, f: float, b: float, w: float, comm: float = 0.0) -> list[StagePrice]:
    """Stages whose F is compute f then (optionally) a comm segment, B is b, W is w."""
    def segs(phase, t):
        out = [Segment(phase.value, Stream.COMPUTE, t, phase)]
        if comm and phase is Phase.F:
            out.append(Segment("A2A", Stream.COMM, comm, phase))
        return tuple(out)
    return [StagePrice({Phase.F: segs(Phase.F, f), Phase.B: segs(Phase.B, b), Phase.W: segs(Phase.W, w)},
                       0.0, 0.0, 1.0) for _ in range(stages)]


@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize("pp,m", [(1, 1), (2, 3), (4, 8), (8, 8), (4, 17)])
def test_textbook_makespan(name, pp, m):
    """With no communication, GPipe and 1F1B take (m + p − 1)(f + b + w); the bubble is (p − 1)(f + b + w)."""
    f, b, w = 1.0, 1.5, 0.5
    schedule = get_schedule(name)(pp, m)
    timeline = PipelineEngine(schedule, uniform(pp, f, b, w), 0.0, NO_TAIL).run()
    assert timeline.makespan_s == pytest.approx((m + pp - 1) * (f + b + w))
    for r in rank_breakdowns(timeline, [1.0] * pp):
        assert r.bubble_s == pytest.approx((pp - 1) * (f + b + w))
        assert r.forward_s == pytest.approx(m * f)


def test_sends_add_to_the_critical_path():
    """Each hop of the pipeline's fill and drain pays one send: makespan grows by 2(p − 1)·send."""
    pp, m, send = 4, 6, 0.25
    timeline = PipelineEngine(get_schedule("gpipe")(pp, m), uniform(pp, 1, 1, 1), send, NO_TAIL).run()
    assert timeline.makespan_s == pytest.approx((m + pp - 1) * 3 + 2 * (pp - 1) * send)


def test_tail_runs_after_the_pipeline():
    tail = TailSpec(0.5, 0.25, 0.125)
    timeline = PipelineEngine(get_schedule("1f1b")(2, 2), uniform(2, 1, 1, 1), 0.0, tail).run()
    assert timeline.makespan_s == pytest.approx((2 + 1) * 3 + 0.875)


def test_one_f_one_b_holds_at_most_pp_minus_rank_in_flight():
    pp, m = 4, 12
    timeline = PipelineEngine(get_schedule("1f1b")(pp, m), uniform(pp, 1, 1, 1), 0.0, NO_TAIL).run()
    assert [r.peak_inflight for r in rank_breakdowns(timeline, [1.0] * pp)] == [4, 3, 2, 1]
    timeline = PipelineEngine(get_schedule("gpipe")(pp, m), uniform(pp, 1, 1, 1), 0.0, NO_TAIL).run()
    assert [r.peak_inflight for r in rank_breakdowns(timeline, [1.0] * pp)] == [m] * pp


def test_communication_after_compute_is_exposed_in_one_chunk():
    """A single-rank chunk F = compute 1 then comm 0.5: the comm is exposed, nothing hides it."""
    timeline = PipelineEngine(get_schedule("gpipe")(1, 1), uniform(1, 1, 1, 1, comm=0.5), 0.0, NO_TAIL).run()
    (rank,) = rank_breakdowns(timeline, [1.0])
    assert rank.exposed_comm_s == pytest.approx(0.5)
    assert timeline.makespan_s == pytest.approx(3.5)


def test_uncovered_interval_arithmetic():
    assert uncovered_s([(0, 10)], [(2, 3), (5, 7)]) == pytest.approx(7)
    assert uncovered_s([(0, 1), (4, 6)], [(0, 5)]) == pytest.approx(1)
    assert uncovered_s([(1, 2)], []) == pytest.approx(1)


def test_peak_held_adds_in_one_order_whatever_order_the_chunks_come_in():
    """Chunks acquired and released at the same instants: the ledger and a timeline's records give them in different
    orders, and bytes that are not whole numbers add to other last bits in another order; the peak is the same."""
    held = {(0, 0): [0.0, 2.0], (1, 0): [0.0, 2.0], (2, 0): [0.0, 3.0], (0, 1): [1.0, 3.0], (1, 1): [1.0, 2.0]}
    activation_bytes = [0.1, 0.2, 0.3]
    results = {peak_held(dict(order), activation_bytes)
               for order in (list(held.items()), list(reversed(held.items())), sorted(held.items(), key=str))}
    assert len(results) == 1
    (count, peak_bytes), = results
    assert count == 5
    assert peak_bytes == ((((0.1 + 0.2) + 0.3) + 0.1) + 0.2)  # by instant, then by chunk


def test_stage_count_mismatch_is_an_error():
    with pytest.raises(ScheduleError):
        PipelineEngine(get_schedule("1f1b")(4, 4), uniform(3, 1, 1, 1), 0.0, NO_TAIL)


def test_tiny_scenario_step_time_from_its_chunk_times():
    """A dense 4-stage model with uniform stages except the ends: the simulated step equals the 1F1B formula
    evaluated on the priced chunk times, plus sends on the fill/drain path and the slowest rank's tail."""
    s = tiny_dense(**{"model.layers": 8, "parallelism.global_batch": 8})
    result = simulate(s, keep_timeline=True)
    assert result.step_time_s > 0 and result.micro_batches == 8
    # Re-derive with the engine's own prices but a hand-computed makespan for stages 1..2 being uniform:
    from moesim.simulator.network import AnalyticNetwork
    from moesim.simulator.simulate import cost_model_for
    from moesim.simulator.pricing import Pricer
    from moesim.workloads.model import build_stages
    pricer = Pricer(s, cost_model_for(s), AnalyticNetwork(s))
    prices = [pricer.price_stage(st) for st in build_stages(s)]
    chunk = [sum(p.phase_time_s(ph) for ph in Phase) for p in prices]
    # No tensor/expert parallel comm in this model, so every chunk is pure compute.
    assert all(p.phase_time_s(ph, Stream.COMM) == 0 for p in prices for ph in Phase)
    # The last stage (with the head) is the slowest; in 1F1B the bottleneck stage runs its m chunks back to
    # back once the pipeline has filled: step ≥ m·max(chunk) and ≤ (m + p − 1)·max(chunk) + sends + tail.
    m, p = 8, 4
    assert m * max(chunk) <= result.step_time_s
    timeline = result.timeline
    tail_end = max(r[3] for r in timeline.records)
    assert tail_end == pytest.approx(result.step_time_s)
    busy_last = sum(r[3] - r[2] for r in timeline.records if r[0] == p - 1 and r[1] == "compute")
    assert busy_last == pytest.approx(m * chunk[-1] + result.stages[-1].optimizer_s, rel=1e-9)


def test_the_engine_leaves_the_garbage_collector_as_it_found_it():
    """The engine pauses the cyclic collector for the run (speed); after the run the collector is on, off or
    frozen exactly as the caller left it."""
    import gc

    def run():
        return PipelineEngine(get_schedule("1f1b")(2, 4), uniform(2, 1, 1, 1), 0.0, NO_TAIL).run().makespan_s

    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert run() == pytest.approx(15.0)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        run()
        assert not gc.isenabled()
    finally:
        gc.enable()
    keep = [[] for _ in range(10)]
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        run()
        # Neither frozen again (more) nor unfrozen (none); a frozen object the run let go of may have died (fewer).
        assert 0 < gc.get_freeze_count() <= frozen and gc.isenabled()
    finally:
        gc.unfreeze()
    del keep


def test_the_programs_are_gone_before_the_collector_is_back_on(monkeypatch):
    """The engine's tasks die inside the run: alive when the collector comes back on, they would all be young,
    and its next collection would walk every one of them."""
    import gc

    import moesim.simulator.engine.pipeline as pipeline
    from moesim.simulator.engine.tasks import Task

    alive_at_enable = []

    class Collector:  # the gc module as the engine sees it, counting the tasks alive when it turns back on
        isenabled, disable = staticmethod(gc.isenabled), staticmethod(gc.disable)

        @staticmethod
        def enable():
            alive_at_enable.append(sum(isinstance(o, Task) for o in gc.get_objects()))
            gc.enable()

    monkeypatch.setattr(pipeline, "gc", Collector)
    engine = PipelineEngine(get_schedule("1f1b")(2, 4), uniform(2, 1, 1, 1), 0.0, NO_TAIL)
    assert engine.run().makespan_s == pytest.approx(15.0)
    assert alive_at_enable == [0] and gc.isenabled()


def run_programs(programs) -> list[tuple]:
    """Compile and run hand-built rank programs, one representative unit per rank; the timeline records."""
    import simpy

    from moesim.simulator.engine.cohorts import representative_layout
    from moesim.simulator.engine.compiler import compile_programs
    from moesim.simulator.engine.runner import Runner, Unit

    slots = compile_programs(programs, "hand-built")
    units = [Unit(spec, slots[spec.rank], False) for spec in representative_layout(len(programs)).units]
    for unit in units:
        unit.connect(units)
    env, records = simpy.Environment(), []
    runner = Runner(env, records)
    for unit in units:
        runner.start(unit, programs[unit.spec.rank])
    env.run()
    return sorted(records, key=lambda r: (r[0], r[2]))


def test_a_pipeline_send_never_queues_behind_an_all_to_all():
    """Rank 0 issues a 5 s all-to-all (another chunk's dispatch, ready at once), then ATTN (1 s) and its 0.5 s
    send to rank 1, whose MLP (1 s) waits for it. On its own stream the send goes at 1 s, not after the
    all-to-all at 5 s: rank 1's MLP runs 1.5 → 2.5 s."""
    from moesim.simulator.engine.tasks import RankProgram, Task

    rank0, rank1 = RankProgram(), RankProgram()
    rank0.add(Task("DISPATCH", 5.0, "F", 1, 0, [], 0, None, Stream.COMM))
    rank0.add(Task("ATTN", 1.0, "F", 0, 0, [], 1, None, Stream.COMPUTE))
    rank0.add(Task("sendF", 0.5, "F", 0, 0, [1], 2, None, Stream.PP))
    rank1.add(Task("MLP", 1.0, "F", 0, 1, [2], 3, None, Stream.COMPUTE))
    records = run_programs([rank0, rank1])
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in records] == [
        (0, "compute", 0.0, 1.0, "ATTN"), (0, "comm", 0.0, 5.0, "DISPATCH"), (0, "pp", 1.0, 1.5, "sendF"),
        (1, "compute", 1.5, 2.5, "MLP")]
    # The send is communication, counted exposed where no compute covers it: on rank 0 the all-to-all and the
    # send together cover 0 → 5 s, compute 0 → 1 s.
    timeline = Timeline(2, records, 5.0)
    assert rank_breakdowns(timeline, [1.0, 1.0])[0].exposed_comm_s == pytest.approx(4.0, abs=1e-12)


def test_a_rendezvous_refuses_a_second_arrival_and_a_second_close():
    """Like SimPy's Event.succeed refusing a second trigger: a member arrives once, a collective closes once."""
    from moesim.simulator.engine.rendezvous import Rendezvous, RendezvousError, TailSync

    a, b = object(), object()
    meeting = Rendezvous(2)
    assert meeting.arrive(a, 1.0) is False
    with pytest.raises(RendezvousError):
        meeting.arrive(a, 2.0)
    assert meeting.arrive(b, 3.0) is True and meeting.t == 3.0
    with pytest.raises(RendezvousError):
        meeting.arrive(object(), 4.0)  # all members are in
    meeting.close(5.0)
    assert meeting.end == 5.0
    with pytest.raises(RendezvousError):
        meeting.close(6.0)

    class Block:
        tail = np.array([0, 0])

    first, second = Block(), Block()
    sync = TailSync(2)
    assert sync.arrive(first, np.array([1.0, 2.0])) is False
    with pytest.raises(RendezvousError):
        sync.arrive(first, np.array([1.0, 2.0]))
    assert sync.arrive(second, np.array([4.0, 3.0])) is True
    sync.close(0.5)
    assert sync.end_of(first).tolist() == [4.5, 4.5]
    with pytest.raises(RendezvousError):
        sync.close(0.5)


@pytest.mark.parametrize("preset, overrides", [
    ("deepseek-v3-h800", []),  # representative, host modelled
    ("deepseek-v3-h800", ["run.fidelity=full", "faults.stragglers=[{gpu: 5, slowdown: 1.3}]"]),  # classes
    ("mixtral-8x7b-h100", ["run.fidelity=full", "routing.name=zipf"]),  # blocks
    ("llama3-70b-h100", ["schedule=dualpipev", "parallelism.virtual_stages=2"]),
])
def test_simulate_breakdowns_equal_those_worked_out_from_the_timeline(preset, overrides, monkeypatch):
    """The runner's ledgers (kept whether or not a timeline is) give exactly the breakdown the timeline's
    records give, and keeping the timeline changes no number."""
    import moesim.simulator.simulate as sim
    from moesim.workloads.loader import load_scenario

    engines = []

    class Engine(sim.PipelineEngine):
        def run(self):
            engines.append(self)
            return super().run()

    monkeypatch.setattr(sim, "PipelineEngine", Engine)
    scenario = load_scenario(preset=preset, overrides=overrides)
    kept = sim.simulate(scenario, keep_timeline=True, check_memory=False)
    timeline = kept.timeline
    assert timeline.records
    from_records = rank_breakdowns(timeline, engines[0].activation_bytes)
    assert [timeline.breakdowns[row] for row in timeline.row_ranks()] == from_records
    lean = sim.simulate(scenario, check_memory=False)
    assert lean.timeline is None
    assert lean.to_dict() | {"sim_wall_s": 0} == kept.to_dict() | {"sim_wall_s": 0}
