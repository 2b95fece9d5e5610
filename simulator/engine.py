"""The SimPy engine: GPUs with in-order streams executing a pipeline schedule's program.

Each simulated GPU has a compute stream and a communication stream that run their queues of tasks in order,
like CUDA streams: a task starts when the stream is free and all its dependencies are done, then occupies the
stream for its duration (seconds). Overlap between computation and communication is not typed in anywhere; it
emerges from the two streams and the dependencies. The program of each pipeline rank is built and compiled
once here and executed by :mod:`simulator.runner` for every unit of the GPU layout (:mod:`simulator.cohorts`):
one per pipeline rank (representative fidelity) or every GPU (full fidelity), where EP/TP collectives and the
DP synchronisation are rendezvous of their members.

Dependencies a step gets: a chunk's segments run in order; F of stage s waits for F of stage s−1 to arrive;
B of stage s waits for B of stage s+1 to arrive (on the last stage, for its own F); W waits for its B.
An arrival across ranks is a send on the sender's communication stream. After its program, each rank
synchronises gradients over data parallelism and steps the optimizer (the "tail").

An overlapped F&B pair (DualPipe) is issued component by component, in the order of DeepSeek's profiler trace
for each pair of layers: combine(B), attn(F), mlp(B), dispatch(F), dispatch(B), mlp(W), mlp(F), attn(B),
attn(W), combine(F). Each stream keeps that order, each chunk keeps its own chain, so one chunk's ATTN/MLP
runs on the compute stream while the other's DISPATCH/COMBINE (and pipeline sends) run on the communication
stream whenever their dependencies allow — how much hides is the simulation's result.
"""

from __future__ import annotations

from dataclasses import dataclass, field


import simpy
from simpy.events import NORMAL

from simulator.cohorts import GpuLayout, representative_layout
from simulator.pricing import Segment, StagePrice
from simulator.runner import Runner, Unit
from simulator.schedules.base import Schedule, ScheduleError, Step
from workloads.ops import Phase, Stream

# Position of each (phase, component) inside one layer pair of an overlapped F&B pair, from the order of the
# CPU annotations in deepseek-ai/profile-data's train.json (../shared/reference/deepseek-v3.md).
PAIR_ORDER: dict[tuple[Phase, str], float] = {
    (Phase.B, "COMBINE"): 0, (Phase.F, "ATTN"): 1, (Phase.B, "MLP"): 2, (Phase.F, "DISPATCH"): 3,
    (Phase.B, "DISPATCH"): 4, (Phase.W, "MLP"): 5, (Phase.F, "MLP"): 6, (Phase.B, "ATTN"): 7,
    (Phase.W, "ATTN"): 8, (Phase.F, "COMBINE"): 9,
}
# Where a chain's first component of a kind absent from the trace (EMBED, HEAD, TP all-reduce) goes.
PAIR_FIRST = {Phase.F: 1.0, Phase.B: 2.0, Phase.W: 5.0}
NUDGE = 0.01  # keeps a chain's positions strictly increasing


# A task is one segment on one stream, kept as a list in the order the runner reads it (lists are several
# times cheaper to build than objects, and a step has tens of thousands of tasks):
#   [label, duration_s, phase, micro_batch, stage, deps, done, group, stream, expert_s, net]
# ``deps`` and ``done`` are signal ids (ints) the engine resolves per unit; ``phase`` is "F", "B", "W", or
# "opt"/"dp" for the tail; ``group`` the process group a collective meets over ("ep", "tp", "tail") or None;
# ``expert_s`` the part of ``duration_s`` spent in routed-expert GEMMs at the busiest GPU's load; ``net``, with
# a time-shared network, the index of the task's :class:`NetOp` (None: the task just lasts ``duration_s``).
Task = list
DEPS, DONE, STREAM = 5, 6, 8


def make_task(label: str, stream: Stream, duration_s: float, deps: list, done: int, phase: str,
              micro_batch: int = -1, stage: int = -1, group: str | None = None, net: int | None = None) -> Task:
    return [label, duration_s, phase, micro_batch, stage, deps, done, group, stream, 0.0, net]


