"""Which GPUs the engine simulates, and which of them behave identically (full-fidelity layouts).

Global ranks are ordered tp fastest, then cp, then dp, then pp, and process groups are those of
:class:`~moesim.simulator.network.groups.ProcessGroups`: GPU ``g`` sits on pipeline rank ``g // S`` at local index
``g % S``, with ``S = dp·cp·tp`` GPUs per pipeline rank; by local index ``l``: TP ``l // tp``; EP ``l // ep``
(contiguous runs of ``ep``); DP ``l % (tp·cp)``; expert-DP ``l % ep``. A pipeline send goes to the GPU with the
same local index on the rank that runs the next stage. The gradient and parameter synchronisation of the step's
tail (DP and expert-DP together) meets over the union of the two groups, the "tail" group.

Two GPUs whose programs, slowdowns and inputs are the same produce the same timeline (the engine has no
randomness and no contention between GPUs), so the engine may simulate one *unit* per class of equivalent
GPUs. :func:`equivalence_classes` finds the coarsest such classes by refinement: start from (pipeline rank,
slowdown), then split GPUs whose pipeline column (the GPUs with their local index on every pipeline rank) or
whose EP, TP or tail group meet different classes, until nothing splits. A balanced scenario ends with one
class per pipeline rank; a straggler splits off itself, its group peers and their pipeline columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from moesim.simulator.network.groups import ProcessGroups
from moesim.workloads.scenario import Scenario

GROUPS = ("ep", "tp", "tail")


class Meet(NamedTuple):
    """Which rendezvous a unit joins for the collectives of one process-group kind: ``key``, shared by the units
    that meet there, and ``arrivals``, how many units arrive (1: nobody else to wait for). A named pair: the
    runner unpacks it at every collective."""

    key: int
    arrivals: int


class Watch(NamedTuple):
    """A recorded GPU of a unit: its ``index`` in the unit's ``gpus`` and its global ``gpu`` index."""

    index: int
    gpu: int


@dataclass(slots=True)
class UnitSpec:
    """One simulated unit on pipeline rank ``rank``.

    A *shared* unit stands for GPUs that behave identically and is simulated once. A *block* unit
    (``block=True``) simulates each of its GPUs separately, as one element of a vector of times: a block is a
    run of whole EP (and TP) groups, so their collectives meet inside it.
    ``peers[q]`` is the unit holding these GPUs' pipeline partners on rank ``q`` (itself on its own rank).
    ``groups[kind]`` is the :class:`Meet` of its collectives of that process group. ``width[kind]`` (blocks)
    is the size of that group's instances inside the block; ``tail_labels`` (blocks) the tail-group component
    of each GPU. ``watch`` lists the GPUs whose timelines are recorded (:class:`Watch`).
    """

    rank: int  # pipeline rank
    gpus: tuple[int, ...]
    slowdowns: tuple[float, ...]  # per GPU of ``gpus`` (shared units: all equal)
    peers: list[int] = field(default_factory=list)
    groups: dict[str, Meet] = field(default_factory=dict)
    watch: list[Watch] = field(default_factory=list)
    block: bool = False
    width: dict[str, int] = field(default_factory=dict)
    tail_labels: tuple[int, ...] = ()
    # Skewed routing: per GPU, per phase letter, the share of the busiest GPU's routed-expert GEMM time this
    # GPU does not spend (0 on the busiest GPU). Empty when every GPU runs the priced time.
    expert_saving: tuple[dict[str, float], ...] = ()

    @property
    def slowdown(self) -> float:
        return self.slowdowns[0]


@dataclass
class GpuLayout:
    gpus: int
    pipeline_ranks: int
    units: list[UnitSpec]
    classes: int  # distinct behaviours
    watched: dict[int, int] = field(default_factory=dict)  # recorded GPU → GPUs that behave like it
    stage_gpus: int = 1  # GPUs per pipeline rank


def _group_of(scenario: Scenario):
    """Per kind, a function from local index to a group instance key (:class:`ProcessGroups`)."""
    groups = ProcessGroups.of(scenario)
    return {kind: (lambda l, kind=kind: groups.key(kind, l)) for kind in GROUPS}


