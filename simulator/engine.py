"""The SimPy engine: GPUs with in-order streams executing a pipeline schedule's program.

Each simulated GPU (a pipeline rank) has a compute stream and a communication stream, each a SimPy process
that runs its queue of :class:`Task` in order, like a CUDA stream: a task starts when the stream is free and
all its dependencies are done, then occupies the stream for its duration (seconds). Overlap between
computation and communication is not typed in anywhere; it emerges from the two streams and the dependencies.

Dependencies a step gets: a chunk's segments run in order; F of stage s waits for F of stage s−1 to arrive;
B of stage s waits for B of stage s+1 to arrive (on the last stage, for its own F); W waits for its B.
An arrival across ranks is a send on the sender's communication stream. After its program, each rank
synchronises gradients over data parallelism and steps the optimizer (the "tail").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import zip_longest

import simpy

from simulator.pricing import Segment, StagePrice
from simulator.schedules.base import Schedule, ScheduleError, Step
from workloads.ops import Phase, Stream


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

    def __init__(self, env: simpy.Environment, rank: int, timeline: Timeline):
        self.env = env
        self.rank = rank
        self.timeline = timeline
        self.queues: dict[Stream, list[Task]] = {Stream.COMPUTE: [], Stream.COMM: []}

    def submit(self, task: Task) -> simpy.Event:
        self.queues[task.stream].append(task)
        return task.done

    def start(self) -> None:
        for stream, queue in self.queues.items():
            if queue:
                self.env.process(self._run(stream, queue))

    def _run(self, stream: Stream, queue: list[Task]):
        env, records, rank = self.env, self.timeline.records, self.rank
        for task in queue:
            for dep in task.deps:
                if not dep.processed:
                    yield dep
            start = env.now
            if task.duration_s > 0:
                yield env.timeout(task.duration_s)
            records.append((rank, stream.value, start, env.now, task.label, task.phase, task.micro_batch,
                            task.stage))
            task.done.succeed()


class PipelineEngine:
    """Runs one data-parallel replica's pipeline (representative-rank mode) and returns its timeline."""

    def __init__(self, schedule: Schedule, prices: list[StagePrice], send_s: float, tail: TailSpec):
        if len(prices) != schedule.stages:
            raise ScheduleError(f"schedule {schedule.name} has {schedule.stages} stages; the model has "
                                f"{len(prices)}")
        self.schedule = schedule
        self.prices = prices
        self.send_s = send_s
        self.tail = tail
        self.env = simpy.Environment()
        self.timeline = Timeline(schedule.pp)
        self.gpus = [Gpu(self.env, r, self.timeline) for r in range(schedule.pp)]
        self._events: dict[tuple, simpy.Event] = {}
        self._tasks = 0

    # Named events let a consumer refer to a producer built later (on another rank).
    def _event(self, key: tuple) -> simpy.Event:
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = self.env.event()
        return event

    def _arrival(self, phase: Phase, micro_batch: int, from_stage: int, to_stage: int) -> simpy.Event:
        same_rank = self.schedule.stage_rank(from_stage) == self.schedule.stage_rank(to_stage)
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

    def _chunk_tasks(self, step: Step) -> list[Task]:
        """The tasks of one chunk, chained; the last one completes the chunk's "done" event."""
        segments: tuple[Segment, ...] = self.prices[step.stage].segments[step.phase]
        if step.phase is Phase.B and not self.schedule.splits_backward:
            # A full backward: weight gradients are computed before the input gradient is sent on.
            segments = segments + self.prices[step.stage].segments[Phase.W]
        tasks, previous = [], self._start_deps(step)
        for i, seg in enumerate(segments):
            last = i == len(segments) - 1
            done = self._event(("done", step.phase, step.micro_batch, step.stage)) if last else self.env.event()
            task = Task(seg.name, seg.stream, seg.duration_s, previous, done, seg.phase.value,
                        step.micro_batch, step.stage)
            tasks.append(task)
            previous = [done]
        if not tasks:  # an empty chunk still completes
            self._event(("done", step.phase, step.micro_batch, step.stage)).succeed()
        return tasks

    def _send_task(self, step: Step) -> Task | None:
        """The pipeline send that follows a chunk, if its consumer sits on another rank."""
        target = step.stage + 1 if step.phase is Phase.F else step.stage - 1
        if step.phase is Phase.W or not 0 <= target < self.schedule.stages:
            return None
        if self.schedule.stage_rank(target) == self.schedule.stage_rank(step.stage):
            return None
        return Task(f"send{step.phase.value}", Stream.COMM, self.send_s,
                    [self._event(("done", step.phase, step.micro_batch, step.stage))],
                    self._event(("sent", step.phase, step.micro_batch, step.stage)), step.phase.value,
                    step.micro_batch, step.stage)

    def _submit_step(self, gpu: Gpu, step: Step) -> None:
        chunks = [step] if step.overlap is None else [step, step.overlap]
        lists = [self._chunk_tasks(c) for c in chunks]
        # Overlapped chunks interleave their segments, so each stream alternates between the two.
        for group in zip_longest(*lists):
            for task in group:
                if task is not None:
                    gpu.submit(task)
                    self._tasks += 1
        for c in chunks:
            send = self._send_task(c)
            if send is not None:
                gpu.submit(send)
                self._tasks += 1

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
