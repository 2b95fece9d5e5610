"""The SimPy engine: GPUs with in-order streams executing a pipeline schedule's program.

Each simulated GPU has a compute stream, a communication stream and a pipeline send/recv stream that run their
queues of tasks in order,
like CUDA streams: a task starts when the stream is free and all its dependencies are done, then occupies the
stream for its duration (seconds). Overlap between computation and communication is not typed in anywhere; it
emerges from the streams and the dependencies.

:class:`PipelineEngine` puts the parts together (the package's modules, :mod:`moesim.simulator.engine`); each
pipeline rank's program is built and compiled once, however many units run it.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from dataclasses import dataclass, field

import simpy
from simpy.events import NORMAL

from moesim.simulator.engine.cohorts import GpuLayout, representative_layout
from moesim.simulator.engine.host import HostPricer, plan_host
from moesim.simulator.engine.ledger import RankBreakdown
from moesim.simulator.pricing import StagePrice
from moesim.simulator.engine.program import ProgramBuilder, TailSpec
from moesim.simulator.engine.runner import Runner, Unit
from moesim.simulator.schedules.base import Schedule, ScheduleError
from moesim.simulator.engine.tasks import NetOp, RankProgram

__all__ = ["CountingEnvironment", "NetOp", "PipelineEngine", "TailSpec", "Timeline"]


@dataclass
class Timeline:
    """What ran where: ``records`` rows are (rank, stream, start_s, end_s, label, phase, micro_batch, stage).

    Representative fidelity: ``rank`` is the pipeline rank (0 … ranks − 1). Full fidelity: ``rank`` is the
    global GPU index of a recorded GPU, ``pipeline_rank[gpu]`` its pipeline rank and ``members[gpu]`` how many
    GPUs behave exactly like it (its equivalence class). ``events`` counts task starts and ends over every
    simulated unit; ``gpu_events`` the same over every GPU they stand for; ``waits`` the times a stream
    blocked on a SimPy event; ``tasks`` the engine tasks run (over every simulated unit) and ``simpy_events``
    the events SimPy itself scheduled (waits, rendezvous, network transfers). ``breakdowns[rank]`` is each row
    rank's breakdown (:class:`~moesim.simulator.engine.ledger.RankBreakdown`) from what the runner entered in its ledger as
    tasks finished, made whether or not ``records`` are kept (``keep_records``).
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
    breakdowns: dict[int, RankBreakdown] = field(default_factory=dict, repr=False)

    def row_ranks(self) -> list[int]:
        """The ranks that have rows: every pipeline rank, or (full fidelity) the recorded GPUs."""
        return list(range(self.ranks)) if self.pipeline_rank is None else sorted(self.pipeline_rank)