def equivalence_classes(scenario: Scenario, slowdown: dict[int, float],
                        expert_ratios: list[dict[str, float]] | None = None) -> list[int]:
    """Class label per global GPU (labels 0 … k−1, numbered in GPU order); ``expert_ratios`` per EP rank.

    Each round is numpy over the GPUs (131,072 of them in well under a second): a GPU's signature is its
    class, its pipeline column's classes, and per group kind the set of classes its group meets; GPUs with
    equal signatures stay together."""
    par = scenario.parallelism
    stage, pp = par.stage_gpus, par.pp
    n = stage * pp
    rank_of = np.arange(n) // stage
    slow = np.ones(n)
    for g, factor in slowdown.items():
        slow[g] = factor
    experts = np.zeros(n)
    if expert_ratios:
        ratio_class = np.array(_intern([tuple(sorted(r.items())) for r in expert_ratios[:par.ep]]))
        experts = ratio_class[np.arange(n) % stage % par.ep].astype(float)
    labels = _intern_rows(np.stack([rank_of.astype(float), slow, experts], axis=1))
    # Per group kind, each GPU's group on its pipeline rank: (pipeline rank, instance) as one integer.
    group_of = _group_of(scenario)
    groups = {}
    for kind in GROUPS:
        instance = np.array(_intern([group_of[kind](l) for l in range(stage)]))
        groups[kind] = rank_of * (int(instance.max()) + 1) + np.tile(instance, pp)
    classes = int(labels.max()) + 1
    while True:
        columns = np.tile(_intern_rows(labels.reshape(pp, stage).T), pp)  # GPU g's column: local index g % stage
        meets = [_met_sets(group, labels, classes) for group in groups.values()]
        refined = _intern_rows(np.stack([labels, columns, *meets], axis=1))
        count = int(refined.max()) + 1
        if count == classes:
            return refined.tolist()
        labels, classes = refined, count


def _intern_rows(rows: np.ndarray) -> np.ndarray:
    """An id per row of ``rows``: equal rows get equal ids, numbered in order of first appearance."""
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    order = np.empty(len(first), dtype=np.intp)
    order[np.argsort(first, kind="stable")] = np.arange(len(first))
    return order[inverse.ravel()]


