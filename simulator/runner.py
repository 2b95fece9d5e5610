"""Executes compiled stream programs for the units of a GPU layout, on SimPy (see :mod:`simulator.engine`).

A stream runs ahead of SimPy's clock: a task starts at max(its stream's previous end, its inputs' ends) and
ends its duration later — the same times an event per task would give, because streams are in order and
nothing else is shared between tasks. A stream blocks on a SimPy event only when an input's completion is not
known yet (its producer has not got there), and a collective's members block until the last one arrives; the
collective then ends for all of them at the last arrival plus its duration (a rendezvous). So SimPy events are
spent on waiting, not on every task; a scalar unit's two streams share one process, so that waiting for the
unit's own other stream costs no event at all.

Tasks: [label, seconds, phase, micro_batch, stage, deps, slot, group, stream, expert_s, net]; ``deps`` are
(producer's pipeline rank, slot) pairs; ``slot`` ≥ 0 where some other stream waits for the task; under skewed
routing a GPU with fewer expert rows than the busiest spends ``expert_s`` × its saving less on a task.

With a time-shared network (:mod:`simulator.network.shared`) a task with a ``net`` op cannot know its end
ahead: its stream waits on SimPy's clock until the task starts (its fixed part done), starts the op's flows
for every GPU the unit stands for (all members' GPUs at a rendezvous, started by the last to arrive), and
resumes when they have arrived. Flows so start in simulated-time order and share links with all traffic then
in flight. Scalar units only: full fidelity runs shared units (classes) with such a network.

Shared and representative units hold one time per signal. Block units hold a numpy vector per signal, one
element per GPU: each GPU's streams are simulated separately, EP and TP collectives meet inside the block (the
maximum over each group's elements), and the tail's DP synchronisation meets across the blocks of a rank.
"""

from __future__ import annotations

import math
from array import array

import numpy as np
import simpy

from simulator.cohorts import UnitSpec


class Unit:
    """Run-time state of one unit: completion time (or vector) per signal slot, unknown until produced."""

    __slots__ = ("spec", "done", "waiting", "peers", "pos", "end", "slowdown", "scale", "rows", "tail", "net_gpus")

    def __init__(self, spec: UnitSpec, slots: int, full: bool):
        self.spec = spec
        self.done = [None] * slots if spec.block else array("d", [math.nan]) * slots
        self.waiting: dict[int, simpy.Event] = {}
        self.peers: list[Unit] = []
        self.pos = [0, 0]
        self.end = [0.0, 0.0]
        self.slowdown = spec.slowdown
        self.scale = np.array(spec.slowdowns) if spec.block else None
        # Timeline rows: (index in the unit, rank written in records).
        self.rows = [(j, g if full else spec.rank) for j, g in spec.watch]
        self.tail = np.array(spec.tail_labels, dtype=np.intp) if spec.block else None
        self.net_gpus: tuple[int, ...] = ()  # with a time-shared network: the GPUs whose traffic it starts


class Meeting:
    """A collective's rendezvous: members still to arrive, the last arrival time, the event the early ones wait
    on, the end once known, and the units that arrived (blocks: (unit, its times) pairs; ``end`` then maps each
    unit to its GPUs' ends)."""

    __slots__ = ("missing", "t", "event", "end", "units")

    def __init__(self, missing: int, t: float):
        self.missing, self.t = missing, t
        self.event: simpy.Event | None = None
        self.end = None
        self.units: list = []


class NetWait:
    """A stream's network op: waiting for its start (``started`` False) or for its flows to arrive."""

    __slots__ = ("t", "plan", "meeting", "started", "ready", "value", "event")

    def __init__(self, t: float, plan, meeting):
        self.t, self.plan, self.meeting = t, plan, meeting
        self.started = self.ready = False
        self.value = 0.0
        self.event = None

    def fire(self, event) -> None:
        self.ready = True
        self.value = event.value if self.started else 0.0


