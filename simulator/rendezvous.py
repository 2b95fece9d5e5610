"""A collective's rendezvous: the members of a process group meet, and the collective ends for all of them at
the last arrival plus its duration (seconds).

The runner (:mod:`simulator.runner`) keys an open rendezvous by (group kind, group key, task position in the
queue): every member runs the same program, so the i-th task of a group's members is the same collective.
"""

from __future__ import annotations

import numpy as np
import simpy


class Rendezvous:
    """One collective's meeting: ``missing`` members still to arrive; ``t`` the last arrival so far (seconds);
    ``event`` the SimPy event early arrivals wait on (made when the first one has to wait); ``end`` the
    collective's end once known; ``units`` the units that arrived.

    Between blocks (the DP synchronisation of the step's tail) ``units`` holds (unit, its GPUs' arrival times)
    pairs and ``end`` maps each unit's id to its GPUs' end times (:func:`tail_ends`).
    """

    __slots__ = ("missing", "t", "event", "end", "units")

    def __init__(self, missing: int, t: float):
        self.missing, self.t = missing, t
        self.event: simpy.Event | None = None
        self.end = None
        self.units: list = []

    def arrive(self, t: float) -> bool:
        """One member arrives at ``t``; True if it was the last."""
        if t > self.t:
            self.t = t
        self.missing -= 1
        return self.missing == 0

    def close(self, end) -> None:
        """The collective ends at ``end``: wake the members waiting for it."""
        self.end = end
        if self.event is not None:
            self.event.succeed()

    def wait(self, env: simpy.Environment) -> simpy.Event:
        """The event a member that cannot go on before the end waits on."""
        if self.event is None:
            self.event = env.event()
        return self.event


def tail_ends(arrivals: list[tuple], duration_s: float) -> dict[int, np.ndarray]:
    """End times of a DP synchronisation over blocks: per tail-group component, its last arrival plus
    ``duration_s``. ``arrivals`` are (unit, its GPUs' arrival times) pairs, each unit's ``tail`` giving its
    GPUs' tail-group components (:class:`~simulator.runner.Unit`). Returns, per unit id, its GPUs' end times."""
    labels = np.concatenate([unit.tail for unit, _ in arrivals])
    times = np.concatenate([t for _, t in arrivals])
    last = np.full(int(labels.max()) + 1, -np.inf)
    np.maximum.at(last, labels, times)
    return {id(unit): last[unit.tail] + duration_s for unit, _ in arrivals}