def _met_sets(group: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """Per GPU, an id of the set of classes (``labels``) its group (``group``: a group number per GPU) meets;
    equal sets get equal ids."""
    pairs = np.unique(group.astype(np.int64) * classes + labels)  # (group, class) present, sorted
    owner, present = pairs // classes, pairs % classes
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    set_id = _intern([tuple(s) for s in np.split(present, starts[1:])])
    of_group = np.zeros(int(group.max()) + 1, dtype=np.intp)
    of_group[owner[starts]] = set_id
    return of_group[group]


def _intern(values: list) -> list[int]:
    ids: dict = {}
    return [ids.setdefault(v, len(ids)) for v in values]


UNITS = ("auto", "classes", "gpus")


def full_layout(scenario: Scenario, units: str = "auto",
                expert_ratios: list[dict[str, float]] | None = None) -> GpuLayout:
    """Every GPU of the scenario, simulated as ``units``: ``classes``, one unit per class of identical GPUs;
    ``gpus``, blocks in which each GPU is simulated on its own; ``auto``, classes while there are at most twice
    as many as blocks (a balanced scenario, a few stragglers), else blocks (skewed routing, many stragglers).
    Either way the first GPU of each class is recorded, so all give the same timeline rows. ``expert_ratios``
    (per EP rank, per phase letter: routed-expert GEMM time over the busiest GPU's) lets each GPU run its own
    expert load."""
    if units not in UNITS:
        raise ValueError(f"units={units!r}: choose one of {', '.join(UNITS)}")
    par = scenario.parallelism
    stage, pp = par.stage_gpus, par.pp
    n = stage * pp
    slowdown: dict[int, float] = {}
    for straggler in scenario.faults.stragglers:
        slowdown[straggler.gpu] = max(slowdown.get(straggler.gpu, 1.0), straggler.slowdown)
    labels = equivalence_classes(scenario, slowdown, expert_ratios)
    first_of_class: dict[int, int] = {}
    class_size: dict[int, int] = {}
    for g, c in enumerate(labels):
        first_of_class.setdefault(c, g)
        class_size[c] = class_size.get(c, 0) + 1
    watched = {g: class_size[c] for c, g in first_of_class.items()}
    if len(watched) > WATCH_ALL_UP_TO:
        keep = _telling_gpus(scenario, slowdown, expert_ratios)
        watched = {g: size for g, size in watched.items() if labels[g] in {labels[k] for k in keep}}
    blocks = n // block_size(scenario)
    # A block costs about twice a shared unit to run (tests/benchmarks/bench_engine.py, DeepSeek-V3 with one
    # straggler: 48 shared units 0.52 CPU s of engine, 32 blocks of 64 GPUs 0.73 s).
    if units == "classes" or (units == "auto" and len(first_of_class) <= 2 * blocks):
        specs = _shared_units(scenario, labels, slowdown, watched)
    else:
        specs = _block_units(scenario, slowdown, watched)
    if expert_ratios:
        ep = par.ep
        for spec in specs:
            spec.expert_saving = tuple({phase: 1.0 - ratio for phase, ratio in expert_ratios[g % stage % ep].items()}
                                       for g in spec.gpus)
    return GpuLayout(n, pp, specs, len(first_of_class), watched, stage)


WATCH_ALL_UP_TO = 64  # classes whose timelines are all recorded; beyond, a few telling ones per pipeline rank


def _telling_gpus(scenario: Scenario, slowdown: dict[int, float],
                  expert_ratios: list[dict[str, float]] | None) -> list[int]:
    """GPUs whose classes are recorded when there are too many classes to record all: on every pipeline rank
    its first GPU, its most and least loaded EP ranks (skewed routing), and every straggler."""
    par = scenario.parallelism
    stage = par.stage_gpus
    local = [0]
    if expert_ratios:
        load = [r.get("F", 1.0) for r in expert_ratios]
        local += [max(range(len(load)), key=load.__getitem__), min(range(len(load)), key=load.__getitem__)]
    return [rank * stage + l for rank in range(par.pp) for l in local] + sorted(slowdown)


def _shared_units(scenario: Scenario, labels: list[int], slowdown: dict[int, float],
                  watched: dict[int, int]) -> list[UnitSpec]:
    par = scenario.parallelism
    stage, pp = par.stage_gpus, par.pp
    members: dict[int, list[int]] = {}
    for g, u in enumerate(labels):
        members.setdefault(u, []).append(g)
    units = []
    for u in range(len(members)):
        gpus = tuple(members[u])
        g0 = gpus[0]
        units.append(UnitSpec(g0 // stage, gpus, (slowdown.get(g0, 1.0),) * len(gpus),
                              [labels[g0 % stage + q * stage] for q in range(pp)], {},
                              [Watch(0, g0)] if g0 in watched else []))
    group_of = _group_of(scenario)
    for kind in GROUPS:
        fn = group_of[kind]
        arrivals: dict[tuple[int, object], set] = {}
        for g in range(stage * pp):
            arrivals.setdefault((g // stage, fn(g % stage)), set()).add(labels[g])
        # Units meeting in a collective are keyed by who meets: a unit spanning several instances with the
        # same members meets them all at once.
        keys = _intern([frozenset(s) for s in arrivals.values()])
        for (rank, inst), key in zip(arrivals, keys):
            for u in arrivals[(rank, inst)]:
                units[u].groups[kind] = Meet(key, len(arrivals[(rank, inst)]))
    return units


BLOCK_GPUS = 64  # GPUs per block unit when EP and TP groups are smaller: enough to amortise vector arithmetic


def block_size(scenario: Scenario) -> int:
    """Whole EP and TP groups, doubled up to ~``BLOCK_GPUS`` while it divides a pipeline rank's GPUs."""
    par = scenario.parallelism
    stage = par.stage_gpus
    size = math.lcm(par.ep, par.tp)
    while size < BLOCK_GPUS and stage % (2 * size) == 0:
        size *= 2
    return size


def _block_units(scenario: Scenario, slowdown: dict[int, float], watched: dict[int, int]) -> list[UnitSpec]:
    par = scenario.parallelism
    stage, pp = par.stage_gpus, par.pp
    size = block_size(scenario)
    per_rank = stage // size
    tail = _group_of(scenario)["tail"]
    tail_id = _intern([tail(l) for l in range(stage)])
    units = []
    for rank in range(pp):
        for b in range(per_rank):
            gpus = tuple(range(rank * stage + b * size, rank * stage + (b + 1) * size))
            units.append(UnitSpec(
                rank, gpus, tuple(slowdown.get(g, 1.0) for g in gpus),
                [q * per_rank + b for q in range(pp)],
                {"ep": Meet(-1, 1), "tp": Meet(-1, 1), "tail": Meet(rank, per_rank)},
                [Watch(j, g) for j, g in enumerate(gpus) if g in watched], True,
                {"ep": par.ep, "tp": par.tp}, tuple(tail_id[g % stage] for g in gpus)))
    return units


def representative_layout(pp: int, compute_slowdown: dict[int, float] | None = None) -> GpuLayout:
    """One unit per pipeline rank standing for all its GPUs; collectives have nobody to wait for."""
    slow = compute_slowdown or {}
    units = [UnitSpec(r, (r,), (slow.get(r, 1.0),), list(range(pp)), {kind: Meet(r, 1) for kind in GROUPS},
                      [Watch(0, r)]) for r in range(pp)]
    return GpuLayout(pp, pp, units, pp)