class Runner:
    """Runs every unit's two streams as SimPy processes; collects records of the watched GPUs."""

    def __init__(self, env: simpy.Environment, records: list, network=None, net_ops: list | None = None):
        self.env = env
        self.records = records
        self.rendezvous: dict[tuple, list] = {}
        self.waits = 0
        self.network = network
        self.net_ops = net_ops or []
        self.plans: dict[tuple, object] = {}  # (net op, units) → the network's plan

    def _net_begin(self, net: int, t: float, units: list[Unit], meeting) -> NetWait:
        """Plan the network op ``net`` for ``units``' GPUs, starting at ``t`` plus its fixed part."""
        op = self.net_ops[net]
        key = (net, units[0]) if len(units) == 1 else (net, *units)
        plan = self.plans.get(key)
        if plan is None:
            gpus = units[0].net_gpus if len(units) == 1 else tuple(sorted({g for u in units for g in u.net_gpus}))
            plan = self.plans[key] = self.network.plan(op.comms, gpus, op.send_to)
        wait = NetWait(t, plan, meeting)
        begin = t + op.fixed_s
        if begin > self.env.now:
            wait.event = self.env.timeout(begin - self.env.now)
            wait.event.callbacks.append(wait.fire)
        else:
            wait.ready = True
        return wait

    def _net_step(self, wait: NetWait) -> simpy.Event | None:
        """Advance a network op: the event to wait for, or None once its flows have arrived."""
        if not wait.ready:
            return wait.event
        if not wait.started:
            wait.started, wait.ready = True, False
            wait.event = self.network.start(wait.plan)
            wait.event.callbacks.append(wait.fire)
            return wait.event
        return None

    def start(self, unit: Unit, queues: tuple[list, list]) -> None:
        """Start a unit: one process for both streams of a scalar unit, one per stream for a block."""
        if unit.spec.block:
            for si, specs in enumerate(queues):
                if specs:
                    self.env.process(self.block_stream(unit, si, specs))
        else:
            self.env.process(self.unit_streams(unit, queues))

    def _wait(self, source: Unit, slot: int) -> simpy.Event:
        event = source.waiting.get(slot)
        if event is None:
            event = source.waiting[slot] = self.env.event()
        return event

    def unit_streams(self, unit: Unit, queues: tuple[list, list]):
        """Both streams of a scalar unit in one process: each runs as far as its inputs allow; an input from
        the unit's other stream is picked up on the next pass, so only inputs from other units (and
        rendezvous) cost a SimPy event."""
        env, rendezvous, done, waiting = self.env, self.rendezvous, unit.done, unit.waiting
        peers, groups = unit.peers, unit.spec.groups
        append = self.records.append if unit.rows else None
        row = unit.rows[0][1] if unit.rows else -1
        savings = (unit.spec.expert_saving[0] if unit.spec.expert_saving else None, None)
        scales = (unit.slowdown, 1.0)
        names = ("compute", "comm")
        pos, ends = unit.pos, unit.end
        arrived: list = [None, None]  # a rendezvous this stream has joined and waits to end
        blocked: list = [None, None]
        flights: list = [None, None]  # a network op this stream runs (time-shared network)
        while True:
            progressed = False
            for si in (0, 1):
                specs = queues[si]
                i, n, t = pos[si], len(specs), ends[si]
                scale, saving, name = scales[si], savings[si], names[si]
                blocked[si] = None
                while i < n:
                    label, duration_s, phase, mb, stage, deps, slot, group, _, expert_s, net = specs[i]
                    ready_all = True
                    for p_rank, p_slot in deps:
                        source = peers[p_rank]
                        ready = source.done[p_slot]
                        if ready != ready:  # NaN: not computed yet
                            if source is not unit:
                                blocked[si] = self._wait(source, p_slot)
                            ready_all = False
                            break
                        if ready > t:
                            t = ready
                    if not ready_all:
                        break
                    if net is not None:
                        wait = flights[si]
                        if wait is None:
                            meeting = None
                            if group is not None and groups[group][1] > 1:
                                key, members = groups[group]
                                meeting = arrived[si]
                                if meeting is None:
                                    rkey = (group, key, i)
                                    meeting = rendezvous.get(rkey)
                                    if meeting is None:
                                        meeting = rendezvous[rkey] = Meeting(members, t)
                                    elif t > meeting.t:
                                        meeting.t = t
                                    meeting.missing -= 1
                                    meeting.units.append(unit)
                                    arrived[si] = meeting
                                    if meeting.missing == 0:  # the last to arrive starts the op for everyone
                                        del rendezvous[rkey]
                                        arrived[si] = None
                                        wait = flights[si] = self._net_begin(net, meeting.t, meeting.units, meeting)
                                if wait is None and meeting.end is None:
                                    if meeting.event is None:
                                        meeting.event = env.event()
                                    blocked[si] = meeting.event
                                    break
                            else:
                                wait = flights[si] = self._net_begin(net, t, [unit], None)
                        if wait is not None:
                            event = self._net_step(wait)
                            if event is not None:
                                blocked[si] = event
                                break
                            end = env.now + wait.value
                            flights[si] = None
                            t = wait.t
                            if wait.meeting is not None:
                                wait.meeting.end = end
                                if wait.meeting.event is not None:
                                    wait.meeting.event.succeed()
                        else:  # a member whose op another unit ran
                            arrived[si] = None
                            end = meeting.end
                    elif group is None:
                        if saving is not None and expert_s:
                            end = t + (duration_s - expert_s * saving[phase]) * scale
                        else:
                            end = t + duration_s * scale
                    else:
                        key, members = groups[group]
                        if members == 1:
                            end = t + duration_s
                        else:
                            meeting = arrived[si]
                            if meeting is None:
                                meeting = rendezvous.get((group, key, i))
                                if meeting is None:
                                    meeting = rendezvous[(group, key, i)] = Meeting(members, t)
                                elif t > meeting.t:
                                    meeting.t = t
                                meeting.missing -= 1
                                if meeting.missing == 0:
                                    del rendezvous[(group, key, i)]
                                    meeting.end = meeting.t + duration_s
                                    if meeting.event is not None:
                                        meeting.event.succeed()
                            if meeting.missing > 0:
                                arrived[si] = meeting
                                if meeting.event is None:
                                    meeting.event = env.event()
                                blocked[si] = meeting.event
                                break
                            arrived[si] = None
                            end = meeting.end
                    if append is not None:
                        append((row, name, t, end, label, phase, mb, stage))
                    if slot >= 0:
                        done[slot] = end
                        if waiting:
                            event = waiting.pop(slot, None)
                            if event is not None:
                                event.succeed()
                    t = end
                    i += 1
                    progressed = True
                # On a block, t may already hold some inputs' ends: a lower bound of the task's start, so
                # keeping it changes nothing when the task's inputs are checked again.
                pos[si], ends[si] = i, t
            if pos[0] == len(queues[0]) and pos[1] == len(queues[1]):
                return
            if progressed:
                continue
            events = [e for e in blocked if e is not None]
            if not events:
                return  # both streams wait for each other: a deadlock, reported by the engine
            self.waits += 1
            yield events[0] if len(events) == 1 else env.any_of(events)

    def block_stream(self, unit: Unit, si: int, specs: list):
        """A block's stream: ``t`` holds each GPU's stream time."""
        rendezvous, done, waiting, peers = self.rendezvous, unit.done, unit.waiting, unit.peers
        spec = unit.spec
        size = len(spec.gpus)
        width = {kind: w for kind, w in spec.width.items()}
        append, rows = self.records.append, unit.rows
        name = "compute" if si == 0 else "comm"
        scale = unit.scale if si == 0 and any(s != 1.0 for s in spec.slowdowns) else None
        savings = None
        if spec.expert_saving and si == 0:
            savings = {p: np.array([s[p] for s in spec.expert_saving]) for p in spec.expert_saving[0]}
        maximum = np.maximum
        t = np.zeros(size)
        for i, (label, duration_s, phase, mb, stage, deps, slot, group, _, expert_s, _net) in enumerate(specs):
            for p_rank, p_slot in deps:
                source = peers[p_rank]
                ready = source.done[p_slot]
                if ready is None:
                    unit.pos[si] = i
                    self.waits += 1
                    yield self._wait(source, p_slot)
                    ready = source.done[p_slot]
                t = maximum(t, ready)
            if group is None:
                if savings is not None and expert_s:
                    seconds = duration_s - expert_s * savings[phase]
                    end = t + (seconds * scale if scale is not None else seconds)
                else:
                    end = t + (duration_s * scale if scale is not None else duration_s)
            elif group == "tail":
                key, members = spec.groups["tail"]
                meeting = rendezvous.get((group, key, i))
                if meeting is None:
                    meeting = rendezvous[(group, key, i)] = Meeting(members, 0.0)
                meeting.units.append((unit, t))
                meeting.missing -= 1
                if meeting.missing == 0:
                    del rendezvous[(group, key, i)]
                    meeting.end = _tail_meeting(meeting.units, duration_s)
                    if meeting.event is not None:
                        meeting.event.succeed()
                else:
                    if meeting.event is None:
                        meeting.event = self.env.event()
                    unit.pos[si] = i
                    self.waits += 1
                    yield meeting.event
                end = meeting.end[id(unit)]
            else:
                w = width.get(group, 1)
                if w == 1:
                    end = t + duration_s
                elif w == size:
                    end = np.full(size, t.max() + duration_s)
                else:
                    end = np.repeat(t.reshape(-1, w).max(axis=1), w) + duration_s
            for j, row in rows:
                append((row, name, float(t[j]), float(end[j]), label, phase, mb, stage))
            if slot >= 0:
                done[slot] = end
                if waiting:
                    event = waiting.pop(slot, None)
                    if event is not None:
                        event.succeed()
            t = end
        unit.pos[si] = len(specs)
        unit.end[si] = float(t.max()) if size else 0.0


def _tail_meeting(arrivals: list[tuple[Unit, np.ndarray]], duration_s: float) -> dict[int, np.ndarray]:
    """End times of a DP synchronisation over blocks: per tail-group component, its last arrival + duration."""
    labels = np.concatenate([unit.tail for unit, _ in arrivals])
    times = np.concatenate([t for _, t in arrivals])
    last = np.full(int(labels.max()) + 1, -np.inf)
    np.maximum.at(last, labels, times)
    return {id(unit): last[unit.tail] + duration_s for unit, _ in arrivals}
