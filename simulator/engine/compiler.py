"""The compiler: tasks whose dependencies are signals → tasks with the (pipeline rank, slot) pairs the runner reads.

The program builder (:mod:`moesim.simulator.engine.program`) names each dependency by a signal, one per task
completion. The runner keeps, per unit, one end time per *slot*: only completions that a task on another stream (or
another rank) waits for get a slot, numbered per producing pipeline rank, so a unit's table of end times is as short
as it can be. A dependency on an earlier task of the same stream is implied by the stream's order and dropped.

A rank's program repeats a few kinds of step (a chunk, an overlapped pair) over its micro-batches, so compiling
goes in two parts. :func:`compile_step` compiles the tasks of one step of a kind once, into a
:class:`StepTemplate`: what each task waits for inside the step is worked out there, and its waits outside the step
are named by the step's *roles* (the signals a step exchanges with the rest of the program: its start dependencies,
its chunks' completions and sends, in an order the builder gives). :meth:`StepTemplate.add_to` then adds a copy of
the step per micro-batch at the cost of making its tasks, and :meth:`Linker.link` resolves the waits outside
steps once every rank's program is in place.
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.simulator.schedules.base import ScheduleError
from moesim.simulator.engine.tasks import STREAM_INDEX, STREAMS, RankProgram, Task

NS = len(STREAMS)
INSIDE, OUTSIDE = 0, 1  # a wait for a task of the same step (by its slot there), or for a role of the step


@dataclass(frozen=True, slots=True)
class StepTemplate:
    """One kind of step, compiled. ``tasks`` are, in issue order, (label, seconds, phase, index of the micro-batch
    among the instance's, stage, group, stream, expert seconds, net op, raw host record, stream index, position
    in the step's share of the stream, slot in the step or −1, inputs, waits): when all its waits are inside the
    step, ``inputs`` are the slots in the step it waits for and ``waits`` None; otherwise ``waits`` are all of
    them in order, as (INSIDE, slot in the step) or (OUTSIDE, role index). ``slots`` is how many slots one copy
    of the step uses; ``exports`` (task index, role index) the tasks whose completion is one of the step's
    roles."""

    tasks: tuple[tuple, ...]
    slots: int
    exports: tuple[tuple[int, int], ...]

    def add_to(self, program: RankProgram, rank: int, micro_batches: tuple[int, ...], roles: list[int],
               linker: "Linker", in_order: bool) -> None:
        """Append a copy of the step to ``program`` (pipeline rank ``rank``) for ``micro_batches`` and the copy's
        ``roles``, and, if ``in_order``, to the program's issue ``order``; its waits outside the step go to
        ``linker``."""
        slots = linker.slots
        base = slots[rank]
        slots[rank] += self.slots
        queues = program.queues
        starts = [len(queue) for queue in queues]
        pending = linker.pending
        order = program.order.append if in_order else None
        for (label, duration_s, phase, mb, stage, group, stream, expert_s, net, host, si, position, slot, inputs,
             waits) in self.tasks:
            task = Task(label, duration_s, phase, micro_batches[mb], stage, (), -1, group, stream, expert_s, net,
                        host)
            if slot < 0:
                task.slot = -1
            else:
                task.slot = base + slot
            if waits is not None:
                pending.append((rank, si, starts[si] + position, task, waits, base, roles))
            elif inputs.__class__ is int:  # the commonest: one wait inside the step
                task.inputs = ((rank, base + inputs),)
            else:
                task.inputs = tuple([(rank, base + s) for s in inputs])
            queues[si].append(task)
            if order is not None:
                order(task)
        producers = linker.producers
        for index, role in self.exports:
            entry = self.tasks[index]
            si = entry[10]
            position = starts[si] + entry[11]
            producers[roles[role]] = (rank, si, position, queues[si][position])


def compile_step(tasks: list[Task], roles: list[int], micro_batch_index) -> StepTemplate:
    """Compile one step's ``tasks`` (in issue order, dependencies as signals) into a :class:`StepTemplate`.

    A dependency produced by one of ``tasks`` is a wait inside the step (dropped where the stream's order implies
    it); any other must be one of ``roles``, as must a completion other steps wait for. ``micro_batch_index(i,
    task)`` is the index of the task's micro-batch among an instance's micro-batches."""
    produced = {task.done: i for i, task in enumerate(tasks)}
    role_index = {}
    for r, signal in enumerate(roles):
        role_index.setdefault(signal, r)
    stream_of = [STREAM_INDEX[task.stream] for task in tasks]
    position, counts = [], [0] * NS
    for si in stream_of:
        position.append(counts[si])
        counts[si] += 1
    slot_of = [-1] * len(tasks)
    slots = 0
    waits = []
    for i, task in enumerate(tasks):
        refs = []
        for dep in task.deps:
            j = produced.get(dep)
            if j is None:
                if dep not in role_index:
                    raise ValueError(f"{task.where()} waits for signal {dep}, which is neither produced by its "
                                     "step nor one of its roles")
                refs.append((OUTSIDE, role_index[dep]))
                continue
            if stream_of[j] == stream_of[i] and position[j] < position[i]:
                continue  # implied by the stream's order
            if slot_of[j] < 0:
                slot_of[j] = slots
                slots += 1
            refs.append((INSIDE, slot_of[j]))
        waits.append(refs)
    compiled = []
    for i, (task, refs) in enumerate(zip(tasks, waits)):
        inside = tuple(slot for kind, slot in refs if kind == INSIDE)
        if len(inside) < len(refs):
            inputs, outside = (), tuple(refs)
        else:
            inputs, outside = inside[0] if len(inside) == 1 else inside, None
        compiled.append((task.label, task.duration_s, task.phase, micro_batch_index(i, task), task.stage, task.group,
                         task.stream, task.expert_s, task.net, task.host, stream_of[i], position[i], slot_of[i],
                         inputs, outside))
    exports = tuple((i, role_index[task.done]) for i, task in enumerate(tasks) if task.done in role_index)
    return StepTemplate(tuple(compiled), slots, exports)


class Linker:
    """Where each role signal is produced and which tasks wait for ones outside their step; ``slots[rank]`` counts
    each pipeline rank's slots as steps are added."""

    def __init__(self, ranks: int):
        self.slots = [0] * ranks
        self.producers: dict[int, tuple[int, int, int, Task]] = {}  # signal → (rank, stream, position, task)
        self.pending: list[tuple] = []

    def slot_of(self, rank: int, task: Task) -> int:
        """The slot of ``task`` (on pipeline rank ``rank``), given one if it has none yet."""
        slot = task.slot
        if slot < 0:
            slot = task.slot = self.slots[rank]
            self.slots[rank] += 1
        return slot

    def link(self, schedule: str) -> list[int]:
        """Set the inputs of every task that waits outside its step and let go of the tasks; returns each rank's
        slot count. ``schedule`` names the schedule in the error a wait for a signal no rank produces raises (a
        deadlock)."""
        producers, slot_of = self.producers, self.slot_of
        for rank, si, position, task, refs, base, roles in self.pending:
            inputs = ()
            for kind, value in refs:
                if kind == INSIDE:
                    inputs += ((rank, base + value),)
                    continue
                found = producers.get(roles[value])
                if found is None:
                    raise ScheduleError(f"schedule {schedule} deadlocked: rank {rank} {task.where()} waits "
                                        "for a chunk no rank runs")
                p_rank, p_si, p_position, producer = found
                if p_rank == rank and p_si == si and p_position < position:
                    continue  # implied by the stream's order
                inputs += ((p_rank, slot_of(p_rank, producer)),)
            task.inputs = inputs
        self.pending, self.producers = [], {}  # the programs hold the tasks now: they go when the run ends
        return self.slots


def compile_programs(programs: list[RankProgram], schedule: str) -> list[int]:
    """Compile hand-built programs (tasks with signals, each task's completion a signal of its own): every rank's
    tasks are compiled as one step and replaced, in their queues, by their compiled copies (``inputs`` and ``slot``
    set, :class:`~moesim.simulator.engine.tasks.Task`). Returns how many slots each rank's units keep;
    ``schedule`` names the schedule in the error a wait for a task no rank runs raises."""
    linker = Linker(len(programs))
    for rank, program in enumerate(programs):
        # In issue order where the program keeps one (the host is modelled), else stream by stream.
        tasks = list(program.order) or [task for queue in program.queues for task in queue]
        roles = sorted({task.done for task in tasks} | {dep for task in tasks for dep in task.deps})
        template = compile_step(tasks, roles, lambda i, task: i)
        in_order = bool(program.order)
        for queue in (*program.queues, program.order):
            queue.clear()
        template.add_to(program, rank, tuple(task.micro_batch for task in tasks), roles, linker, in_order)
    return linker.link(schedule)
