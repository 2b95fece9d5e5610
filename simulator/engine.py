"""The SimPy engine: GPUs with in-order streams executing a pipeline schedule's program.

Each simulated GPU (a pipeline rank) has a compute stream and a communication stream, each a SimPy process
that runs its queue of :class:`Task` in order, like a CUDA stream: a task starts when the stream is free and
all its dependencies are done, then occupies the stream for its duration (seconds). Overlap between
computation and communication is not typed in anywhere; it emerges from the two streams and the dependencies.

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

from simulator.pricing import Segment, StagePrice
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


@dataclass(slots=True)
class Task:
    label: str
    stream: Stream
    duration_s: float
    deps: list
    done: simpy.Event
    phase: str  # "F", "B", "W", or "opt"/"dp" for the tail
    micro_batch: int = -1
    stage: int = -1


@dataclass(frozen=True, slots=True)
class TailSpec:
    """A rank's work after its last chunk: gradient reduce-scatter, optimizer step, parameter all-gather."""

    grad_sync_s: float
    optimizer_s: float
    param_sync_s: float


@dataclass
class Timeline:
    """What ran where: ``records`` rows are (rank, stream, start_s, end_s, label, phase, micro_batch, stage)."""

    ranks: int
    records: list[tuple] = field(default_factory=list)
    makespan_s: float = 0.0
    events: int = 0


class Gpu:
    """One simulated GPU: two in-order streams fed with tasks before the simulation starts."""

    def __init__(self, env: simpy.Environment, rank: int, timeline: Timeline, compute_slowdown: float = 1.0):
        self.env = env
        self.rank = rank
        self.timeline = timeline
        self.compute_slowdown = compute_slowdown  # > 1 for a straggler: its kernels take that much longer
        self.queues: dict[Stream, list[Task]] = {Stream.COMPUTE: [], Stream.COMM: []}

    def submit(self, task: Task) -> simpy.Event:
        self.queues[task.stream].append(task)
        return task.done

    def start(self) -> None:
        for stream, queue in self.queues.items():
            if queue:
                self.env.process(self._run(stream, queue))

    def _run(self, stream: Stream, queue: list[Task]):
        env, append, rank, name = self.env, self.timeline.records.append, self.rank, stream.value
        timeout = env.timeout
        scale = self.compute_slowdown if stream is Stream.COMPUTE else 1.0
        for task in queue:
            for dep in task.deps:
                if not dep.processed:
                    yield dep
            start = env.now
            if task.duration_s > 0:
                yield timeout(task.duration_s * scale)
            append((rank, name, start, env.now, task.label, task.phase, task.micro_batch, task.stage))
            task.done.succeed()


