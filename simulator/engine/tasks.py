"""What the engine runs: tasks on a GPU's three streams, and a pipeline rank's program of them.

A :class:`Task` is one priced segment on one stream (compute, communication, or pipeline send/recv) of one GPU.
A rank's :class:`RankProgram` holds its streams' queues; each queue runs in order, like a CUDA stream. The program
builder (:mod:`moesim.simulator.engine.program`) names a task's dependencies by *signals* — ints, one per task
completion — and the compiler (:mod:`moesim.simulator.engine.compiler`) turns them into what the runner
(:mod:`moesim.simulator.engine.runner`) reads: ``inputs``, what it waits for, and ``slot``, where its own
completion time is kept if a task on another stream waits for it. The builder does so once per kind of step and
copies the compiled step for each of its micro-batches: the copies share their task objects, and what differs
between them (micro-batch, slot base, host times) the program keeps per position.

A DeepSeek-V3 step has about 75,000 tasks in ~140 kinds of step, so a task is a class with ``__slots__``
and a plain positional ``__init__`` (a dataclass' generated one costs more per task, and nothing here needs its
extras), and a step's copy costs a few list extensions, not an object per task.
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.workloads.ops import Stream

# A dependency as the runner reads it: (producer's pipeline rank, slot in that rank's completion times). A plain
# pair rather than a named one: the compiler makes one per dependency and the runner unpacks it per task.
Input = tuple[int, int]
# A compiled task's wait on its own unit's table: the producer's "rank" is the last of the unit's peers, itself
# (a step's kind is compiled once for every rank that runs it).
OWN = -1

# A stream's index in :attr:`RankProgram.queues` and in the runner's per-stream state.
COMPUTE, COMM, PP = 0, 1, 2
STREAMS = (Stream.COMPUTE, Stream.COMM, Stream.PP)
STREAM_INDEX = {stream: i for i, stream in enumerate(STREAMS)}


class Task:
    """One segment on one stream.

    ``label`` names it in the timeline (``ATTN3+MLP3``, ``sendF``, ``optimizer``); ``duration_s`` is how long
    it occupies its stream, in seconds; ``phase`` the letter of the chunk's phase ("F", "B", "W") or "dp"/"opt"
    for the step's tail; ``micro_batch`` and ``stage`` the chunk's (−1 for the tail). ``deps`` are the signals
    it waits for and ``done`` the signal its completion gives (builder's view). ``group`` is the process group
    a collective meets over ("ep", "tp", "tail") or None for work no peer waits for; ``stream`` the
    :class:`~moesim.workloads.ops.Stream` it runs on; ``expert_s`` the part of ``duration_s`` spent in routed-expert
    GEMMs at the busiest GPU's load (skewed routing); ``net``, with a time-shared network, the index of its
    :class:`NetOp` (None: it just lasts ``duration_s``); ``host`` None unless the host is modelled
    (:mod:`moesim.simulator.engine.host`): then the builder's (kernels, launch seconds, sync).

    Compiled (:mod:`moesim.simulator.engine.compiler`), one task object stands for the same task of every copy of
    its step: the copy's micro-batch, slot base and planned host times are the program's, per position
    (:class:`RankProgram`); ``micro_batch``, ``deps`` and ``done`` are then −1, () and −1. ``inputs`` are the
    (producer's pipeline rank or ``OWN``, slot) pairs it waits for beyond its stream's order, slots relative to
    its copy's base, or None when some wait is outside its step (the program's ``linked`` holds them then, relative
    to the same base); ``slot`` is where its end time is kept, relative to the base, or −1 when nothing waits for
    it.
    """

    __slots__ = ("label", "duration_s", "phase", "micro_batch", "stage", "deps", "done", "group", "stream",
                 "expert_s", "net", "inputs", "slot", "host")

    def __init__(self, label: str, duration_s: float, phase: str, micro_batch: int, stage: int, deps: list[int],
                 done: int, group: str | None, stream: Stream, expert_s: float = 0.0, net: int | None = None,
                 host: tuple | None = None):
        self.label = label
        self.duration_s = duration_s
        self.phase = phase
        self.micro_batch = micro_batch
        self.stage = stage
        self.deps = deps
        self.done = done
        self.group = group
        self.stream = stream
        self.expert_s = expert_s
        self.net = net
        self.host = host

    def where(self, micro_batch: int | None = None) -> str:
        """The task as an error message names it: ``label phase micro_batch@stage`` (``micro_batch``: a compiled
        task's, from its position)."""
        return f"{self.label} {self.phase}{self.micro_batch if micro_batch is None else micro_batch}@{self.stage}"

    def __repr__(self) -> str:
        return (f"Task({self.where()}, {self.stream.value}, {self.duration_s!r} s, deps={self.deps}, "
                f"done={self.done})")


class RankProgram:
    """A pipeline rank's tasks: ``queues[COMPUTE]``, ``queues[COMM]`` and ``queues[PP]``, each run in order.

    Built once per pipeline rank and run by every unit on that rank (:mod:`moesim.simulator.engine.cohorts`). Built
    with signals (:meth:`add`) a queue holds the tasks themselves. Compiled, a queue holds each copy's shared task
    objects, and per position, stream by stream: ``micro_batches``, ``bases`` (the copy's first slot),
    ``linked`` (position → the (pipeline rank or ``OWN``, slot from the base) pairs a task waiting outside its step
    waits for) and
    ``hosts`` (the planned host record, :func:`moesim.simulator.engine.host.plan_host`, or None). ``order`` lists
    the copies in the order the host issues them, each as (its tasks in issue order, as
    :func:`moesim.simulator.engine.host.issue_entry` gives them, the copy's first position on each stream); the
    program builder keeps it only when the host is modelled. ``holds`` lists, per copy, where its chunks' activations
    are taken and let go of (:attr:`moesim.simulator.engine.compiler.StepTemplate.holds`, the copy's first position
    on each stream, its micro-batches), as the ledger reads them.
    """

    __slots__ = ("queues", "micro_batches", "bases", "linked", "hosts", "order", "holds")

    def __init__(self):
        self.queues: tuple[list[Task], list[Task], list[Task]] = ([], [], [])
        self.micro_batches: tuple[list[int], list[int], list[int]] = ([], [], [])
        self.bases: tuple[list[int], list[int], list[int]] = ([], [], [])
        self.linked: tuple[dict, dict, dict] = ({}, {}, {})
        self.hosts: tuple[list, list, list] = ([], [], [])
        self.order: list[tuple[list, list[int]]] = []
        self.holds: list[tuple[tuple, list[int], tuple[int, ...]]] = []

    @property
    def compute(self) -> list[Task]:
        return self.queues[COMPUTE]

    @property
    def comm(self) -> list[Task]:
        return self.queues[COMM]

    @property
    def pp(self) -> list[Task]:
        return self.queues[PP]

    def add(self, task: Task) -> None:
        """Append ``task`` (with signals, not compiled yet) to the queue of its stream."""
        self.queues[STREAM_INDEX[task.stream]].append(task)

    def clear_hosts(self) -> None:
        """No host record at any position (the host not modelled, or not planned yet)."""
        self.hosts = tuple([None] * len(queue) for queue in self.queues)

    def where(self, si: int, position: int) -> str:
        """Compiled: the task at ``position`` of stream ``si`` as an error message names it (:meth:`Task.where`,
        with that position's micro-batch)."""
        return self.queues[si][position].where(self.micro_batches[si][position])

    def slot(self, si: int, position: int) -> int:
        """Compiled: the slot where the task at ``position`` of stream ``si`` keeps its end time, or −1."""
        task = self.queues[si][position]
        return task.slot if task.slot < 0 else self.bases[si][position] + task.slot

    def waits(self, rank: int, si: int, position: int) -> tuple[Input, ...]:
        """Compiled: the (pipeline rank, slot) pairs the task at ``position`` of stream ``si`` waits for beyond its
        stream's order, as the runner reads them (``rank``: this program's pipeline rank)."""
        task = self.queues[si][position]
        inputs = self.linked[si][position] if task.inputs is None else task.inputs
        base = self.bases[si][position]
        return tuple((rank if p_rank == OWN else p_rank, base + slot) for p_rank, slot in inputs)

    def __len__(self) -> int:
        return sum(len(queue) for queue in self.queues)


@dataclass(frozen=True, slots=True)
class NetOp:
    """What a task moves on a time-shared network: ``comms`` one after another, after ``fixed_s`` seconds of
    work that is not network transfer (kernels of the segment that are not communication); a send goes to the
    GPUs of pipeline rank ``send_to`` (−1: a collective of the task's own process group). Frozen and hashed so
    that equal ops are stored once (the runner keys network plans by op)."""

    comms: tuple
    fixed_s: float = 0.0
    send_to: int = -1
