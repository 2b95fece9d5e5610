"""The compiler: signals between tasks → (pipeline rank, slot) pairs the runner reads.

The program builder (:mod:`moesim.simulator.engine.program`) names each dependency by a signal, one per task completion,
numbered over the whole step. The runner keeps, per unit, one end time per *slot*: only completions that a task
on another stream (or another rank) waits for get a slot, numbered per producing pipeline rank, so a unit's
table of end times is as short as it can be. A dependency on an earlier task of the same stream is implied by
the stream's order and dropped.
"""

from __future__ import annotations

from moesim.simulator.schedules.base import ScheduleError
from moesim.simulator.engine.tasks import STREAMS, RankProgram

NS = len(STREAMS)


def compile_programs(programs: list[RankProgram], signals: int, schedule: str) -> list[int]:
    """Sets every task's ``inputs`` and ``slot`` (:class:`~moesim.simulator.engine.tasks.Task`), in place, and returns how
    many slots each pipeline rank's units keep. ``signals`` is how many signals the programs use; ``schedule``
    names the schedule in the error a dependency on a task no rank runs raises (a deadlock)."""
    # Where each signal is produced: rank · STREAMS + stream (−1 when nothing produces it) and position in the queue.
    where, position, slot_of = [-1] * signals, [0] * signals, [-1] * signals
    for rank, program in enumerate(programs):
        for si, queue in enumerate(program.queues):
            code = NS * rank + si
            for i, task in enumerate(queue):
                where[task.done] = code
                position[task.done] = i
    slots = [0] * len(programs)
    for rank, program in enumerate(programs):
        for si, queue in enumerate(program.queues):
            code = NS * rank + si
            for i, task in enumerate(queue):
                inputs = ()
                for dep in task.deps:
                    p_code = where[dep]
                    if p_code == code and position[dep] < i:
                        continue  # implied by the stream's order
                    if p_code < 0:
                        raise ScheduleError(f"schedule {schedule} deadlocked: rank {rank} {task.where()} waits "
                                            "for a chunk no rank runs")
                    p_rank = p_code // NS
                    slot = slot_of[dep]
                    if slot < 0:
                        slot = slot_of[dep] = slots[p_rank]
                        slots[p_rank] += 1
                    inputs += ((p_rank, slot),)
                task.inputs = inputs
    for program in programs:
        for queue in program.queues:
            for task in queue:
                task.slot = slot_of[task.done]
    return slots
