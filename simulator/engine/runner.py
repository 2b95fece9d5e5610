"""The runner: executes compiled rank programs for the units of a GPU layout, on SimPy (see
:mod:`moesim.simulator.engine`).

A stream runs ahead of SimPy's clock: a task starts at max(its stream's previous end, its inputs' ends) and
ends its duration later — the same times an event per task would give, because streams are in order and
nothing else is shared between tasks. A stream blocks on a SimPy event only when an input's completion is not
known yet (its producer has not got there), and a collective's members block until the last one arrives; the
collective then ends for all of them at the last arrival plus its duration (a rendezvous). So SimPy events are
spent on waiting, not on every task; a scalar unit's streams share one process, so that waiting for the
unit's own other stream costs no event at all.

Programs are read as compiled (:mod:`moesim.simulator.engine.compiler`): a task's ``inputs`` are (producer's pipeline
rank, or ``OWN`` for its own unit; slot) pairs, slots relative to its step copy's first slot (the program's
``bases``), or None when it waits outside its step (then the program's ``linked`` holds them, relative to the same
base); ``slot`` ≥ 0 (from the same base) where another stream may wait for the task; under skewed routing a GPU
with fewer expert rows than the busiest spends ``expert_s`` × its saving less on a task.

With a time-shared network (:mod:`moesim.simulator.network.shared`) a task with a ``net`` op cannot know its end
ahead: its stream waits on SimPy's clock until the task starts (its fixed part done), starts the op's flows
for every GPU the unit stands for (all members' GPUs at a rendezvous, started by the last to arrive), and
resumes when they have arrived. Flows so start in simulated-time order and share links with all traffic then
in flight. Scalar units only: full fidelity runs shared units (classes) with such a network.

Each kind of task but compute (the commonest: inline in the stream loop) has its own small function: a collective
that other units join (:meth:`Runner._collective`, a :class:`~moesim.simulator.engine.rendezvous.Rendezvous` of its group's
units), a network op (:meth:`Runner._net_task`) and, between blocks, the step's DP synchronisation
(:meth:`Runner._tail_sync`).

Shared and representative units hold one time per slot. Block units hold a numpy vector per signal, one
element per GPU: each GPU's streams are simulated separately, EP and TP collectives meet inside the block (the
maximum over each group's elements), and the tail's DP synchronisation meets across the blocks of a rank.
"""

from __future__ import annotations

import numpy as np
import simpy

from moesim.simulator.engine.cohorts import UnitSpec
from moesim.simulator.engine.ledger import Ledger
from moesim.simulator.engine.rendezvous import Rendezvous, TailSync
from moesim.simulator.engine.tasks import OWN, RankProgram, Task

# Timeline records of a stream waiting for its host thread: stream "host", labelled by the stream that waits.
HOST, HOST_BOUND = "host", ("host-bound", "host-bound (comm)", "host-bound (pp)")
STREAM_NAMES = ("compute", "comm", "pp")  # by stream number, as timeline records name them


