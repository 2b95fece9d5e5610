"""The compiler: tasks whose dependencies are signals → tasks with the (pipeline rank, slot) pairs the runner reads.

The program builder (:mod:`moesim.simulator.engine.program`) names each dependency by a signal, one per task
completion. The runner keeps, per unit, one end time per *slot*, numbered per producing pipeline rank: only
completions that a task on another stream (or another rank) waits for get one, or may (a step's exchanges with other
steps and its last task on each stream), so a unit's table of end times stays short. A dependency on an earlier task
of the same stream is implied by the stream's order and dropped.

A rank's program repeats a few kinds of step (a chunk, an overlapped pair) over its micro-batches, so compiling
goes in two parts. :func:`compile_step` compiles the tasks of one step of a kind once, into a
:class:`StepTemplate`: what each task waits for inside the step is worked out there, as slots relative to the
copy's first slot, and its waits outside the step are named by the step's *roles* (the signals a step exchanges
with the rest of the program: its start dependencies, its chunks' completions and sends, in an order the builder
gives). :meth:`StepTemplate.add_to` then adds a copy of the step per micro-batch, sharing its task objects, and
:meth:`Linker.link` resolves the waits outside steps once every rank's program is in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter

from moesim.simulator.engine.host import issue_entry
from moesim.simulator.engine.ledger import HOLD_PHASES
from moesim.simulator.schedules.base import ScheduleError
from moesim.simulator.engine.tasks import OWN, PP, STREAM_INDEX, STREAMS, RankProgram, Task

NS = len(STREAMS)
INSIDE, OUTSIDE = 0, 1  # a wait for a task of the same step (by its slot there), or for a role of the step


@dataclass(frozen=True, slots=True)
class StepTemplate:
    """One kind of step, compiled: its tasks (:class:`~moesim.simulator.engine.tasks.Task`, ``inputs`` and ``slot``
    relative to a copy's first slot), shared by every copy.

    ``streams`` are (stream index, the step's tasks on it in order, None when all their micro-batches are a copy's
    first, else a :func:`picker` of each one's from a copy's micro-batches) for each stream the step uses; ``issued``
    the tasks in issue order, as the host plan reads them (:func:`~moesim.simulator.engine.host.issue_entry`);
    ``slots`` how many slots one copy uses; ``outside`` (stream index, position, waits) for each task with a wait
    outside the step, its waits in order as (INSIDE, slot in the step) or (OUTSIDE, role index); ``exports`` (stream
    index, position, slot in the step, role index) for each task whose completion is one of the step's roles;
    ``holds`` (stream index, position, stage, micro-batch index, forward) for each chunk's first F task (forward
    True) and its last B or W task on each stream but the pipeline's: a stream runs in order, so those start the
    chunk's forward earliest and end its backward latest there (where its micro-batch's activations are taken and
    let go of).
    """

    streams: tuple[tuple[int, list[Task], Callable | None], ...]
    issued: list[tuple]
    slots: int
    outside: tuple[tuple[int, int, tuple], ...]
    exports: tuple[tuple[int, int, int, int], ...]
    holds: tuple[tuple[int, int, int, int, bool], ...]

    def add_to(self, program: RankProgram, rank: int, micro_batches: tuple[int, ...], roles: list[int],
               linker: "Linker", in_order: bool) -> None:
        """Append a copy of the step to ``program`` (pipeline rank ``rank``) for ``micro_batches`` and the copy's
        ``roles``, and, if ``in_order``, to the program's issue ``order``; its waits outside the step go to
        ``linker``."""
        slots = linker.slots
        base = slots[rank]
        slots[rank] += self.slots
        queues, bases, mbs = program.queues, program.bases, program.micro_batches
        starts = [len(queue) for queue in queues]
        for si, tasks, index in self.streams:
            queues[si].extend(tasks)
            bases[si].extend([base] * len(tasks))
            mbs[si].extend([micro_batches[0]] * len(tasks) if index is None else index(micro_batches))
        pending = linker.pending
        for si, position, waits in self.outside:
            pending.append((program, rank, si, starts[si] + position, waits, base, roles))
        producers = linker.producers
        for si, position, slot, role in self.exports:
            producers[roles[role]] = (rank, si, starts[si] + position, base + slot)
        if in_order:
            program.order.append((self.issued, starts))
        if self.holds:
            program.holds.append((self.holds, starts, micro_batches))


def compile_step(tasks: list[Task], roles: list[int], micro_batch_index) -> StepTemplate:
    """Compile one step's ``tasks`` (in issue order, dependencies as signals) into a :class:`StepTemplate`.

    A dependency produced by one of ``tasks`` is a wait inside the step (dropped where the stream's order implies
    it); any other must be one of ``roles``, as must a completion other steps wait for. A slot goes to each task
    waited for across streams inside the step, and to each task another step may wait for: the step's exports
    and its last task on each stream (the rank's tail waits for those). ``micro_batch_index(i, task)`` is the
    index of the task's micro-batch among a copy's micro-batches."""
    produced = {task.done: i for i, task in enumerate(tasks)}
    role_index = {}
    for r, signal in enumerate(roles):
        role_index.setdefault(signal, r)
    stream_of = [STREAM_INDEX[task.stream] for task in tasks]
    micro_batch_of = [micro_batch_index(i, task) for i, task in enumerate(tasks)]
    position, counts, last = [], [0] * NS, {}
    for i, si in enumerate(stream_of):
        position.append(counts[si])
        counts[si] += 1
        last[si] = i
    slot_of = [-1] * len(tasks)
    slots = 0

    def slot(j: int) -> int:
        nonlocal slots
        if slot_of[j] < 0:
            slot_of[j] = slots
            slots += 1
        return slot_of[j]

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
            elif stream_of[j] != stream_of[i] or position[j] >= position[i]:  # else implied by the stream's order
                refs.append((INSIDE, slot(j)))
        waits.append(refs)
    exports = []
    for i, task in enumerate(tasks):
        if task.done in role_index:
            exports.append((stream_of[i], position[i], slot(i), role_index[task.done]))
    for i in last.values():
        slot(i)
    compiled, outside = [], []
    for i, (task, refs) in enumerate(zip(tasks, waits)):
        copy = Task(task.label, task.duration_s, task.phase, -1, task.stage, (), -1, task.group, task.stream,
                    task.expert_s, task.net, task.host)
        copy.slot = slot_of[i]
        if all(kind == INSIDE for kind, _ in refs):
            copy.inputs = tuple((OWN, value) for _, value in refs)
        else:
            copy.inputs = None
            outside.append((stream_of[i], position[i], tuple(refs)))
        compiled.append(copy)
    streams = []
    for si in sorted(last):
        members = [i for i in range(len(tasks)) if stream_of[i] == si]
        index = [micro_batch_of[i] for i in members]
        streams.append((si, [compiled[i] for i in members], None if not any(index) else picker(index)))
    issued = [issue_entry(stream_of[i], position[i], copy) for i, copy in enumerate(compiled)]
    return StepTemplate(tuple(streams), issued, slots, tuple(outside), tuple(exports),
                        held_extremes(tasks, stream_of, position, micro_batch_of))


def picker(index: list[int]):
    """A function of a copy's micro-batches giving each task's, a task's by its ``index`` into them (a tuple)."""
    if len(index) > 1:
        return itemgetter(*index)
    only = index[0]
    return lambda micro_batches: (micro_batches[only],)


def held_extremes(tasks: list[Task], stream_of: list[int], position: list[int],
                  micro_batch_of: list[int]) -> tuple[tuple[int, int, int, int, bool], ...]:
    """:attr:`StepTemplate.holds` of a step's ``tasks`` (``stream_of``, ``position`` and ``micro_batch_of`` each
    task's stream index, position on it and micro-batch index in a copy)."""
    first_forward: dict[tuple, int] = {}
    last_backward: dict[tuple, int] = {}
    for i, task in enumerate(tasks):
        if stream_of[i] == PP or task.phase not in HOLD_PHASES:  # sends hold no activations
            continue
        chunk = (stream_of[i], task.stage, micro_batch_of[i])
        if task.phase == "F":
            first_forward.setdefault(chunk, position[i])
        else:
            last_backward[chunk] = position[i]
    return (tuple((si, at, stage, index, True) for (si, stage, index), at in first_forward.items())
            + tuple((si, at, stage, index, False) for (si, stage, index), at in last_backward.items()))


class Linker:
    """Where each role signal is produced and which tasks wait for ones outside their step; ``slots[rank]`` counts
    each pipeline rank's slots as steps are added."""

    def __init__(self, ranks: int):
        self.slots = [0] * ranks
        self.producers: dict[int, tuple[int, int, int, int]] = {}  # signal → (rank, stream, position, slot)
        self.pending: list[tuple] = []

    def new_slot(self, rank: int) -> int:
        """A slot of pipeline rank ``rank`` outside every step (the tail's)."""
        self.slots[rank] += 1
        return self.slots[rank] - 1

    def link(self, schedule: str) -> list[int]:
        """Give every task that waits outside its step the (pipeline rank, slot) pairs it waits for, in the
        program's ``linked``; returns each rank's slot count. ``schedule`` names the schedule in the error a wait
        for a signal no rank produces raises (a deadlock)."""
        producers = self.producers
        for program, rank, si, position, refs, base, roles in self.pending:
            inputs = ()  # slots from the copy's base, as the runner reads every wait
            for kind, value in refs:
                if kind == INSIDE:
                    inputs += ((OWN, value),)
                    continue
                found = producers.get(roles[value])
                if found is None:
                    raise ScheduleError(f"schedule {schedule} deadlocked: rank {rank} {program.where(si, position)} "
                                        "waits for a chunk no rank runs")
                p_rank, p_si, p_position, p_slot = found
                if p_rank == rank and p_si == si and p_position < position:
                    continue  # implied by the stream's order
                inputs += ((p_rank, p_slot - base),)
            program.linked[si][position] = inputs
        self.pending, self.producers = [], {}
        return self.slots


def compile_programs(programs: list[RankProgram], schedule: str) -> list[int]:
    """Compile hand-built programs (tasks with signals added by :meth:`RankProgram.add`, each task's completion a
    signal of its own): every rank's tasks are compiled as one step, in place. Returns how many slots each rank's
    units keep; ``schedule`` names the schedule in the error a wait for a task no rank runs raises."""
    linker = Linker(len(programs))
    for rank, program in enumerate(programs):
        tasks = [task for queue in program.queues for task in queue]
        roles = sorted({task.done for task in tasks} | {dep for task in tasks for dep in task.deps})
        template = compile_step(tasks, roles, lambda i, task: i)
        for queue in program.queues:
            queue.clear()
        template.add_to(program, rank, tuple(task.micro_batch for task in tasks), roles, linker, True)
    slots = linker.link(schedule)
    for program in programs:
        program.clear_hosts()
    return slots
