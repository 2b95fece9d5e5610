"""Transfers on links, priced two ways: analytic (bottleneck link load) and flow (max-min fair fluid sharing).

A collective is a :class:`Program`: sequential :class:`Step` s, each a set of concurrent transfers (flows) that
must all arrive before the next step starts (a rendezvous). A step's flows are given as a sparse incidence:
flow ``f`` puts ``weight`` of its bytes on link ``link`` (ECMP splits a flow over several links of a layer).

- :func:`analytic_step_s`: the busiest link's bytes / its capacity, plus the slowest flow's path latency.
- :func:`simulate`: a fluid simulation of concurrent programs. At every flow start or finish the rates are
  recomputed by weighted progressive filling (max-min fairness): all unfrozen flows rise together until a link
  saturates; the flows through it freeze at that rate. A flow's bytes are done when its fluid transfer is; it
  arrives its path latency later.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

GB = 1e9
US = 1e-6
FINISH_TOLERANCE = 1e-9  # relative: flows within this fraction of the next finish complete together


@dataclass
class Step:
    """Concurrent flows: ``bytes[f]``, ``latency_s[f]``; incidence rows (``flow``, ``link``, ``weight``)."""

    bytes: np.ndarray
    latency_s: np.ndarray
    flow: np.ndarray
    link: np.ndarray
    weight: np.ndarray
    repeat: int = 1  # identical steps in sequence (a ring's p-1 steps)
    latency_factor: float = 1.0  # path latencies on the critical path (a tree's depth)
    name: str = ""
    fabric_pos: np.ndarray | None = None  # per incidence row, as moesim.topologies.routing.Route (for moving it)

    @property
    def flows(self) -> int:
        return len(self.bytes)

    def link_bytes(self, links: int) -> np.ndarray:
        """Bytes each link carries in one repetition."""
        return np.bincount(self.link, self.weight * self.bytes[self.flow], minlength=links)


@dataclass
class Program:
    """A collective: steps run one after another. ``capacity_bps``, when set, is the rate each link gives this
    program's flows (below the link's: DeepEP's kernels reach less than some links carry)."""

    name: str
    steps: list[Step] = field(default_factory=list)
    capacity_bps: np.ndarray | None = None

    @property
    def flows(self) -> int:
        return sum(s.flows * s.repeat for s in self.steps)


def analytic_step_s(step: Step, capacity_bps: np.ndarray) -> float:
    """One repetition of ``step`` alone: bottleneck link time plus the slowest path latency."""
    if step.flows == 0:
        return 0.0
    load = step.link_bytes(len(capacity_bps))
    used = load > 0
    transfer = float((load[used] / capacity_bps[used]).max()) if used.any() else 0.0
    return transfer + float(step.latency_s.max()) * step.latency_factor


def max_min_rates(flow: np.ndarray, link: np.ndarray, weight: np.ndarray, flows: int,
                  capacity_bps: np.ndarray, cap: float = np.inf) -> np.ndarray:
    """Max-min fair rates of ``flows`` flows by progressive filling, the one implementation of it: flow
    ``flow[i]`` puts ``weight[i]`` × its rate on link ``link[i]``, each link holds ``capacity_bps``; all unfrozen
    rates rise together until a link is full, the flows through it freeze. No rate exceeds ``cap`` (a flow with
    no link gets it): bytes/s with weights as fractions (:func:`simulate`), or a bundle's speed relative to
    alone with weights as its bytes/s at speed 1 and ``cap`` 1 (:mod:`moesim.simulator.network.link_share`)."""
    rates = np.full(flows, cap, dtype=float)
    frozen = np.bincount(flow, minlength=flows) == 0
    remaining = capacity_bps.astype(float).copy()
    links = len(capacity_bps)
    while not frozen.all():
        live = ~frozen[flow]
        demand = np.bincount(link[live], weight[live], minlength=links)
        used = demand > 0
        if not used.any():
            break  # the flows left load nothing: they run at the cap
        share = np.full(links, np.inf)
        share[used] = np.maximum(remaining[used], 0.0) / demand[used]
        level = float(share.min())
        if level >= cap:
            break  # every flow left runs at the cap
        bottleneck = share <= level * (1 + 1e-12)
        hit = np.zeros(flows, dtype=bool)
        hit[flow[live & bottleneck[link]]] = True
        rates[hit] = level
        frozen |= hit
        rows = hit[flow]
        remaining -= np.bincount(link[rows], weight[rows] * level, minlength=links)
    return rates


