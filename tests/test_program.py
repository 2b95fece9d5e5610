"""The program builder and the compiler on their own: a schedule's steps → tasks → what the runner reads."""

from __future__ import annotations

from dataclasses import replace

import pytest

from moesim.simulator.engine.compiler import compile_programs
from moesim.simulator.pricing import Segment, StagePrice
from moesim.simulator.engine.program import ProgramBuilder, TailSpec
from moesim.simulator.schedules import ScheduleError, get_schedule
from moesim.simulator.engine.tasks import COMM, COMPUTE, PP, RankProgram, Task
from tests.test_engine import uniform
from moesim.workloads.ops import Phase, Stream

NO_TAIL = TailSpec(0.0, 0.0, 0.0)


def labels(queue: list[Task], micro_batches: list[int] | None = None) -> list[str]:
    """``label:phase micro_batch@stage`` of each task; a compiled queue's micro-batches are its program's."""
    micro_batches = micro_batches or [t.micro_batch for t in queue]
    return [f"{t.label}:{t.phase}{mb}@{t.stage}" for t, mb in zip(queue, micro_batches)]


def stream(program: RankProgram, si: int) -> list[str]:
    """The labels of a compiled program's stream ``si``."""
    return labels(program.queues[si], program.micro_batches[si])


def positions(program: RankProgram, si: int, chunks: set[tuple[str, int, int]]) -> list[int]:
    """Positions on stream ``si`` of the tasks of ``chunks``, given as (phase, micro-batch, stage)."""
    micro_batches = program.micro_batches[si]
    return [i for i, t in enumerate(program.queues[si]) if (t.phase, micro_batches[i], t.stage) in chunks]


def test_gpipe_on_two_ranks_builds_chunks_sends_and_the_tail():
    """GPipe, 2 ranks, 2 micro-batches, F = compute then an A2A: rank 0 runs F0 F1 then, last in first out,
    B1 B0 (each with its W fused: GPipe does not split the backward) on compute; its communication stream holds
    each F's A2A, then the tail's gradient reduce-scatter and parameter all-gather around the optimizer on
    compute; the two sendF are on the pipeline stream of their own."""
    builder = ProgramBuilder(get_schedule("gpipe")(2, 2), uniform(2, 1.0, 1.5, 0.5, comm=0.25), 0.125,
                             TailSpec(0.5, 0.25, 0.125))
    rank0, rank1 = builder.build()
    assert stream(rank0, COMPUTE) == ["F:F0@0", "F:F1@0", "B:B1@0", "W:W1@0", "B:B0@0", "W:W0@0",
                                      "optimizer:opt-1@-1"]
    assert stream(rank0, COMM) == ["A2A:F0@0", "A2A:F1@0", "grad_reduce_scatter:dp-1@-1",
                                   "param_all_gather:dp-1@-1"]
    assert stream(rank0, PP) == ["sendF:F0@0", "sendF:F1@0"]
    # The last stage sends its input gradients back (each after its fused W), no activations on.
    assert stream(rank1, PP) == ["sendB:B1@1", "sendB:B0@1"]
    assert [t.duration_s for t in rank0.compute[:3]] == [1.0, 1.0, 1.5]
    # F0 and F1 are copies of one kind of step: one task object, each copy's micro-batch kept by the program.
    assert rank0.compute[0] is rank0.compute[1] and rank0.micro_batches[COMPUTE][:2] == [0, 1]
    send = rank0.pp[0]
    assert (send.stream, send.duration_s, send.group) == (Stream.PP, 0.125, None)
    # A send waits for the end of its chunk (the A2A, the chain's last task); rank 1's F0 waits for the send.
    assert rank0.waits(0, PP, 0) == ((0, rank0.slot(COMM, 0)),) and rank0.slot(COMM, 0) >= 0
    assert rank1.waits(1, COMPUTE, 0) == ((0, rank0.slot(PP, 0)),) and rank0.slot(PP, 0) >= 0
    # The tail waits for the last task of every stream: the compute and pipeline streams' by their slots, its
    # own stream's by its order.
    tail = len(rank0.comm) - 2
    assert rank0.comm[tail].group == "tail"
    assert rank0.waits(0, COMM, tail) == ((0, rank0.slot(COMPUTE, len(rank0.compute) - 2)),
                                          (0, rank0.slot(PP, len(rank0.pp) - 1)))
    # Every slot is a task's own: no two tasks of a rank share one.
    for program in (rank0, rank1):
        given = [program.slot(si, i) for si, q in enumerate(program.queues) for i in range(len(q))]
        given = [slot for slot in given if slot >= 0]
        assert len(set(given)) == len(given)