class PipelineEngine:
    """Runs a pipeline schedule on a GPU layout and returns its timeline.

    Without ``layout`` (representative fidelity) one unit per pipeline rank stands for all its GPUs. With a
    :class:`~moesim.simulator.engine.cohorts.GpuLayout` (full fidelity) every GPU is simulated: each unit is one GPU, or a
    class of GPUs that provably behave alike; collectives are rendezvous of their group's units and pipeline
    sends go between the GPUs that hold the stages. ``send_s`` is one pipeline send/recv (seconds).
    ``compute_slowdown`` maps a rank to the factor by which its compute kernels are slower (stragglers).
    ``pair_s``, for synthetic studies only (``moesim schedule --fb``), replaces the priced components of every
    overlapped pair by that many seconds of compute, split between its chunks in proportion to their own times.
    A time-shared ``network`` (:mod:`moesim.simulator.network.shared`) moves communication in simulated time;
    ``send_comm`` is the Comm of one pipeline send on it. With a ``host`` (:class:`~moesim.simulator.engine.host.HostPricer`)
    each unit's kernels are issued by its host thread (:mod:`moesim.simulator.engine.host`). Without ``keep_records`` the
    timeline keeps no records, only each row's ledger (what the step's breakdown needs).
    """

    def __init__(self, schedule: Schedule, prices: list[StagePrice], send_s: float, tail: TailSpec,
                 pair_s: float | None = None, compute_slowdown: dict[int, float] | None = None,
                 layout: GpuLayout | None = None, network=None, send_comm=None, host: HostPricer | None = None,
                 keep_records: bool = True):
        if len(prices) != schedule.stages:
            raise ScheduleError(f"schedule {schedule.name} has {schedule.stages} stages; the model has "
                                f"{len(prices)}")
        self.schedule = schedule
        self.builder = ProgramBuilder(schedule, prices, send_s, tail, pair_s, network, send_comm, host)
        self.activation_bytes = [p.activation_bytes for p in prices]
        self.host = host
        self.env = CountingEnvironment()
        self.network = network
        self.full = layout is not None  # every GPU simulated (shared by equivalence class or not)
        self.layout = layout or representative_layout(schedule.pp, compute_slowdown)
        if self.layout.pipeline_ranks != schedule.pp:
            raise ScheduleError(f"the GPU layout has {self.layout.pipeline_ranks} pipeline ranks; the schedule "
                                f"{schedule.pp}")
        self.timeline = Timeline(schedule.pp)
        self.keep_records = keep_records

    def run(self) -> Timeline:
        """Build and compile every pipeline rank's program, run all units to the end, and return the timeline."""
        # The programs live for the whole run and die with it: the cyclic garbage collector stays off meanwhile.
        with collector_paused():
            programs = self.builder.build()
            slots = self.builder.slots
            if self.host is not None:
                plan_host(programs, slots)
            timeline = self._execute(programs, slots)
            del programs  # gone before the collector is back on: its next collection would walk them all
        return timeline

    def _execute(self, programs: list[RankProgram], slots: list[int]) -> Timeline:
        """Run the compiled programs on every unit of the layout (``slots``: end times each rank's units keep)."""
        full, network = self.full, self.network
        units = [Unit(spec, slots[spec.rank], full) for spec in self.layout.units]
        for unit in units:
            unit.connect(units)
            if network is not None:  # the GPUs whose traffic the unit starts
                unit.net_gpus = unit.spec.gpus if full else network.rank_gpus(unit.spec.rank)
        if network is not None:
            network.attach(self.env)
        records = self.timeline.records if self.keep_records else None
        runner = Runner(self.env, records, network, self.builder.net_ops,
                        self.host.model.sync_s if self.host is not None else 0.0)
        for unit in units:
            runner.start(unit, programs[unit.spec.rank])
        self.env.run()
        self._finish(units, programs, runner)
        for unit in units:  # a unit is among its own peers: break the cycle, so that the programs go at once
            unit.peers = []
        return self.timeline

    def _finish(self, units: list[Unit], programs: list[RankProgram], runner: Runner) -> None:
        """Fill the timeline's counts, or raise the deadlock if a stream stopped short of its end."""
        tl, full = self.timeline, self.full
        total = ran = gpu_ran = 0
        stuck = None
        for unit in units:
            for si, queue in enumerate(programs[unit.spec.rank].queues):
                total += len(queue)
                ran += unit.pos[si]
                gpu_ran += unit.pos[si] * len(unit.spec.gpus)
                ran += unit.pos[si] * (len(unit.spec.gpus) - 1 if unit.spec.block else 0)
                if unit.pos[si] < len(queue) and stuck is None:
                    stuck = (unit, si, unit.pos[si])
        if stuck is not None:
            unit, si, position = stuck
            task = programs[unit.spec.rank].where(si, position)
            where = (f"GPU {unit.spec.gpus[0]} (pipeline rank {unit.spec.rank})" if full
                     else f"rank {unit.spec.rank}")
            raise ScheduleError(f"schedule {self.schedule.name} deadlocked: {where} stuck at {task} "
                                f"({ran}/{total} tasks ran)")
        tl.records.sort(key=_end_s)  # streams run ahead independently; rows in completion order
        tl.makespan_s = max(max(unit.end) for unit in units)
        # While the collector is still paused (collector_paused): the breakdowns read the programs.
        tl.breakdowns = {row: ledger.breakdown(tl.makespan_s, self.activation_bytes)
                         for unit in units for (_, row), ledger in zip(unit.rows, unit.ledgers)}
        tl.events, tl.gpu_events, tl.waits = 2 * ran, 2 * gpu_ran, runner.waits
        tl.tasks, tl.simpy_events = ran, self.env.scheduled
        tl.units = sum(len(u.spec.gpus) if u.spec.block else 1 for u in units)
        if full:
            tl.fidelity = "full"
            tl.ranks = self.layout.gpus
            tl.pipeline_rank = {g: g // self.layout.stage_gpus for g in self.layout.watched}
            tl.members = dict(self.layout.watched)


# A DeepSeek-V3 step's programs are ~75,000 tasks with their lists and tuples: objects that live for the whole
# run and hold no reference cycles, yet every collection of CPython's cyclic garbage collector (triggered by
# allocation counts while they are built, and while the runner appends its ledger's tuples) traverses the
# young ones again, and a full one all of them. On the DeepSeek-V3 preset that was about a third of the engine's
# CPU time (collections timed with gc.callbacks around PipelineEngine.run: 0.21 of 0.65 CPU s, in both
# fidelities). So the collector pauses while the programs are built, compiled and run, and they are freed before
# it is back on (alive then, they were still young: the next collection walked them all, ~40 ms). The run makes
# no cyclic garbage (none found by gc.collect after a DeepSeek-V3 step in either fidelity; the flow network's
# ~9,000 objects at 2,048 GPUs). Freezing them out of the collector instead (gc.freeze) needs to know whether
# the caller froze objects of its own, and gc.get_freeze_count walks them all: 4 ms a step under the `moesim`
# command, which freezes what its imports made.
@contextmanager
def collector_paused():
    """The cyclic garbage collector off for the block, then as it was (the caller may have it off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