@dataclass(frozen=True, slots=True)
class NetOp:
    """What a task moves on a time-shared network: ``comms`` one after another, after ``fixed_s`` of work that
    is not network transfer (kernels of the segment that are not communication); a send goes to the GPUs of
    pipeline rank ``send_to`` (−1: a collective of the task's own process group)."""

    comms: tuple
    fixed_s: float = 0.0
    send_to: int = -1


@dataclass(frozen=True, slots=True)
class TailSpec:
    """A rank's work after its last chunk: gradient reduce-scatter, optimizer step, parameter all-gather."""

    grad_sync_s: float
    optimizer_s: float
    param_sync_s: float
    grad_comms: tuple = ()  # the Comm records of grad_sync_s and param_sync_s (for a time-shared network)
    param_comms: tuple = ()


@dataclass
class Timeline:
    """What ran where: ``records`` rows are (rank, stream, start_s, end_s, label, phase, micro_batch, stage).

    Representative fidelity: ``rank`` is the pipeline rank (0 … ranks − 1). Full fidelity: ``rank`` is the
    global GPU index of a recorded GPU, ``pipeline_rank[gpu]`` its pipeline rank and ``members[gpu]`` how many
    GPUs behave exactly like it (its equivalence class). ``events`` counts task starts and ends over every
    simulated unit; ``gpu_events`` the same over every GPU they stand for; ``waits`` the times a stream
    blocked on a SimPy event; ``tasks`` the engine tasks run (over every simulated unit) and ``simpy_events``
    the events SimPy itself scheduled (waits, rendezvous, network transfers).
    """

    ranks: int
    records: list[tuple] = field(default_factory=list)
    makespan_s: float = 0.0
    events: int = 0
    fidelity: str = "representative"
    pipeline_rank: dict[int, int] | None = None
    members: dict[int, int] | None = None
    units: int = 0
    gpu_events: int = 0
    waits: int = 0
    tasks: int = 0
    simpy_events: int = 0

    def row_ranks(self) -> list[int]:
        """The ranks that have rows: every pipeline rank, or (full fidelity) the recorded GPUs."""
        return list(range(self.ranks)) if self.pipeline_rank is None else sorted(self.pipeline_rank)