def test_compiler_keeps_only_waits_across_streams_and_numbers_slots_per_rank():
    builder = ProgramBuilder(get_schedule("gpipe")(2, 2), uniform(2, 1.0, 1.5, 0.5, comm=0.25), 0.125, NO_TAIL)
    programs = builder.build()
    slots = builder.slots
    rank0, rank1 = programs
    # F1's compute follows F0's on the same stream: nothing to wait for beyond the stream's order.
    assert rank0.waits(0, COMPUTE, 1) == ()
    # F0's A2A on the comm stream waits for F0's compute: a wait across streams.
    assert rank0.waits(0, COMM, 0) == ((0, rank0.slot(COMPUTE, 0)),)
    # Rank 1's F0 waits for rank 0's send.
    assert rank1.waits(1, COMPUTE, 0) == ((0, rank0.slot(PP, 0)),)
    # Slots are numbered 0 … n−1 per producing rank. They go to every task something on another stream waits
    # for, and to those another step may wait for (a step's exchanges with other steps and its last task on each
    # stream: a copy's slots are fixed before the steps that wait for it are built).
    compute_f0, compute_f1 = rank0.slot(COMPUTE, 0), rank0.slot(COMPUTE, 1)
    assert compute_f0 >= 0 and compute_f1 >= 0  # F0's waited for by its A2A; F1's the last of its step
    for rank, program in enumerate(programs):
        used = sorted(program.slot(si, i) for si, q in enumerate(program.queues) for i in range(len(q)))
        used = [slot for slot in used if slot >= 0]
        assert used == list(range(slots[rank]))
        waited = {s for q, p in enumerate(programs) for si, queue in enumerate(p.queues) for i in range(len(queue))
                  for r, s in p.waits(q, si, i) if r == rank}
        assert waited <= set(used)


def test_a_wait_for_a_task_no_rank_runs_is_a_deadlock_named_by_the_task():
    program = RankProgram()
    program.add(Task("ATTN0", 1.0, "F", 3, 1, [7], 0, None, Stream.COMPUTE))
    with pytest.raises(ScheduleError, match=r"schedule demo deadlocked: rank 0 ATTN0 F3@1 waits for a chunk"):
        compile_programs([program], "demo")


def test_rank_program_sorts_tasks_onto_their_streams():
    program = RankProgram()
    compute = Task("MLP", 1.0, "F", 0, 0, [], 0, None, Stream.COMPUTE)
    comm = Task("DISPATCH", 0.5, "F", 0, 0, [0], 1, "ep", Stream.COMM)
    program.add(compute)
    program.add(comm)
    assert program.queues[COMPUTE] == [compute] and program.queues[COMM] == [comm] and len(program) == 2


def one_layer(stages: int) -> list[StagePrice]:
    """Stages of one MoE layer, 1 s per component: F = ATTN, DISPATCH, MLP, COMBINE; B the reverse; W = MLP,
    ATTN."""
    def seg(name: str, phase: Phase) -> Segment:
        comm = name in ("DISPATCH", "COMBINE")
        return Segment(name, Stream.COMM if comm else Stream.COMPUTE, 1.0, phase, name, 0, "ep" if comm else "")
    f = tuple(seg(n, Phase.F) for n in ("ATTN", "DISPATCH", "MLP", "COMBINE"))
    b = tuple(seg(n, Phase.B) for n in ("COMBINE", "MLP", "DISPATCH", "ATTN"))
    w = tuple(seg(n, Phase.W) for n in ("MLP", "ATTN"))
    return [StagePrice({Phase.F: f, Phase.B: b, Phase.W: w}, 0.0, 0.0, 1.0) for _ in range(stages)]


