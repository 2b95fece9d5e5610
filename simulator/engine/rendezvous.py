"""A collective's rendezvous: the members of a process group meet, and the collective ends for all of them at
the last arrival plus its duration (seconds).

The runner (:mod:`moesim.simulator.engine.runner`) keys an open rendezvous by (group kind, group key, task position in the
queue): every member runs the same program, so the i-th task of a group's members is the same collective.
Like SimPy's ``Event.succeed``, which refuses a second trigger, a rendezvous refuses a member arriving twice
and a second close: either would be a bug in the runner, not a state to carry on from.
"""

from __future__ import annotations

import math

import numpy as np
import simpy


class RendezvousError(RuntimeError):
    """A rendezvous was used against its rules (a member arrived twice, or it was closed twice)."""


class Rendezvous:
    """One collective's meeting of ``members`` units (each arrives once).

    ``t`` is the last arrival so far (seconds); ``arrived`` the units that arrived, in order (a network op is
    planned for all their GPUs); ``end`` the collective's end once closed, None before. Members that cannot go on
    before the end wait on :meth:`wait`'s event, which :meth:`close` fires.
    """

    __slots__ = ("members", "t", "arrived", "end", "_event")

    def __init__(self, members: int):
        self.members = members
        self.t = -math.inf
        self.arrived: list = []
        self.end: float | None = None
        self._event: simpy.Event | None = None

    @property
    def missing(self) -> int:
        """Members still to arrive."""
        return self.members - len(self.arrived)

    def arrive(self, member, t: float) -> bool:
        """``member`` arrives at ``t`` (seconds); True if it was the last. Refuses a second arrival."""
        if member in self.arrived:
            raise RendezvousError(f"{member!r} arrived twice at a rendezvous")
        if len(self.arrived) == self.members:
            raise RendezvousError(f"a rendezvous of {self.members} members got one more")
        self.arrived.append(member)
        if t > self.t:
            self.t = t
        return len(self.arrived) == self.members

    def close(self, end: float) -> None:
        """The collective ends at ``end`` (seconds): wake the members waiting for it. Refuses a second close."""
        if self.end is not None:
            raise RendezvousError("a rendezvous closed twice")
        self.end = end
        if self._event is not None:
            self._event.succeed()

    def wait(self, env: simpy.Environment) -> simpy.Event:
        """The event a member that cannot go on before the end waits on."""
        if self._event is None:
            self._event = env.event()
        return self._event


class TailSync:
    """The step's DP synchronisation between blocks (:class:`~moesim.simulator.engine.runner.Unit` with ``block``): each
    member block arrives with its GPUs' times (a vector, seconds); once all ``members`` have, every tail-group
    component (the blocks' ``tail`` labels) ends at its last arrival plus the collective's duration."""

    __slots__ = ("members", "arrivals", "ends", "_event")

    def __init__(self, members: int):
        self.members = members
        self.arrivals: list[tuple] = []  # (unit, its GPUs' arrival times)
        self.ends: dict[int, np.ndarray] | None = None  # unit id → its GPUs' end times, once closed
        self._event: simpy.Event | None = None

    def arrive(self, unit, t: np.ndarray) -> bool:
        """Block ``unit`` arrives with its GPUs' times ``t``; True if it was the last. Refuses a second arrival."""
        if any(u is unit for u, _ in self.arrivals):
            raise RendezvousError(f"{unit!r} arrived twice at a DP synchronisation")
        if len(self.arrivals) == self.members:
            raise RendezvousError(f"a DP synchronisation of {self.members} blocks got one more")
        self.arrivals.append((unit, t))
        return len(self.arrivals) == self.members

    def close(self, duration_s: float) -> None:
        """All blocks are in: work out each one's end times; wake those waiting. Refuses a second close."""
        if self.ends is not None:
            raise RendezvousError("a DP synchronisation closed twice")
        self.ends = tail_ends(self.arrivals, duration_s)
        if self._event is not None:
            self._event.succeed()

    def end_of(self, unit) -> np.ndarray:
        """``unit``'s GPUs' end times (once closed)."""
        return self.ends[id(unit)]

    def wait(self, env: simpy.Environment) -> simpy.Event:
        """The event a block that arrived before the last waits on."""
        if self._event is None:
            self._event = env.event()
        return self._event


def tail_ends(arrivals: list[tuple], duration_s: float) -> dict[int, np.ndarray]:
    """End times of a DP synchronisation over blocks: per tail-group component, its last arrival plus
    ``duration_s``. ``arrivals`` are (unit, its GPUs' arrival times) pairs, each unit's ``tail`` giving its
    GPUs' tail-group components (:class:`~moesim.simulator.engine.runner.Unit`). Returns, per unit id, its GPUs' end times."""
    labels = np.concatenate([unit.tail for unit, _ in arrivals])
    times = np.concatenate([t for _, t in arrivals])
    last = np.full(int(labels.max()) + 1, -np.inf)
    np.maximum.at(last, labels, times)
    return {id(unit): last[unit.tail] + duration_s for unit, _ in arrivals}
