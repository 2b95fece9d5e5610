"""Links shared in simulated time: bundles of fluid flows on a graph's links, max-min fair, on SimPy's clock.

A :class:`Plan` is what one communication op moves: steps one after another, each a few :class:`Bundle` s
that start together; the step ends when they have all arrived, plus its latency. A bundle is flows that
progress together: it has one rate ``u`` relative to its speed alone (1: as fast as its own busiest link
allows; on link ``l`` it then moves ``demand_bps[l]`` bytes/s, so ``demand_bps[l] <= capacity[l]``).

:class:`LinkShare` moves plans in simulated time. Bundles crossing a common link share it max-min fairly in
``u`` (:func:`~moesim.simulator.network.flows.max_min_rates`, the one progressive filling, with ``u`` capped at 1).
Two bundles that each fill a link alone get half of it each; a bundle that uses a link lightly is slowed there by the same factor as the others. Rates are recomputed when a bundle starts or
finishes, and only if it shares a link with another; a bundle's arrival is a SimPy timeout, rescheduled when
its rate changes. The same bundles recur every micro-batch, so the sharing is worked out per distinct bundle
(its shape): which shapes share a link is found once, and the rates of each set of shapes sharing links are
solved once and looked up when it recurs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simpy

from moesim.simulator.network.flows import max_min_rates

RATE_MEMO_ENTRIES = 100_000  # solved sets of shapes kept (cleared when full: a bound on memory, not on speed)


@dataclass(slots=True)
class Bundle:
    """Flows of one step that progress together: the links they load and bytes/s on each at full speed."""

    links: np.ndarray  # link ids (unique)
    demand_bps: np.ndarray  # bytes per second on each link at u = 1
    solo_s: float  # transfer time alone

    def scaled(self, factor: float) -> Bundle:
        """The same flows carrying ``factor`` times the bytes (same links and rates, ``factor`` × the time)."""
        return Bundle(self.links, self.demand_bps, self.solo_s * factor)


@dataclass(slots=True)
class PlanStep:
    bundles: list[Bundle]
    latency_s: float  # after the last bundle's bytes arrive


@dataclass(slots=True)
class Plan:
    """What one op moves on which links, step by step; ``solo_s`` its time alone on the network."""

    steps: list[PlanStep]
    solo_s: float


@dataclass(slots=True, eq=False)
class Flight:
    """A bundle in flight: ``remaining_s`` of solo transfer left at ``since``, progressing at rate ``u``."""

    bundle: Bundle
    transfer: Transfer
    remaining_s: float
    since: float
    u: float = 1.0
    version: int = 0
    shape: int = 0  # which distinct (links, demand_bps) it moves: LinkShare's key for overlaps and rates


@dataclass(slots=True, eq=False)
class Transfer:
    """A planned op in flight: its step, the bundles of it still moving, and the event to fire at the end."""

    plan: Plan
    done: simpy.Event
    step: int = 0
    pending: int = 0


def bundle(links, bytes_per_link, capacity_bps: np.ndarray) -> Bundle:
    """A bundle moving ``bytes_per_link[i]`` bytes over link ``links[i]`` (ids into ``capacity_bps``)."""
    links = np.asarray(links, dtype=np.int64)
    load = np.asarray(bytes_per_link, dtype=float)
    solo_s = float((load / capacity_bps[links]).max())
    return Bundle(links, load / solo_s, solo_s)


def plan_of(steps: list[PlanStep]) -> Plan:
    return Plan(steps, sum(max((b.solo_s for b in s.bundles), default=0.0) + s.latency_s for s in steps))


class LinkShare:
    """The links of one graph (``capacity_bps`` per link id) shared by every plan in flight."""

    def __init__(self, env: simpy.Environment, capacity_bps: np.ndarray):
        self.env = env
        self.capacity_bps = np.asarray(capacity_bps, dtype=float)
        self.flights: list[Flight] = []
        self.reshares = 0  # rate recomputations over shared links
        self.started = 0  # plans started
        # A pipeline rank's op is one bundle over hundreds of links, and the same few bundles recur every
        # micro-batch: each distinct (links, demand_bps) is a shape; whether two shapes share a link, and the
        # rates of every ordered set of shapes in flight, are worked out once and looked up after.
        self._shape_ids: dict[tuple[int, int], int] = {}
        self._shapes: list[Bundle] = []  # by shape id (held, so the ids keyed on stay unique)
        self._near: list[list[int]] = []  # by shape: the shapes sharing a link with it (itself too)
        self._met: list[int] = []  # by shape: flights in flight whose links meet it
        self._rates: dict[tuple[int, ...], list[float]] = {}
        self._parts: dict[tuple[int, ...], list[float]] = {}  # the same, per group sharing links

    # --- moving in simulated time ---------------------------------------------------------------------
    def start(self, plan: Plan) -> simpy.Event:
        """Start ``plan`` now; the returned event fires when its last step's bytes have arrived, with that
        step's latency as value (the op ends that much later)."""
        self.started += 1
        transfer = Transfer(plan, self.env.event())
        self._begin_step(transfer)
        return transfer.done

    # Whether a bundle meets another is a count per shape of the flights in flight that share a link with it,
    # kept as flights start and finish (each shape's few neighbours found once, when it is first seen): a count
    # of flights per link cost a pass over the bundle's hundreds of links every start and finish.
    def _shape(self, b: Bundle) -> int:
        key = (id(b.links), id(b.demand_bps))
        shape = self._shape_ids.get(key)
        if shape is None:
            shape = self._shape_ids[key] = len(self._shapes)
            self._shapes.append(b)
            mark = np.zeros(len(self.capacity_bps), dtype=bool)
            mark[b.links] = True
            near = [other for other, o in enumerate(self._shapes) if mark[o.links].any()]
            for other in near[:-1]:
                self._near[other].append(shape)
            self._near.append(near)
            meets = set(near)
            self._met.append(sum(1 for f in self.flights if f.shape in meets))
        return shape

    def _add(self, flight: Flight) -> None:
        self.flights.append(flight)
        met = self._met
        for other in self._near[flight.shape]:
            met[other] += 1

    def _remove(self, flight: Flight) -> None:
        self.flights.remove(flight)
        met = self._met
        for other in self._near[flight.shape]:
            met[other] -= 1

    def _begin_step(self, transfer: Transfer) -> None:
        steps = transfer.plan.steps
        if transfer.step >= len(steps):  # an op with nothing to move
            transfer.done.succeed(0.0)
            return
        bundles = steps[transfer.step].bundles
        if not bundles:  # a step of latency only (zero bytes)
            self._step_done(transfer)
            return
        transfer.pending = len(bundles)
        now = self.env.now
        crowded = False
        for b in bundles:
            flight = Flight(b, transfer, b.solo_s, now, shape=self._shape(b))
            if not crowded and self._met[flight.shape]:
                crowded = True
            self._add(flight)
            if not crowded:
                self._schedule(flight)
        if crowded:
            self._reshare()

    def _step_done(self, transfer: Transfer) -> None:
        """The current step's bytes have arrived: after its latency, the next step (or the op's end)."""
        step = transfer.plan.steps[transfer.step]
        transfer.step += 1
        if transfer.step >= len(transfer.plan.steps):
            transfer.done.succeed(step.latency_s)
        else:
            self.env.timeout(step.latency_s).callbacks.append(lambda _e, t=transfer: self._begin_step(t))

    def _schedule(self, flight: Flight) -> None:
        flight.version += 1
        event = self.env.timeout(flight.remaining_s / flight.u)
        version = flight.version
        event.callbacks.append(lambda _e, f=flight, v=version: self._finish(f, v))

    def _finish(self, flight: Flight, version: int) -> None:
        if flight.version != version:
            return  # rescheduled since
        self._remove(flight)
        if self._met[flight.shape]:
            self._reshare()
        transfer = flight.transfer
        transfer.pending -= 1
        if not transfer.pending:
            self._step_done(transfer)

    def _reshare(self) -> None:
        """Max-min fair ``u`` of every flight on a shared link (progressive filling, capped at 1)."""
        self.reshares += 1
        now = self.env.now
        flights = self.flights
        met = self._met
        # A flight on a shared link is one met by another flight besides itself; the rates of those depend on
        # nothing else (the links they share are theirs), so they key the solved rates.
        touching = [f for f in flights if met[f.shape] > 1]
        for flight in flights:
            if met[flight.shape] <= 1 and (flight.u != 1.0 or not flight.version):
                self._rate(flight, 1.0, now)
        if not touching:
            return
        key = tuple(f.shape for f in touching)
        rates = _remembered(self._rates, key, self._solve_apart)
        for flight, rate in zip(touching, rates):
            if rate != flight.u or not flight.version:  # version 0: just started, not yet scheduled
                self._rate(flight, rate, now)

    def _solve_apart(self, key: tuple[int, ...]) -> list[float]:
        """:meth:`_solve` of each group of flights linked by shared links on its own (groups share no link, so
        progressive filling raises and freezes each alone, with the same sums in the same order), each group's
        rates kept for the next time it recurs among others."""
        near = self._near
        group = list(range(len(key)))

        def root(i: int) -> int:
            while group[i] != i:
                group[i] = group[group[i]]
                i = group[i]
            return i

        seen: dict[int, int] = {}
        for i, shape in enumerate(key):
            for other in near[shape]:
                j = seen.get(other)
                if j is not None:
                    group[root(i)] = root(j)
            seen.setdefault(shape, i)
        members: dict[int, list[int]] = {}
        for i in range(len(key)):
            members.setdefault(root(i), []).append(i)
        if len(members) == 1:
            return self._solve(key)
        rates = [0.0] * len(key)
        for idx in members.values():
            solved = _remembered(self._parts, tuple(key[i] for i in idx), self._solve)
            for i, rate in zip(idx, solved):
                rates[i] = rate
        return rates

    def _solve(self, key: tuple[int, ...]) -> list[float]:
        """Max-min fair ``u`` of flights of shapes ``key`` (in that order), each sharing a link with another."""
        bundles = [self._shapes[s] for s in key]
        sizes = np.array([len(b.links) for b in bundles])
        every = np.concatenate([b.links for b in bundles])
        links = len(self.capacity_bps)
        shared = np.bincount(every, minlength=links)[every] > 1  # per row: a link another flight uses too
        owner = np.repeat(np.arange(len(bundles)), sizes)[shared]  # the flight of each shared row
        flow, link = owner, every[shared]
        demand = np.concatenate([b.demand_bps for b in bundles])[shared]
        # Only a link whose users together ask more than it holds at full speed can bind (u never exceeds 1).
        total = np.bincount(link, demand, minlength=len(self.capacity_bps))
        over = total > self.capacity_bps * (1 + 1e-12)
        if over.any():
            rows = over[link]
            ids = np.flatnonzero(over)
            compact = np.zeros(len(over), dtype=np.int64)
            compact[ids] = np.arange(len(ids))
            u = max_min_rates(flow[rows], compact[link[rows]], demand[rows], len(key), self.capacity_bps[ids],
                              cap=1.0)
        else:
            u = np.ones(len(key))
        return u.tolist()

    def _rate(self, flight: Flight, u: float, now: float) -> None:
        flight.remaining_s = max(0.0, flight.remaining_s - flight.u * (now - flight.since))
        flight.since = now
        flight.u = u
        self._schedule(flight)


def _remembered(memo: dict, key: tuple[int, ...], solve) -> list[float]:
    """``memo[key]``, solved with ``solve(key)`` and kept the first time; a memo that reaches
    ``RATE_MEMO_ENTRIES`` is emptied first, so it stays bounded however many shapes a run meets."""
    value = memo.get(key)
    if value is None:
        if len(memo) >= RATE_MEMO_ENTRIES:
            memo.clear()
        value = memo[key] = solve(key)
    return value