def test_an_overlapped_pair_is_issued_in_the_order_of_deepseeks_trace():
    """DualPipe on 4 ranks, 8 micro-batches: rank 0's first overlapped pair is F3@0 with BW5@3 (the backward
    computes its W). In the trace's order — combine(B), attn(F), mlp(B), dispatch(F), dispatch(B), mlp(W),
    mlp(F), attn(B), attn(W), combine(F) — each stream keeps its share; a send follows its chunk's last
    component; W of a component waits for its B."""
    schedule = get_schedule("dualpipe")(4, 8)
    builder = ProgramBuilder(schedule, one_layer(4), 0.1, NO_TAIL)
    (rank0, *_) = builder.build()
    pair = next(step for step in schedule.programs()[0] if step.overlap is not None)
    assert pair.label() == "F3@0+BW5@3"
    in_pair = {("F", 3, 0), ("B", 5, 3), ("W", 5, 3)}
    compute = positions(rank0, COMPUTE, in_pair)
    assert [stream(rank0, COMPUTE)[i] for i in compute] == ["ATTN:F3@0", "MLP:B5@3", "MLP:W5@3", "MLP:F3@0",
                                                            "ATTN:B5@3", "ATTN:W5@3"]
    assert [stream(rank0, COMM)[i] for i in positions(rank0, COMM, in_pair)] == [
        "COMBINE:B5@3", "DISPATCH:F3@0", "DISPATCH:B5@3", "COMBINE:F3@0"]
    # The sends go on the pipeline stream, never queued behind the pair's all-to-alls.
    assert [stream(rank0, PP)[i] for i in positions(rank0, PP, in_pair)] == ["sendB:B5@3", "sendF:F3@0"]
    # Before compiling (the builder's own view, dependencies as signals): W of a component waits for its B.
    step = [t for t in builder.step_tasks(pair) if t.stream is Stream.COMPUTE]
    assert labels(step) == [stream(rank0, COMPUTE)[i] for i in compute]
    mlp_b, mlp_w, attn_b, attn_w = step[1], step[2], step[4], step[5]
    assert mlp_w.deps == [mlp_b.done]
    assert attn_w.deps == [mlp_w.done, attn_b.done]
    # Compiled, those waits are the compute stream's own order: nothing left to wait for across streams.
    assert rank0.waits(0, COMPUTE, compute[2]) == rank0.waits(0, COMPUTE, compute[5]) == ()


@pytest.mark.parametrize("name,virtual", [("gpipe", 1), ("1f1b", 1), ("zb-h1", 1), ("dualpipe", 1),
                                          ("dualpipev", 2), ("interleaved", 2)])
def test_steps_copied_from_their_kind_wait_for_what_their_rank_compiled_whole_waits_for(name, virtual):
    """The builder compiles each kind of step once, copies it per micro-batch and links the copies' waits outside
    their step by role. Every rank's steps compiled as one piece instead (each dependency by its signal) must
    give every task the same waits, compared as the (rank, stream, position) of the tasks waited for (slots are
    numbered differently), and the same network op: with a time-shared network a send's op names the rank it goes
    to, which differs between DualPipe's two directions."""
    schedule = get_schedule(name)(4, 8, virtual)
    prices = one_layer(schedule.stages)
    time_shared = {"network": object(), "send_comm": "one pipeline send"}  # all the builder asks of a network
    copier = ProgramBuilder(schedule, prices, 0.1, NO_TAIL, **time_shared)
    copied = copier.build()
    signals = ProgramBuilder(schedule, prices, 0.1, NO_TAIL, **time_shared)
    whole = [RankProgram() for _ in range(schedule.pp)]
    for program, steps in zip(whole, schedule.programs()):
        for step in steps:
            for task in signals.step_tasks(step):
                program.add(task)
    compile_programs(whole, name)

    def waits(programs: list[RankProgram], net_ops: list) -> list[tuple]:
        where = {(rank, p.slot(si, i)): (rank, si, i) for rank, p in enumerate(programs)
                 for si, q in enumerate(p.queues) for i in range(len(q))}
        return [(rank, si, stream(p, si)[i], [where[w] for w in p.waits(rank, si, i)],
                 t.net is not None and net_ops[t.net])
                for rank, p in enumerate(programs) for si, q in enumerate(p.queues) for i, t in enumerate(q)
                if t.phase not in ("dp", "opt")]  # the tail is built on its own

    assert waits(copied, copier.net_ops) == waits(whole, signals.net_ops)
    assert sum(len(p) for p in copied) == sum(len(p) for p in whole) + 3 * schedule.pp
    assert any(w[0] != rank for rank, p in enumerate(copied) for si, q in enumerate(p.queues)
               for i in range(len(q)) for w in p.waits(rank, si, i))
    assert {op.send_to for op in copier.net_ops} == set(range(schedule.pp))  # sends to every rank


