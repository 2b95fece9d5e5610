"""Executes compiled stream programs for the units of a GPU layout, on SimPy (see :mod:`simulator.engine`).

A stream runs ahead of SimPy's clock: a task starts at max(its stream's previous end, its inputs' ends) and
ends its duration later — the same times an event per task would give, because streams are in order and
nothing else is shared between tasks. A stream blocks on a SimPy event only when an input's completion is not
known yet (its producer has not got there), and a collective's members block until the last one arrives; the
collective then ends for all of them at the last arrival plus its duration (a rendezvous). So SimPy events are
spent on waiting, not on every task.

Tasks: [label, seconds, phase, micro_batch, stage, deps, slot, group, stream, expert_s]; ``deps`` are
(producer's pipeline rank, slot) pairs; ``slot`` ≥ 0 where some other stream waits for the task; under skewed
routing a GPU with fewer expert rows than the busiest spends ``expert_s`` × its saving less on a task.

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

    __slots__ = ("spec", "done", "waiting", "peers", "pos", "end", "slowdown", "scale", "rows", "tail")

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


class Runner:
    """Runs every unit's two streams as SimPy processes; collects records of the watched GPUs."""

    def __init__(self, env: simpy.Environment, records: list):
        self.env = env
        self.records = records
        self.rendezvous: dict[tuple, list] = {}
        self.waits = 0

    def start(self, unit: Unit, si: int, specs: list) -> None:
        stream = self.block_stream if unit.spec.block else self.stream
        self.env.process(stream(unit, si, specs))

    def _wait(self, source: Unit, slot: int) -> simpy.Event:
        event = source.waiting.get(slot)
        if event is None:
            event = source.waiting[slot] = self.env.event()
        self.waits += 1
        return event

    def stream(self, unit: Unit, si: int, specs: list):
        rendezvous, done, waiting = self.rendezvous, unit.done, unit.waiting
        peers, groups = unit.peers, unit.spec.groups
        append = self.records.append if unit.rows else None
        row = unit.rows[0][1] if unit.rows else -1
        name = "compute" if si == 0 else "comm"
        scale = unit.slowdown if si == 0 else 1.0
        saving = unit.spec.expert_saving[0] if unit.spec.expert_saving and si == 0 else None
        t = 0.0
        for i, (label, duration_s, phase, mb, stage, deps, slot, group, _, expert_s) in enumerate(specs):
            for p_rank, p_slot in deps:
                source = peers[p_rank]
                ready = source.done[p_slot]
                if ready != ready:  # NaN: not computed yet
                    unit.pos[si] = i
                    yield self._wait(source, p_slot)
                    ready = source.done[p_slot]
                if ready > t:
                    t = ready
            if group is None:
                if saving is not None and expert_s:
                    end = t + (duration_s - expert_s * saving[phase]) * scale
                else:
                    end = t + duration_s * scale
            else:
                key, members = groups[group]
                if members == 1:
                    end = t + duration_s
                else:
                    meeting = rendezvous.get((key, i))
                    if meeting is None:
                        meeting = rendezvous[(key, i)] = [members, t, None, 0.0]
                    elif t > meeting[1]:
                        meeting[1] = t
                    meeting[0] -= 1
                    if meeting[0] == 0:
                        del rendezvous[(key, i)]
                        meeting[3] = meeting[1] + duration_s
                        if meeting[2] is not None:
                            meeting[2].succeed()
                    else:
                        if meeting[2] is None:
                            meeting[2] = self.env.event()
                        unit.pos[si] = i
                        self.waits += 1
                        yield meeting[2]
                    end = meeting[3]
            if append is not None:
                append((row, name, t, end, label, phase, mb, stage))
            if slot >= 0:
                done[slot] = end
                if waiting:
                    event = waiting.pop(slot, None)
                    if event is not None:
                        event.succeed()
            t = end
        unit.pos[si] = len(specs)
        unit.end[si] = t

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
        for i, (label, duration_s, phase, mb, stage, deps, slot, group, _, expert_s) in enumerate(specs):
            for p_rank, p_slot in deps:
                source = peers[p_rank]
                ready = source.done[p_slot]
                if ready is None:
                    unit.pos[si] = i
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
                meeting = rendezvous.get((key, i))
                if meeting is None:
                    meeting = rendezvous[(key, i)] = [members, [], None, {}]
                meeting[1].append((unit, t))
                meeting[0] -= 1
                if meeting[0] == 0:
                    del rendezvous[(key, i)]
                    meeting[3] = _tail_meeting(meeting[1], duration_s)
                    if meeting[2] is not None:
                        meeting[2].succeed()
                else:
                    if meeting[2] is None:
                        meeting[2] = self.env.event()
                    unit.pos[si] = i
                    self.waits += 1
                    yield meeting[2]
                end = meeting[3][id(unit)]
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