class PipelineEngine:
    """Runs a pipeline schedule on a GPU layout and returns its timeline.

    Without ``layout`` (representative fidelity) one unit per pipeline rank stands for all its GPUs. With a
    :class:`~simulator.cohorts.GpuLayout` (full fidelity) every GPU is simulated: each unit is one GPU, or a
    class of GPUs that provably behave alike; collectives are rendezvous of their group's units and pipeline
    sends go between the GPUs that hold the stages. ``send_s`` is one pipeline send/recv (seconds). ``compute_slowdown`` maps a rank to the factor by which its
    compute kernels are slower (stragglers). ``pair_s``, for synthetic studies only (``moesim
    schedule --fb``), replaces the priced components of every overlapped pair by that many seconds of compute,
    split between its chunks in proportion to their own times.
    """

    def __init__(self, schedule: Schedule, prices: list[StagePrice], send_s: float, tail: TailSpec,
                 pair_s: float | None = None, compute_slowdown: dict[int, float] | None = None,
                 layout: GpuLayout | None = None, network=None, send_comm=None):
        if len(prices) != schedule.stages:
            raise ScheduleError(f"schedule {schedule.name} has {schedule.stages} stages; the model has "
                                f"{len(prices)}")
        self.schedule = schedule
        self.prices = prices
        self.send_s = send_s
        self.tail = tail
        self.pair_s = pair_s
        self.env = CountingEnvironment()
        # A time-shared network (simulator.network.shared) moves communication in simulated time.
        self.network = network
        self.send_comm = send_comm
        self.net_ops: list[NetOp] = []
        self._net_index: dict[NetOp, int] = {}
        self.full = layout is not None  # every GPU simulated (shared by equivalence class or not)
        self.layout = layout or representative_layout(schedule.pp, compute_slowdown)
        if self.layout.pipeline_ranks != schedule.pp:
            raise ScheduleError(f"the GPU layout has {self.layout.pipeline_ranks} pipeline ranks; the schedule "
                                f"{schedule.pp}")
        self.timeline = Timeline(schedule.pp)
        # Per pipeline rank, its compute and comm queues: built once, run by every unit on that rank.
        self.queues: list[tuple[list[Task], list[Task]]] = [([], []) for _ in range(schedule.pp)]
        self._events: dict[tuple, int] = {}
        self._signals = 0
        self._plain_cache: dict[int, list[tuple]] = {}
        self._keep_alive: list[tuple] = []
        self._fused: dict[int, tuple[Segment, ...]] = {}
        self._pair_templates: dict[tuple, tuple[list, list]] = {}

    # Signals (ints) name task completions; named ones let a consumer refer to a producer built later (on
    # another rank). Each unit keeps its own completion time per signal.
    def _net(self, comms: tuple, fixed_s: float = 0.0, send_to: int = -1) -> int | None:
        """Index of the network op moving ``comms`` (None without a time-shared network or comms)."""
        if self.network is None or not comms:
            return None
        op = NetOp(comms, max(0.0, fixed_s), send_to)
        index = self._net_index.get(op)
        if index is None:
            index = self._net_index[op] = len(self.net_ops)
            self.net_ops.append(op)
        return index

    def _signal(self) -> int:
        self._signals += 1
        return self._signals - 1

    def _event(self, key: tuple) -> int:
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = self._signal()
        return event

    def _done(self, step: Step) -> int:
        return self._event(("done", step.phase, step.micro_batch, step.stage))

    def _arrival(self, phase: Phase, micro_batch: int, from_stage: int, to_stage: int) -> int:
        rank_of = self.schedule.rank_of
        same_rank = rank_of(micro_batch, from_stage) == rank_of(micro_batch, to_stage)
        return self._event(("done" if same_rank else "sent", phase, micro_batch, from_stage))

    def _start_deps(self, step: Step) -> list[int]:
        last = self.schedule.stages - 1
        mb, s = step.micro_batch, step.stage
        if step.phase is Phase.F:
            return [self._arrival(Phase.F, mb, s - 1, s)] if s > 0 else []
        if step.phase is Phase.B:
            if s == last:
                return [self._event(("done", Phase.F, mb, s))]
            return [self._arrival(Phase.B, mb, s + 1, s)]
        return [self._event(("done", Phase.B, mb, s))]

    def _fuses_weight(self, step: Step) -> bool:
        return step.phase is Phase.B and (step.with_weight or not self.schedule.splits_backward)

    def _chain(self, step: Step, segments: tuple[Segment, ...], deps: list, done: int) -> list[Task]:
        """Tasks running ``segments`` one after another; the last completes ``done``."""
        plain = self._plain(segments)
        if not plain:  # an empty chunk still completes, once its inputs are there
            return [make_task("empty", Stream.COMPUTE, 0.0, deps, done, step.phase.value, step.micro_batch,
                              step.stage)]
        tasks, last, first = [], len(plain) - 1, self._signals
        self._signals += last  # signals of the chain's inner links
        mb, stage = step.micro_batch, step.stage
        for i, (name, duration_s, phase, group, stream, expert_s, net) in enumerate(plain):
            event = done if i == last else first + i
            tasks.append([name, duration_s, phase, mb, stage, deps, event, group, stream, expert_s, net])
            deps = [event]
        return tasks

    def _plain(self, segments: tuple[Segment, ...]) -> list[tuple]:
        """(name, seconds, phase letter, group, stream, expert seconds) of each segment, computed once per
        segment tuple."""
        plain = self._plain_cache.get(id(segments))
        if plain is None:
            plain = [(seg.name, seg.duration_s, seg.phase.value, seg.group or None, seg.stream, seg.expert_s,
                      self._net(seg.comms, seg.duration_s - seg.comm_s)) for seg in segments]
            self._plain_cache[id(segments)] = plain
            self._keep_alive.append(segments)  # ids stay unique while the tuple lives
        return plain

    def _chunk_tasks(self, step: Step) -> list[Task]:
        """The tasks of one chunk, chained; the last one completes the chunk's "done" event."""
        price = self.prices[step.stage]
        segments = price.segments[step.phase]
        if self._fuses_weight(step):
            # A full backward: weight gradients are computed before the input gradient is sent on.
            segments = self._fused.get(step.stage)
            if segments is None:
                segments = self._fused[step.stage] = price.segments[Phase.B] + price.segments[Phase.W]
        return self._chain(step, segments, self._start_deps(step), self._done(step))

    def _send_task(self, step: Step) -> Task | None:
        """The pipeline send that follows a chunk, if its consumer sits on another rank."""
        target = step.stage + 1 if step.phase is Phase.F else step.stage - 1
        if step.phase is Phase.W or not 0 <= target < self.schedule.stages:
            return None
        rank_of = self.schedule.rank_of
        to_rank = rank_of(step.micro_batch, target)
        if to_rank == rank_of(step.micro_batch, step.stage):
            return None
        net = self._net((self.send_comm,), 0.0, to_rank) if self.send_comm is not None else None
        return make_task(f"send{step.phase.value}", Stream.COMM, self.send_s, [self._done(step)],
                         self._event(("sent", step.phase, step.micro_batch, step.stage)), step.phase.value,
                         step.micro_batch, step.stage, net=net)

    def _pair_tasks(self, step: Step) -> list[Task]:
        """An overlapped pair's tasks (both chunks, the backward's W if fused, their sends) in issue order.

        The order depends only on the two chunks' stages and phases, on which of them computes W and on which
        sends cross ranks, so it is worked out once per such pair (:meth:`_pair_template`) and reused.
        """
        chunks = [step, step.overlap]
        if self.pair_s is not None:
            return self._synthetic_pair(chunks)
        weight = next((i for i, c in enumerate(chunks) if self._fuses_weight(c)), None)
        sends = [self._send_task(c) for c in chunks]
        key = (chunks[0].stage, chunks[0].phase, chunks[1].stage, chunks[1].phase, weight,
               sends[0] is not None, sends[1] is not None)
        template = self._pair_templates.get(key)
        if template is None:
            template = self._pair_templates[key] = self._pair_template(chunks, weight, sends)
        order, w_deps = template
        parts = [self._chain(c, self._components(c.stage, c.phase), self._start_deps(c), self._done(c))
                 for c in chunks]
        if weight is not None:
            w = chunks[weight]
            w_tasks = self._chain(Step(w.micro_batch, w.stage, Phase.W), self._components(w.stage, Phase.W),
                                  [self._done(w)], self._signal())
            for task, (chained, (src, index)) in zip(w_tasks, w_deps):
                task[DEPS] = ([task[DEPS][0]] if chained else []) + [parts[src][index][DONE]]
            parts.append(w_tasks)
        else:
            parts.append([])
        parts.extend([send] if send is not None else [] for send in sends)
        return [parts[src][index] for src, index in order]

    def _pair_template(self, chunks: list[Step], weight: int | None,
                       sends: list) -> tuple[list[tuple[int, int]], list[tuple[bool, tuple[int, int]]]]:
        """Issue order of an overlapped pair as (part, index) — parts 0 and 1 the chunks, 2 the fused W,
        3 and 4 the chunks' sends — and, per W task, (follows the previous W task, the B task it needs).

        Components go in the order of DeepSeek's profiler trace (``PAIR_ORDER``) layer by layer; each chunk
        keeps its own order; a send follows its chunk's last component; W of a component follows its B.
        """
        keyed: list[tuple[tuple[int, float], int, tuple[int, int]]] = []
        b_tasks: dict[tuple[int, str], tuple[tuple[int, float], tuple[int, int]]] = {}
        b_units: dict[int, tuple[tuple[int, float], tuple[int, int]]] = {}
        b_end = None
        for order, chunk in enumerate(chunks):
            segments = self._components(chunk.stage, chunk.phase)
            unit, layer, pos = -1, None, 0.0
            for index, seg in enumerate(segments or (None,)):
                seg_layer = seg.layer if seg is not None else -1
                template = PAIR_ORDER.get((chunk.phase, seg.component)) if seg is not None else None
                if seg_layer != layer or unit < 0:
                    unit, layer = unit + 1, seg_layer
                    pos = template if template is not None else PAIR_FIRST[chunk.phase]
                else:
                    pos = max(template if template is not None else pos, pos + NUDGE)
                key = (unit, pos)
                keyed.append((key, order, (order, index)))
                if chunk.phase is Phase.B and seg is not None:
                    b_tasks[(seg_layer, seg.component)] = (key, (order, index))
                    b_units[seg_layer] = (key, (order, index))
            if chunk.phase is Phase.B:
                b_end = (key, (order, max(0, len(segments) - 1)))
            if sends[order] is not None:
                keyed.append(((key[0], key[1] + NUDGE / 10), order, (3 + order, 0)))
        w_deps: list[tuple[bool, tuple[int, int]]] = []
        if weight is not None:
            segments = self._components(chunks[weight].stage, Phase.W)
            previous = None
            for index, seg in enumerate(segments or (None,)):
                # W of a component needs the B of the same component; without one, the B of its layer or all of B.
                b_key, b_ref = (b_tasks.get((seg.layer, seg.component)) or b_units.get(seg.layer) or b_end
                                if seg is not None else b_end)
                template = PAIR_ORDER.get((Phase.W, seg.component)) if seg is not None else None
                key = (b_key[0], max(template if template is not None else b_key[1], b_key[1] + NUDGE / 2))
                if previous is not None and key <= previous:
                    key = (previous[0], previous[1] + NUDGE)
                w_deps.append((previous is not None, b_ref))
                keyed.append((key, 2, (2, index)))
                previous = key
        keyed.sort(key=lambda item: (item[0], item[1]))
        return [ref for _, _, ref in keyed], w_deps

    def _components(self, stage: int, phase: Phase) -> tuple[Segment, ...]:
        price = self.prices[stage]
        return price.components[phase] if price.components is not None else price.segments[phase]

    def _synthetic_pair(self, chunks: list[Step]) -> list[Task]:
        """``pair_s`` seconds of compute for the whole pair, in chunk order F, B, W; then the sends."""
        parts = [(c, c.phase) for c in chunks] + [(c, Phase.W) for c in chunks if self._fuses_weight(c)]
        times = [self.prices[c.stage].phase_time_s(phase) for c, phase in parts]
        scale = self.pair_s / sum(times) if sum(times) > 0 else 0.0
        deps = [d for c in chunks for d in self._start_deps(c)]
        tasks = []
        for (chunk, phase), seconds in zip(parts, times):
            done = self._done(chunk) if phase is chunk.phase else self._signal()
            tasks.append(make_task(phase.value, Stream.COMPUTE, seconds * scale, deps, done, phase.value,
                                   chunk.micro_batch, chunk.stage))
            deps = [done]
        sends = [self._send_task(c) for c in chunks]
        return tasks + [s for s in sends if s is not None]

    def _submit_step(self, rank: int, step: Step) -> None:
        if step.overlap is not None:
            tasks = self._pair_tasks(step)
        else:
            tasks = self._chunk_tasks(step)
            send = self._send_task(step)
            if send is not None:
                tasks.append(send)
        compute, comm = self.queues[rank]
        for task in tasks:
            (compute if task[STREAM] is Stream.COMPUTE else comm).append(task)

    def _submit_tail(self, rank: int) -> None:
        last = [q[-1][DONE] for q in self.queues[rank] if q]
        tail, new = self.tail, self._signal
        grads = make_task("grad_reduce_scatter", Stream.COMM, tail.grad_sync_s, last, new(), "dp", group="tail",
                          net=self._net(tail.grad_comms))
        opt = make_task("optimizer", Stream.COMPUTE, tail.optimizer_s, [grads[DONE]], new(), "opt")
        params = make_task("param_all_gather", Stream.COMM, tail.param_sync_s, [opt[DONE]], new(), "dp",
                           group="tail", net=self._net(tail.param_comms))
        compute, comm = self.queues[rank]
        comm.extend((grads, params))
        compute.append(opt)

    def _compile(self) -> tuple[list[tuple[list, list]], list[int]]:
        """Turns each rank's queues into what the runner reads, in place: ``deps`` become (producer's pipeline
        rank, slot) pairs and ``done`` a slot, slots numbered per producing rank.

        A dependency on an earlier task of the same stream is implied by the stream's order and dropped; only a
        task something else waits for gets a slot (−1 otherwise).
        """
        n = self._signals
        # Signals are 0 … n−1: where each is produced (rank · 2 + stream, position), −1 when nothing does.
        where, position, slot_of = [-1] * n, [0] * n, [-1] * n
        for rank, queues in enumerate(self.queues):
            for si, queue in enumerate(queues):
                code = 2 * rank + si
                for i, task in enumerate(queue):
                    where[task[DONE]] = code
                    position[task[DONE]] = i
        slots = [0] * self.schedule.pp
        for rank, queues in enumerate(self.queues):
            for si, queue in enumerate(queues):
                code = 2 * rank + si
                for i, task in enumerate(queue):
                    deps = ()
                    for dep in task[DEPS]:
                        p_code = where[dep]
                        if p_code == code and position[dep] < i:
                            continue  # implied by the stream's order
                        if p_code < 0:
                            raise ScheduleError(f"schedule {self.schedule.name} deadlocked: rank {rank} "
                                                f"{task[0]} {task[2]}{task[3]}@{task[4]} waits for a chunk no "
                                                "rank runs")
                        p_rank = p_code >> 1
                        slot = slot_of[dep]
                        if slot < 0:
                            slot = slot_of[dep] = slots[p_rank]
                            slots[p_rank] += 1
                        deps += ((p_rank, slot),)
                    task[DEPS] = deps
        for queues in self.queues:
            for queue in queues:
                for task in queue:
                    task[DONE] = slot_of[task[DONE]]
        return self.queues, slots

    def run(self) -> Timeline:
        programs = self.schedule.programs()
        if len(programs) != self.schedule.pp:
            raise ScheduleError(f"schedule {self.schedule.name} built {len(programs)} programs for "
                                f"pp={self.schedule.pp}")
        for rank, program in enumerate(programs):
            for step in program:
                self._submit_step(rank, step)
        for rank in range(self.schedule.pp):
            self._submit_tail(rank)
        compiled, slots = self._compile()
        full = self.full
        units = [Unit(spec, slots[spec.rank], full) for spec in self.layout.units]
        for unit in units:
            unit.peers = [units[u] for u in unit.spec.peers]
            if self.network is not None:  # the GPUs whose traffic the unit starts
                unit.net_gpus = unit.spec.gpus if full else self.network.rank_gpus(unit.spec.rank)
        if self.network is not None:
            self.network.attach(self.env)
        runner = Runner(self.env, self.timeline.records, self.network, self.net_ops)
        for unit in units:
            runner.start(unit, compiled[unit.spec.rank])
        self.env.run()
        self._finish(units, compiled, runner, full)
        return self.timeline

    def _finish(self, units: list[Unit], compiled, runner: Runner, full: bool) -> None:
        tl = self.timeline
        total = ran = gpu_ran = 0
        stuck = None
        for unit in units:
            for si, specs in enumerate(compiled[unit.spec.rank]):
                total += len(specs)
                ran += unit.pos[si]
                gpu_ran += unit.pos[si] * len(unit.spec.gpus)
                ran += unit.pos[si] * (len(unit.spec.gpus) - 1 if unit.spec.block else 0)
                if unit.pos[si] < len(specs) and stuck is None:
                    stuck = (unit, specs[unit.pos[si]])
        if stuck is not None:
            unit, (label, _, phase, mb, stage, *_) = stuck
            where = (f"GPU {unit.spec.gpus[0]} (pipeline rank {unit.spec.rank})" if full
                     else f"rank {unit.spec.rank}")
            raise ScheduleError(f"schedule {self.schedule.name} deadlocked: {where} stuck at {label} "
                                f"{phase}{mb}@{stage} ({ran}/{total} tasks ran)")
        tl.records.sort(key=_end_s)  # streams run ahead independently; rows in completion order
        tl.makespan_s = max(max(unit.end) for unit in units)
        tl.events, tl.gpu_events, tl.waits = 2 * ran, 2 * gpu_ran, runner.waits
        tl.tasks, tl.simpy_events = ran, self.env.scheduled
        tl.units = sum(len(u.spec.gpus) if u.spec.block else 1 for u in units)
        if full:
            tl.fidelity = "full"
            tl.ranks = self.layout.gpus
            tl.pipeline_rank = {g: g // self.layout.stage_gpus for g in self.layout.watched}
            tl.members = dict(self.layout.watched)


def _end_s(record: tuple) -> float:
    return record[3]


class CountingEnvironment(simpy.Environment):
    """A SimPy environment that counts the events it schedules (reported beside the engine's task count)."""

    def __init__(self):
        super().__init__()
        self.scheduled = 0

    def schedule(self, event, priority=NORMAL, delay=0):
        self.scheduled += 1
        super().schedule(event, priority, delay)