@dataclass
class _Running:
    """One program's step in flight."""

    program: int
    step_index: int
    repetition: int
    remaining: np.ndarray
    done_at: np.ndarray  # arrival time per flow (nan until its bytes are done)


def simulate(programs: list[Program], capacity_bps: np.ndarray, starts_s: list[float] | None = None
             ) -> tuple[list[float], int]:
    """Run ``programs`` concurrently from ``starts_s``; return (finish time of each, rate recomputations)."""
    starts_s = starts_s or [0.0] * len(programs)
    finish = [s for s in starts_s]
    queue: list[tuple[float, int, int, int]] = []  # (time, program, step, repetition)
    for p, prog in enumerate(programs):
        if prog.steps:
            heapq.heappush(queue, (starts_s[p], p, 0, 0))
    running: list[_Running] = []
    now, solves = 0.0, 0
    while queue or running:
        while queue and (not running or queue[0][0] <= now):
            t, p, s, r = heapq.heappop(queue)
            now = max(now, t)
            step = programs[p].steps[s]
            run = _Running(p, s, r, step.bytes.astype(float).copy(), np.full(step.flows, np.nan))
            run.done_at[step.bytes <= 0] = now + step.latency_s[step.bytes <= 0] * step.latency_factor
            running.append(run)
        # Rates of every unfinished flow together.
        parts, offset = [], 0
        for run in running:
            step = programs[run.program].steps[run.step_index]
            live = np.isnan(run.done_at)
            ids = np.cumsum(live) - 1 + offset
            rows = live[step.flow]
            parts.append((ids[step.flow[rows]], step.link[rows], step.weight[rows]))
            offset += int(live.sum())
        if offset:
            rates = max_min_rates(np.concatenate([x[0] for x in parts]), np.concatenate([x[1] for x in parts]),
                                  np.concatenate([x[2] for x in parts]), offset, capacity_bps)
            solves += 1
        else:
            rates = np.zeros(0)
        # Advance to the next finish or the next start, whichever is first.
        left = np.concatenate([run.remaining[np.isnan(run.done_at)] for run in running]) if running else rates
        with np.errstate(divide="ignore"):
            to_finish = left / rates if offset else np.array([np.inf])
        dt = float(to_finish.min()) if offset else np.inf
        if queue and queue[0][0] < now + dt:
            dt = queue[0][0] - now
        dt = max(dt, 0.0) if np.isfinite(dt) else 0.0
        cursor = 0
        for run in running:
            live = np.isnan(run.done_at)
            n = int(live.sum())
            if n:
                r = rates[cursor:cursor + n]
                f = to_finish[cursor:cursor + n]
                cursor += n
                idx = np.flatnonzero(live)
                run.remaining[idx] -= r * dt
                ends = f <= dt * (1 + FINISH_TOLERANCE) + 1e-18
                step = programs[run.program].steps[run.step_index]
                run.done_at[idx[ends]] = now + dt + step.latency_s[idx[ends]] * step.latency_factor
        now += dt
        still = []
        for run in running:
            if np.isnan(run.done_at).any():
                still.append(run)
                continue
            end = float(run.done_at.max()) if len(run.done_at) else now
            prog = programs[run.program]
            step = prog.steps[run.step_index]
            if run.repetition + 1 < step.repeat:
                heapq.heappush(queue, (end, run.program, run.step_index, run.repetition + 1))
            elif run.step_index + 1 < len(prog.steps):
                heapq.heappush(queue, (end, run.program, run.step_index + 1, 0))
            else:
                finish[run.program] = end
        running = still
        if not running and queue:
            now = max(now, queue[0][0])
    return finish, solves