class PipelineEngine:
    """Runs one data-parallel replica's pipeline (representative-rank mode) and returns its timeline.

    ``send_s`` is one pipeline send/recv (seconds). ``compute_slowdown`` maps a rank to the factor by which its
    compute kernels are slower (stragglers). ``pair_s``, for synthetic studies only (``moesim
    schedule --fb``), replaces the priced components of every overlapped pair by that many seconds of compute,
    split between its chunks in proportion to their own times.
    """

    def __init__(self, schedule: Schedule, prices: list[StagePrice], send_s: float, tail: TailSpec,
                 pair_s: float | None = None, compute_slowdown: dict[int, float] | None = None):
        if len(prices) != schedule.stages:
            raise ScheduleError(f"schedule {schedule.name} has {schedule.stages} stages; the model has "
                                f"{len(prices)}")
        self.schedule = schedule
        self.prices = prices
        self.send_s = send_s
        self.tail = tail
        self.pair_s = pair_s
        self.env = simpy.Environment()
        self.timeline = Timeline(schedule.pp)
        slow = compute_slowdown or {}
        self.gpus = [Gpu(self.env, r, self.timeline, slow.get(r, 1.0)) for r in range(schedule.pp)]
        self._events: dict[tuple, simpy.Event] = {}
        self._tasks = 0
        self._plain_cache: dict[int, list[tuple]] = {}
        self._keep_alive: list[tuple] = []
        self._fused: dict[int, tuple[Segment, ...]] = {}

    # Named events let a consumer refer to a producer built later (on another rank).
    def _event(self, key: tuple) -> simpy.Event:
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = self.env.event()
        return event

    def _done(self, step: Step) -> simpy.Event:
        return self._event(("done", step.phase, step.micro_batch, step.stage))

    def _arrival(self, phase: Phase, micro_batch: int, from_stage: int, to_stage: int) -> simpy.Event:
        rank_of = self.schedule.rank_of
        same_rank = rank_of(micro_batch, from_stage) == rank_of(micro_batch, to_stage)
        return self._event(("done" if same_rank else "sent", phase, micro_batch, from_stage))

    def _start_deps(self, step: Step) -> list[simpy.Event]:
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

    def _chain(self, step: Step, segments: tuple[Segment, ...], deps: list, done: simpy.Event) -> list[Task]:
        """Tasks running ``segments`` one after another; the last completes ``done``."""
        tasks, new_event, last = [], self.env.event, len(segments) - 1
        mb, stage = step.micro_batch, step.stage
        for i, (name, stream, duration_s, phase) in enumerate(self._plain(segments)):
            event = done if i == last else new_event()
            tasks.append(Task(name, stream, duration_s, deps, event, phase, mb, stage))
            deps = [event]
        if not tasks:  # an empty chunk still completes, once its inputs are there
            tasks.append(Task("empty", Stream.COMPUTE, 0.0, deps, done, step.phase.value, step.micro_batch,
                              step.stage))
        return tasks

    def _plain(self, segments: tuple[Segment, ...]) -> list[tuple]:
        """(name, stream, seconds, phase letter) of each segment, computed once per segment tuple."""
        plain = self._plain_cache.get(id(segments))
        if plain is None:
            plain = [(seg.name, seg.stream, seg.duration_s, seg.phase.value) for seg in segments]
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
        if rank_of(step.micro_batch, target) == rank_of(step.micro_batch, step.stage):
            return None
        return Task(f"send{step.phase.value}", Stream.COMM, self.send_s, [self._done(step)],
                    self._event(("sent", step.phase, step.micro_batch, step.stage)), step.phase.value,
                    step.micro_batch, step.stage)

    def _pair_tasks(self, step: Step) -> list[Task]:
        """An overlapped pair's tasks (both chunks, the backward's W if fused, their sends) in issue order."""
        chunks = [step, step.overlap]
        if self.pair_s is not None:
            return self._synthetic_pair(chunks)
        keyed: list[tuple[tuple[int, float], int, Task]] = []
        b_tasks: dict[tuple[int, str], tuple[tuple[int, float], Task]] = {}
        b_units: dict[int, tuple[tuple[int, float], Task]] = {}
        b_end: tuple[tuple[int, float], Task] | None = None
        for order, chunk in enumerate(chunks):
            segments = self._components(chunk.stage, chunk.phase)
            tasks = self._chain(chunk, segments, self._start_deps(chunk), self._done(chunk))
            unit, layer, pos = -1, None, 0.0
            for seg, task in zip(segments or (None,), tasks):
                seg_layer = seg.layer if seg is not None else -1
                template = PAIR_ORDER.get((chunk.phase, seg.component)) if seg is not None else None
                if seg_layer != layer or unit < 0:
                    unit, layer = unit + 1, seg_layer
                    pos = template if template is not None else PAIR_FIRST[chunk.phase]
                else:
                    pos = max(template if template is not None else pos, pos + NUDGE)
                key = (unit, pos)
                keyed.append((key, order, task))
                if chunk.phase is Phase.B and seg is not None:
                    b_tasks[(seg_layer, seg.component)] = (key, task)
                    b_units[seg_layer] = (key, task)
            if chunk.phase is Phase.B:
                b_end = (key, tasks[-1])
            send = self._send_task(chunk)
            if send is not None:
                keyed.append(((key[0], key[1] + NUDGE / 10), order, send))
        weight = next((c for c in chunks if self._fuses_weight(c)), None)
        if weight is not None:
            w_step = Step(weight.micro_batch, weight.stage, Phase.W)
            segments = self._components(weight.stage, Phase.W)
            tasks = self._chain(w_step, segments, [self._done(weight)], self.env.event())
            previous = None
            for seg, task in zip(segments or (None,), tasks):
                # W of a component needs the B of the same component; without one, the B of its layer or all of B.
                b_key, b_task = (b_tasks.get((seg.layer, seg.component)) or b_units.get(seg.layer) or b_end
                                 if seg is not None else b_end)
                template = PAIR_ORDER.get((Phase.W, seg.component)) if seg is not None else None
                key = (b_key[0], max(template if template is not None else b_key[1], b_key[1] + NUDGE / 2))
                if previous is not None and key <= previous:
                    key = (previous[0], previous[1] + NUDGE)
                task.deps = ([task.deps[0]] if previous is not None else []) + [b_task.done]
                keyed.append((key, 2, task))
                previous = key
        keyed.sort(key=lambda item: (item[0], item[1]))
        return [task for _, _, task in keyed]

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
            done = self._done(chunk) if phase is chunk.phase else self.env.event()
            tasks.append(Task(phase.value, Stream.COMPUTE, seconds * scale, deps, done, phase.value,
                              chunk.micro_batch, chunk.stage))
            deps = [done]
        sends = [self._send_task(c) for c in chunks]
        return tasks + [s for s in sends if s is not None]

    def _submit_step(self, gpu: Gpu, step: Step) -> None:
        if step.overlap is not None:
            tasks = self._pair_tasks(step)
        else:
            tasks = self._chunk_tasks(step)
            send = self._send_task(step)
            if send is not None:
                tasks.append(send)
        for task in tasks:
            gpu.submit(task)
        self._tasks += len(tasks)

    def _submit_tail(self, gpu: Gpu) -> None:
        last = [q[-1].done for q in gpu.queues.values() if q]
        tail = self.tail
        grads = Task("grad_reduce_scatter", Stream.COMM, tail.grad_sync_s, last, self.env.event(), "dp")
        opt = Task("optimizer", Stream.COMPUTE, tail.optimizer_s, [grads.done], self.env.event(), "opt")
        params = Task("param_all_gather", Stream.COMM, tail.param_sync_s, [opt.done], self.env.event(), "dp")
        for task in (grads, opt, params):
            gpu.submit(task)
            self._tasks += 1

    def run(self) -> Timeline:
        programs = self.schedule.programs()
        if len(programs) != self.schedule.pp:
            raise ScheduleError(f"schedule {self.schedule.name} built {len(programs)} programs for "
                                f"pp={self.schedule.pp}")
        for rank, program in enumerate(programs):
            for step in program:
                self._submit_step(self.gpus[rank], step)
        for gpu in self.gpus:
            self._submit_tail(gpu)
            gpu.start()
        self.env.run()
        done = len(self.timeline.records)
        if done != self._tasks:
            rank, stuck = next((g.rank, t) for g in self.gpus for q in g.queues.values() for t in q
                               if not t.done.processed)
            raise ScheduleError(f"schedule {self.schedule.name} deadlocked: rank {rank} stuck at {stuck.label} "
                                f"{stuck.phase}{stuck.micro_batch}@{stuck.stage} ({done}/{self._tasks} tasks ran)")
        self.timeline.makespan_s = self.env.now
        self.timeline.events = 2 * done
        return self.timeline