class Unit:
    """Run-time state of one unit (:class:`~moesim.simulator.engine.cohorts.UnitSpec` ``spec``).

    ``done[slot]`` is the end time (seconds) of the task that gives that slot: a float, or for a block a numpy
    vector (one per GPU); None until produced. ``waiting[slot]`` is the SimPy event a stream of another unit
    waits on for it. ``peers[q]`` is the unit holding its pipeline partners on rank ``q``, and the last of them
    (``peers[OWN]``) the unit itself (:meth:`connect`). ``pos[stream]`` and
    ``end[stream]`` are each stream's next task and its end so far (seconds); stream 0 is compute, 1
    communication, 2 pipeline send/recv. ``slowdown`` (``scale`` for a block's GPUs) multiplies compute
    durations. ``rows`` are the recorded GPUs, (index in the unit, rank written in records), and ``ledgers``
    their :class:`~moesim.simulator.engine.ledger.Ledger`.
    """

    __slots__ = ("spec", "done", "waiting", "peers", "pos", "end", "slowdown", "scale", "rows", "ledgers", "tail",
                 "net_gpus")

    def __init__(self, spec: UnitSpec, slots: int, full: bool):
        self.spec = spec
        self.done: list = [None] * slots
        self.waiting: dict[int, simpy.Event] = {}
        self.peers: list[Unit] = []
        self.pos = [0, 0, 0]
        self.end = [0.0, 0.0, 0.0]
        self.slowdown = spec.slowdown
        self.scale = np.array(spec.slowdowns) if spec.block else None
        # Timeline rows: (index in the unit, rank written in records: the GPU, or the pipeline rank it stands for).
        self.rows = [(j, g if full else spec.rank) for j, g in spec.watch]
        if not spec.block:
            del self.rows[1:]  # a shared unit's GPUs all behave alike: one row is recorded
        self.ledgers: list[Ledger] = []  # each row's time, entered as its tasks finish (made by the runner)
        self.tail = np.array(spec.tail_labels, dtype=np.intp) if spec.block else None
        self.net_gpus: tuple[int, ...] = ()  # with a time-shared network: the GPUs whose traffic it starts

    def connect(self, units: list["Unit"]) -> None:
        """Set ``peers`` from the layout's ``units``: each rank's partner unit, then this unit itself (``OWN``)."""
        self.peers = [units[u] for u in self.spec.peers] + [self]

    def give(self, slot: int, end) -> None:
        """The task giving ``slot`` ended at ``end``: keep it, and wake a stream of another unit waiting for it."""
        self.done[slot] = end
        if self.waiting:
            event = self.waiting.pop(slot, None)
            if event is not None:
                event.succeed()


class NetOpInFlight:
    """A stream's network op in progress (time-shared network): ``t`` when the op's task started (seconds),
    ``plan`` the network's plan for it, ``meeting`` its rendezvous (None for a unit's own op). It waits first for
    its start (``started`` False: the task's fixed part, a SimPy timeout), then for its flows to arrive;
    ``ready`` says the awaited event fired and ``value`` how long the flows took (seconds)."""

    __slots__ = ("t", "plan", "meeting", "started", "ready", "value", "event")

    def __init__(self, t: float, plan, meeting: Rendezvous | None):
        self.t, self.plan, self.meeting = t, plan, meeting
        self.started = self.ready = False
        self.value = 0.0
        self.event = None

    def fire(self, event) -> None:
        self.ready = True
        self.value = event.value if self.started else 0.0


def block_compute_end(task: Task, t: np.ndarray, scale: np.ndarray | None, savings: dict | None) -> np.ndarray:
    """When a block's compute task started at ``t`` ends, per GPU: its duration times each GPU's ``scale`` (a
    straggler), less what each saves on routed experts (``savings[phase]`` of ``task.expert_s``: skewed
    routing)."""
    duration_s = task.duration_s
    if savings is not None and task.expert_s:
        seconds = duration_s - task.expert_s * savings[task.phase]
        return t + (seconds * scale if scale is not None else seconds)
    return t + (duration_s * scale if scale is not None else duration_s)


def block_collective_end(t: np.ndarray, duration_s: float, width: int) -> np.ndarray:
    """A collective inside a block, over groups of ``width`` consecutive GPUs: each group ends at its last
    arrival plus ``duration_s``."""
    if width == 1:
        return t + duration_s
    if width == len(t):
        return np.full(len(t), t.max() + duration_s)
    return np.repeat(t.reshape(-1, width).max(axis=1), width) + duration_s


def host_bound(ledger: Ledger, records: list | None, row: int, si: int, task: Task, micro_batch: int,
               ready_t: float, t: float, end: float, tail: float) -> None:
    """Enter the time a host-issued task's GPU waited for the host to issue its first kernel (``ready_t`` to its
    start ``t``), and its last (its ``end`` to its last issue plus one mean kernel, ``tail``)."""
    if t > ready_t:
        ledger.host.append((ready_t, t))
        if records is not None:
            records.append((row, HOST, ready_t, t, HOST_BOUND[si], task.phase, micro_batch, task.stage))
    if tail > end:
        ledger.host.append((end, tail))
        if records is not None:
            records.append((row, HOST, end, tail, HOST_BOUND[si], task.phase, micro_batch, task.stage))