def test_compute_beside_communication_runs_on_the_reduced_sms_and_alone_on_all():
    """Each compute segment is priced 1 s on the SMs left beside communication and 0.75 s on all of them.
    DualPipe's overlapped pair F3@0+BW5@3 runs its compute beside the pair's dispatch and combine: 1 s each;
    rank 0's first chunk F0@0 runs alone (its dispatch and combine in series with its compute): 0.75 s each.
    Communication keeps its one price."""
    def alone(seg: Segment) -> Segment:
        return replace(seg, full_s=0.75) if seg.stream is Stream.COMPUTE else seg

    prices = [replace(p, segments={ph: tuple(alone(s) for s in segs) for ph, segs in p.segments.items()})
              for p in one_layer(4)]
    schedule = get_schedule("dualpipe")(4, 8)
    (rank0, *_) = ProgramBuilder(schedule, prices, 0.1, NO_TAIL).build()
    in_pair = {("F", 3, 0), ("B", 5, 3), ("W", 5, 3)}
    pair = [rank0.compute[i] for i in positions(rank0, COMPUTE, in_pair)]
    assert [t.duration_s for t in pair] == [1.0] * 6
    first = [rank0.compute[i] for i in positions(rank0, COMPUTE, {("F", 0, 0)})]
    assert [t.label for t in first] == ["ATTN", "MLP"] and [t.duration_s for t in first] == [0.75, 0.75]
    assert {t.duration_s for t in rank0.comm if t.label in ("DISPATCH", "COMBINE")} == {1.0}


def test_the_pricer_prices_compute_on_both_sm_counts():
    """A segment's ``duration_s`` is its ops on gpu.sms − comm_sms SMs, ``alone_s`` on all of them; a
    communication segment has one price."""
    from moesim.simulator.network import AnalyticNetwork
    from moesim.simulator.pricing import Pricer
    from moesim.simulator.simulate import cost_model_for
    from moesim.workloads.loader import load_scenario
    from moesim.workloads.model import build_stages

    scenario = load_scenario(preset="deepseek-v2-lite-h800")
    sms, reserved = scenario.cluster.gpu.sms, scenario.training.comm_sms
    assert reserved > 0
    cost_model = cost_model_for(scenario)
    pricer = Pricer(scenario, cost_model, AnalyticNetwork(scenario))
    stage = next(s for s in build_stages(scenario) if s.layers)
    component = next(c for c in stage.forward.components if c.name == "MLP")
    (seg, *_) = [s for s in pricer.component_segments(stage.forward) if s.name == f"MLP{component.layer}"]
    gap = cost_model.launch_gap_s
    assert seg.duration_s == pytest.approx(sum(gap + cost_model.op_time_s(op, sms - reserved)
                                               for op in component.ops), rel=1e-12)
    assert seg.alone_s == pytest.approx(sum(gap + cost_model.op_time_s(op, sms) for op in component.ops), rel=1e-12)
    assert seg.alone_s < seg.duration_s
    dispatch = next(s for s in pricer.component_segments(stage.forward) if s.component == "DISPATCH")
    assert dispatch.full_s is None and dispatch.alone_s == dispatch.duration_s