class Runner:
    """Runs every unit's streams as SimPy processes; enters the watched GPUs' tasks in their units' ledgers and,
    when ``records`` is a list (a timeline is kept), appends their records to it.

    ``rendezvous`` holds the open collectives, keyed by (group kind, group key, task position); ``waits``
    counts the times a stream blocked on a SimPy event. With a time-shared ``network``, ``net_ops`` are the
    :class:`~moesim.simulator.engine.tasks.NetOp` that tasks' ``net`` indices refer to. ``sync_s`` is the host's time for one
    synchronisation once the GPU has reached it (tasks with a ``host`` record, :mod:`moesim.simulator.engine.host`).
    """

    def __init__(self, env: simpy.Environment, records: list | None, network=None, net_ops: list | None = None,
                 sync_s: float = 0.0):
        self.env = env
        self.sync_s = sync_s
        self.records = records
        self.rendezvous: dict[tuple, Rendezvous | TailSync] = {}
        self.waits = 0
        self.network = network
        self.net_ops = net_ops or []
        self.plans: dict[tuple, object] = {}  # (net op, units) → the network's plan

    def start(self, unit: Unit, program: RankProgram) -> None:
        """Start a unit: one process for all streams of a scalar unit, one per stream for a block."""
        unit.ledgers = [Ledger(program) for _ in unit.rows]
        if unit.spec.block:
            for si, queue in enumerate(program.queues):
                if queue:
                    self.env.process(self.block_stream(unit, si, program))
        else:
            self.env.process(self.unit_streams(unit, program))

    def _wait(self, source: Unit, slot: int) -> simpy.Event:
        event = source.waiting.get(slot)
        if event is None:
            event = source.waiting[slot] = self.env.event()
        return event

    def _meeting(self, kind, members: int, factory=Rendezvous):
        """The open rendezvous keyed ``kind`` (group kind, group key, task position) of ``members`` members,
        made by the first to get there; the last to arrive takes it off (:meth:`_arrived_last`)."""
        meeting = self.rendezvous.get(kind)
        if meeting is None:
            meeting = self.rendezvous[kind] = factory(members)
        return meeting

    def _arrived_last(self, kind, meeting, member, t) -> bool:
        """``member`` arrives at ``meeting`` with ``t``; True (and the meeting is no longer open) if it was the
        last."""
        if meeting.arrive(member, t):
            del self.rendezvous[kind]
            return True
        return False

    def unit_streams(self, unit: Unit, program: RankProgram):
        """All streams of a scalar unit in one process: each runs as far as its inputs allow; an input from
        another stream of the unit is picked up on the next pass, so only inputs from other units (and
        rendezvous) cost a SimPy event."""
        env, peers = self.env, unit.peers
        records = self.records if unit.rows else None
        row = unit.rows[0][1] if unit.rows else -1
        ledger = unit.ledgers[0] if unit.ledgers else None
        # Where each stream's task starts and ends go (this unit's recorded GPU), or None.
        enters = None if ledger is None else [(ledger.starts[si].append, ledger.ends[si].append) for si in (0, 1, 2)]
        # Per-stream state indexed by the stream's number (0 compute, 1 comm, 2 pp), not a stream object:
        # this loop runs once per task and unit, and a list index is the cheapest read Python has.
        savings = (unit.spec.expert_saving[0] if unit.spec.expert_saving else None, None, None)
        scales = (unit.slowdown, 1.0, 1.0)
        pos, ends = unit.pos, unit.end
        done, waiting, sync_s, groups = unit.done, unit.waiting, self.sync_s, unit.spec.groups
        queues, bases, linked, hosts, micro_batches = (program.queues, program.bases, program.linked, program.hosts,
                                                       program.micro_batches)
        arrived: list = [None, None, None]  # a rendezvous this stream has joined and waits to end
        blocked: list = [None, None, None]  # the event this stream waits on
        needs = [-1, -1, -1]  # the slot of this unit's table a stream waits for another of its streams to give
        transfers: list = [None, None, None]  # a network op this stream runs (time-shared network)
        streams = [si for si in (0, 1, 2) if queues[si]]
        while True:
            progressed = False
            for si in streams:
                need = needs[si]
                if need >= 0:
                    if done[need] is None:
                        continue  # the stream would stop where it stopped: skip the visit
                    needs[si] = -1
                queue, stream_bases, stream_linked, stream_hosts = queues[si], bases[si], linked[si], hosts[si]
                i, n, t = pos[si], len(queue), ends[si]
                scale, saving = scales[si], savings[si]
                if enters is not None:
                    enter_start, enter_end = enters[si]
                blocked[si] = None
                while i < n:
                    task = queue[i]
                    base = stream_bases[i]
                    inputs = task.inputs
                    if inputs is None:  # a wait outside its step: linked per position
                        inputs = stream_linked[i]
                    for p_rank, p_slot in inputs:  # slots from the step copy's base
                        ready = peers[p_rank].done[base + p_slot]
                        if ready is None:  # not produced yet
                            break
                        if ready > t:
                            t = ready
                    else:
                        ready = t
                    if ready is None:
                        source = peers[p_rank]
                        if source is unit:  # this unit's other streams are picked up on a later pass
                            needs[si] = base + p_slot
                        else:
                            blocked[si] = self._wait(source, base + p_slot)
                        break
                    host = stream_hosts[i]
                    if host is not None:  # the host thread must have issued the task (moesim.simulator.engine.host)
                        base_slot, first_s, tail_s, sync = host
                        # A release another stream of this unit gives (None until then) is picked up on a later pass.
                        if sync is None:
                            release = done[base_slot] if base_slot >= 0 else 0.0
                            if release is None:
                                needs[si] = base_slot
                                break
                        else:  # the host waits for the GPU to get here (``t``), then syncs: a new release
                            last_release, reach_s, release_slot = sync
                            release = done[last_release] if last_release >= 0 else 0.0
                            if release is None:
                                needs[si] = last_release
                                break
                            release = (release + reach_s if release + reach_s > t else t) + sync_s
                            done[release_slot] = release  # read by this unit's streams only: none waits on it
                        ready_t = t
                        if release + first_s > t:
                            t = release + first_s
                    if task.net is not None:
                        event, t, end = self._net_task(unit, si, task, i, t, arrived, transfers)
                        if event is not None:
                            blocked[si] = event
                    elif task.group is None:  # compute: its duration, times the unit's slowdown (a straggler),
                        if saving is not None and task.expert_s:  # less what its GPU saves on routed experts
                            end = t + (task.duration_s - task.expert_s * saving[task.phase]) * scale
                        else:
                            end = t + task.duration_s * scale
                    elif groups[task.group][1] == 1:  # a collective no other unit joins
                        end = t + task.duration_s
                    else:
                        end = self._collective(unit, si, task, i, t, arrived, blocked)
                    if end is None:  # waiting: the host's part is worked out again when it resumes
                        if host is not None:
                            t = ready_t
                        break
                    if enters is not None:
                        enter_start(t)
                        enter_end(end)
                        if records is not None:
                            records.append((row, STREAM_NAMES[si], t, end, task.label, task.phase,
                                            micro_batches[si][i], task.stage))
                    if host is not None:
                        tail = release + tail_s
                        if ledger is not None and (t > ready_t or tail > end):
                            host_bound(ledger, records, row, si, task, micro_batches[si][i], ready_t, t, end, tail)
                        if tail > end:
                            end = tail
                    slot = task.slot
                    if slot >= 0:  # Unit.give, inlined
                        slot += base
                        done[slot] = end
                        if waiting:
                            event = waiting.pop(slot, None)
                            if event is not None:
                                event.succeed()
                    t = end
                    i += 1
                    progressed = True
                pos[si], ends[si] = i, t
            if progressed:
                continue  # another pass: a stream may find what another of the unit's streams just produced
            if all(pos[si] == len(queues[si]) for si in streams):
                return
            events = [e for e in blocked if e is not None]
            if not events:
                return  # the streams wait for each other: a deadlock, reported by the engine
            self.waits += 1
            yield events[0] if len(events) == 1 else env.any_of(events)

    def _collective(self, unit: Unit, si: int, task: Task, i: int, t: float, arrived: list,
                    blocked: list) -> float | None:
        """A collective of stream ``si`` that other units join (position ``i``, this member ready at ``t``): its
        end, or None while members are missing (the stream then waits on ``blocked[si]``)."""
        key, members = unit.spec.groups[task.group]
        meeting = arrived[si]
        if meeting is None:
            kind = (task.group, key, i)
            meeting = self._meeting(kind, members)
            if self._arrived_last(kind, meeting, unit, t):
                meeting.close(meeting.t + task.duration_s)
        if meeting.end is None:
            arrived[si] = meeting
            blocked[si] = meeting.wait(self.env)
            return None
        arrived[si] = None
        return meeting.end

    # A time-shared network: a task with a network op.
    def _net_task(self, unit: Unit, si: int, task: Task, i: int, t: float, arrived: list,
                  transfers: list) -> tuple[simpy.Event | None, float, float | None]:
        """Advance stream ``si``'s network task ``task`` (position ``i``, inputs ready at ``t``): (the event to
        wait for, t, None) while it runs, (None, its start, its end) once its flows have arrived.

        A collective's members meet first; the last to arrive starts the op for all of them, and the others
        take its end."""
        transfer = transfers[si]
        if transfer is None:
            key, members = unit.spec.groups[task.group] if task.group is not None else (-1, 1)
            if members > 1:
                meeting = arrived[si]
                if meeting is None:
                    kind = (task.group, key, i)
                    meeting = arrived[si] = self._meeting(kind, members)
                    if self._arrived_last(kind, meeting, unit, t):  # the last to arrive starts the op for all
                        arrived[si] = None
                        transfer = transfers[si] = self._net_begin(task.net, meeting.t, meeting.arrived, meeting)
                if transfer is None:
                    if meeting.end is None:
                        return meeting.wait(self.env), t, None
                    arrived[si] = None  # a member whose op another unit ran
                    return None, t, meeting.end
            else:
                transfer = transfers[si] = self._net_begin(task.net, t, [unit], None)
        event = self._net_step(transfer)
        if event is not None:
            return event, t, None
        end = self.env.now + transfer.value
        transfers[si] = None
        if transfer.meeting is not None:
            transfer.meeting.close(end)
        return None, transfer.t, end

    def _net_begin(self, net: int, t: float, units: list[Unit], meeting: Rendezvous | None) -> NetOpInFlight:
        """Plan the network op ``net`` for ``units``' GPUs, starting at ``t`` plus its fixed part."""
        op = self.net_ops[net]
        key = (net, units[0]) if len(units) == 1 else (net, *units)
        plan = self.plans.get(key)
        if plan is None:
            gpus = units[0].net_gpus if len(units) == 1 else tuple(sorted({g for u in units for g in u.net_gpus}))
            plan = self.plans[key] = self.network.plan(op.comms, gpus, op.send_to)
        transfer = NetOpInFlight(t, plan, meeting)
        begin = t + op.fixed_s
        if begin > self.env.now:
            transfer.event = self.env.timeout(begin - self.env.now)
            transfer.event.callbacks.append(transfer.fire)
        else:
            transfer.ready = True
        return transfer

    def _net_step(self, transfer: NetOpInFlight) -> simpy.Event | None:
        """Advance a network op: the event to wait for, or None once its flows have arrived."""
        if not transfer.ready:
            return transfer.event
        if not transfer.started:
            transfer.started, transfer.ready = True, False
            transfer.event = self.network.start(transfer.plan)
            transfer.event.callbacks.append(transfer.fire)
            return transfer.event
        return None

    def block_stream(self, unit: Unit, si: int, program: RankProgram):
        """A block's stream ``si``: ``t`` holds each GPU's stream time."""
        done, peers, spec = unit.done, unit.peers, unit.spec
        queue, bases, linked = program.queues[si], program.bases[si], program.linked[si]
        hosts, micro_batches = program.hosts[si], program.micro_batches[si]
        size = len(spec.gpus)
        width = dict(spec.width)
        records = self.records
        rows = [(j, row, ledger) for (j, row), ledger in zip(unit.rows, unit.ledgers)]
        name = STREAM_NAMES[si]
        scale = unit.scale if si == 0 and any(s != 1.0 for s in spec.slowdowns) else None
        savings = None
        if spec.expert_saving and si == 0:
            savings = {p: np.array([s[p] for s in spec.expert_saving]) for p in spec.expert_saving[0]}
        maximum = np.maximum
        t = np.zeros(size)
        zeros = np.zeros(size)  # a release before the step's first host sync
        for i, task in enumerate(queue):
            base = bases[i]
            for p_rank, p_slot in linked[i] if task.inputs is None else task.inputs:  # slots from the copy's base
                source = done if p_rank == OWN else peers[p_rank].done  # most waits are the block's own
                ready = source[base + p_slot]
                if ready is None:  # not produced yet
                    ready = yield from self._block_wait(unit, si, i, peers[p_rank], base + p_slot)
                t = maximum(t, ready)
            host = hosts[i]
            if host is not None:  # the host thread must have issued the task (moesim.simulator.engine.host)
                base_slot, first_s, tail_s, sync = host
                source_slot = base_slot if sync is None else sync[0]
                release = zeros
                if source_slot >= 0:
                    release = done[source_slot]
                    if release is None:  # a release the unit's other stream gives
                        release = yield from self._block_wait(unit, si, i, unit, source_slot)
                if sync is not None:
                    release = maximum(release + sync[1], t) + self.sync_s
                    unit.give(sync[2], release)
                ready_t = t
                t = maximum(t, release + first_s)
            group = task.group
            if group is None:
                end = block_compute_end(task, t, scale, savings)
            elif group == "tail":
                end = yield from self._tail_sync(unit, si, i, task, t)
            else:
                end = block_collective_end(t, task.duration_s, width.get(group, 1))
            label, phase, mb, stage = task.label, task.phase, micro_batches[i], task.stage
            for j, row, ledger in rows:
                ledger.starts[si].append(float(t[j]))
                ledger.ends[si].append(float(end[j]))
                if records is not None:
                    records.append((row, name, float(t[j]), float(end[j]), label, phase, mb, stage))
            if host is not None:
                tail = release + tail_s
                for j, row, ledger in rows:
                    if t[j] > ready_t[j]:
                        ledger.host.append((float(ready_t[j]), float(t[j])))
                        if records is not None:
                            records.append((row, HOST, float(ready_t[j]), float(t[j]), HOST_BOUND[si], phase, mb,
                                            stage))
                    if tail[j] > end[j]:
                        ledger.host.append((float(end[j]), float(tail[j])))
                        if records is not None:
                            records.append((row, HOST, float(end[j]), float(tail[j]), HOST_BOUND[si], phase, mb,
                                            stage))
                end = maximum(end, tail)
            if task.slot >= 0:
                unit.give(base + task.slot, end)
            t = end
        unit.pos[si] = len(queue)
        unit.end[si] = float(t.max()) if size else 0.0

    def _block_wait(self, unit: Unit, si: int, i: int, source: Unit, slot: int):
        """Wait (a SimPy process step) until ``source`` gives ``slot``; its end times."""
        unit.pos[si] = i
        self.waits += 1
        yield self._wait(source, slot)
        return source.done[slot]

    def _tail_sync(self, unit: Unit, si: int, i: int, task: Task, t: np.ndarray):
        """The step's DP synchronisation across the blocks of a rank (a SimPy process step while blocks are
        missing); this block's GPUs' end times."""
        key, members = unit.spec.groups["tail"]
        kind = ("tail", key, i)
        meeting = self._meeting(kind, members, TailSync)
        if self._arrived_last(kind, meeting, unit, t):
            meeting.close(task.duration_s)
        else:
            unit.pos[si] = i
            self.waits += 1
            yield meeting.wait(self.env)
        return meeting.end_of(unit)
