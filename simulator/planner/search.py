"""The search: enumerate, bound, then simulate only the candidates the bounds cannot rule out, best first.

1. :func:`~moesim.simulator.planner.space.enumerate_space` lists the layouts (and counts those that cannot work).
2. A cluster too small to meet the deadline or budget even at the GPU's FP8 peak (6 FLOPs per activated
   parameter per token) is dropped before any pricing; then each layout gets priced lower bounds on step time
   and memory (:mod:`moesim.simulator.planner.bounds`). Memory picks the lowest ZeRO stage that could fit.
3. Branch and bound: candidates run through the executor most promising first (:class:`Ordering`); on the way
   each gets exact bounds from its schedule's program (:mod:`moesim.simulator.planner.programs`), and one is skipped
   when a simulated plan meeting every constraint is already at least as good as its bound: it cannot win. So the
   winner is the best of the whole space unless ``time_limit_s`` or ``max_simulations`` stops the search first;
   the answer then says so, with the layouts left open and the best of their exact lower bounds
   (``Outcome.open_bound``); the other ranked plans and the time/cost front are the best of those simulated.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from moesim.calibration.profile import load_profiles
from moesim.simulator.planner.bounds import (PriceCache, days_for, estimate_step_s, memory_lower_bound_gb,
                                      quick_step_lower_bound_s, seconds_per_day, state_factors,
                                      step_lower_bound_s)
from moesim.simulator.planner.request import PlanRequest
from moesim.simulator.planner.space import Candidate, Space, enumerate_space
from moesim.simulator.sweep.row import MEMORY_REASON, OK, over_memory
from moesim.simulator.sweep.spec import Point, canonical, point_key
from moesim.topologies.gpus import gpu_spec
from moesim.workloads.errors import ScenarioError
from moesim.workloads.loader import validate
from moesim.workloads.model import parameter_counts

BOUND_DEADLINE = "misses the deadline even at its lower bound"
BOUND_BUDGET = "over budget even at its lower bound"
BOUND_MEMORY = "does not fit in memory at any ZeRO stage (lower bound)"
PRUNED = "its lower bound cannot beat the best simulated plan"
CAPPED = "not simulated: --max-simulations reached"
TIMED_OUT = "not simulated: --time-limit reached"
SIM_MEMORY = "simulated: does not fit in memory"
SIM_DEADLINE = "simulated: misses the deadline"
SIM_BUDGET = "simulated: over budget"


@dataclass
class Outcome:
    """Everything the search found: candidates (simulated ones carry rows), drop counts and its own cost."""

    space: Space
    simulated: list[Candidate] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    exact: bool = True  # False when --max-simulations or --time-limit stopped it before the bounds closed it
    stopped_by: str = ""  # CAPPED or TIMED_OUT when not exact
    # When not exact: the candidates left that the bounds could not rule out, and the best of their lower bounds
    # as (days, cost USD): how far the first plan is from proven.
    open_candidates: int = 0
    open_bound: tuple[float, float] | None = None
    open: list[Candidate] = field(default_factory=list)  # those candidates, best bound first
    closest: list[Candidate] = field(default_factory=list)  # when nothing meets every constraint
    wall_s: float = 0.0
    priced_kinds: int = 0


def peak_days(base: dict, request: PlanRequest, gpu: str, gpus: int) -> float:
    """Days to train at the GPU's FP8 dense peak (the fastest tensor rate it has, hardware spec) on ``gpus``."""
    spec = gpu_spec(gpu)
    model = validate(base).model
    flops = 6 * parameter_counts(model).activated * request.tokens
    return flops / (gpus * max(spec["fp8_tflops"] or 0.0, spec["bf16_tflops"]) * 1e12) / seconds_per_day()


def bound_candidates(base: dict, request: PlanRequest, space: Space, prices: PriceCache,
                     dropped: Counter, tick: Callable[[], None] = lambda: None) -> list[Candidate]:
    """Give each candidate its bounds and ZeRO stage; return those still in the running."""
    seq = base["parallelism"]["seq_len"]
    factors = state_factors(validate(base).training)
    hbm: dict[str, float] = {}
    peak: dict[tuple, float] = {}
    fabric: dict[tuple, str] = {}
    live = []
    for c in space.candidates:
        tick()
        key = (c.gpu, c.gpus)
        if key not in peak:
            peak[key] = peak_days(base, request, c.gpu, c.gpus)
        if not request.meets(peak[key], 0.0):
            dropped[BOUND_DEADLINE] += 1
            continue
        if not request.meets(0.0, request.cost_usd(c.gpus, peak[key], c.gpu)):
            dropped[BOUND_BUDGET] += 1
            continue
        try:
            fig = prices.figures(c)
        except ScenarioError as err:
            dropped[f"invalid: {err}"] += 1
            continue
        if key not in fabric:  # a cluster the fabric cannot hold is refused by every network model
            fabric[key] = prices.fabric_refusal(c)
        if fabric[key]:
            dropped[fabric[key]] += 1
            continue
        if c.gpu not in hbm:
            hbm[c.gpu] = gpu_spec(c.gpu)["hbm_gb"]
        verdict = apply_bounds(c, fig, request, factors, hbm[c.gpu], seq, quick=True)
        if verdict:
            dropped[verdict] += 1
            continue
        c.estimate_days = max(c.lb_days, days_for(estimate_step_s(fig, c), c, seq, request.tokens))
        live.append(c)
    return live


def apply_bounds(c: Candidate, fig, request: PlanRequest, factors, hbm_gb: float, seq: int, quick: bool,
                 tail=None, with_chain: bool = False) -> str:
    """Set the candidate's lowest fitting ZeRO stage and its bounds; return why it is out ("" if still in).
    ``quick`` skips walking the schedule's program (looser bounds, for the first pass over every candidate);
    ``with_chain`` adds the walk of its data dependencies (the tightest bound, for candidates still in)."""
    for zero in sorted(z for z in request.zero_stages if z >= (0 if quick else c.zero_stage)):
        c.lb_memory_gb = memory_lower_bound_gb(fig, c, factors, zero, quick=quick)
        if c.lb_memory_gb <= hbm_gb:
            c.zero_stage = zero
            break
    else:
        return BOUND_MEMORY
    step = quick_step_lower_bound_s(fig, c) if quick else \
        max(c.lb_step_s, step_lower_bound_s(fig, c, tail(c, fig), with_chain))
    c.lb_step_s = step
    c.lb_days = days_for(step, c, seq, request.tokens)
    if request.deadline_days is not None and c.lb_days > request.deadline_days:
        return BOUND_DEADLINE
    if request.budget_usd is not None and request.cost_usd(c.gpus, c.lb_days, c.gpu) > request.budget_usd:
        return BOUND_BUDGET
    return ""


def judge(c: Candidate, row: dict, request: PlanRequest) -> None:
    """Read a simulated row into the candidate's verdict."""
    c.row = row
    if over_memory(row):
        c.verdict, c.reason = SIM_MEMORY, row["reason"].split(" (")[0].removeprefix(MEMORY_REASON)
        return
    if row["status"] != OK:
        c.verdict, c.reason = "simulated: invalid", row.get("reason", "")
        return
    c.cost_usd = request.cost_usd(c.gpus, c.days, c.gpu)
    if request.deadline_days is not None and c.days > request.deadline_days:
        c.verdict, c.reason = SIM_DEADLINE, f"{c.days:.1f} days > {request.deadline_days:g}-day deadline"
    elif request.budget_usd is not None and c.cost_usd > request.budget_usd:
        c.verdict, c.reason = SIM_BUDGET, f"${c.cost_usd:,.0f} > ${request.budget_usd:,.0f} budget"


def objective(request: PlanRequest, c: Candidate, days: float) -> tuple[float, float]:
    """The request's ranking key of candidate ``c`` at ``days`` (a bound, an estimate or its simulated days)."""
    return request.rank(c.gpus, days, c.gpu)


def worth_simulating(c: Candidate, good: list[Candidate], request: PlanRequest) -> bool:
    """Whether the candidate's bound could still beat the best plan of ``good`` on the objective."""
    lb = objective(request, c, c.lb_days)
    return not any(objective(request, g, g.days) <= lb for g in good)


def search(base: dict, request: PlanRequest, executor, profile: str | None = None,
           progress: Callable[[str, int, int], None] = lambda *a: None) -> Outcome:
    """Run the whole search (see the module docstring). ``progress(phase, done, total)`` is called as it goes."""
    wall = time.perf_counter()
    base = {**base, "training": {**base["training"], "tokens": request.tokens}}  # days are for the budget asked
    space = enumerate_space(base, request)
    outcome = Outcome(space, dropped=Counter(space.dropped))
    fingerprint = canonical({"base": base, "profile": profile})
    with executor.session(base, profile) as session:
        prices = PriceCache(base, load_profiles(profile) if profile else None)
        count = [0]

        def tick() -> None:
            count[0] += 1
            if count[0] % 500 == 0:
                progress("bounding", count[0], len(space.candidates))

        progress("bounding", 0, len(space.candidates))
        live = bound_candidates(base, request, space, prices, outcome.dropped, tick)
        outcome.priced_kinds = prices.priced
        if not live:  # nothing can meet the constraints: simulate the closest few so the answer can say how close
            closest_pool = bound_candidates(base, request.model_copy(update={"deadline_days": None,
                                                                             "budget_usd": None}),
                                            space, prices, Counter())
            closest_pool.sort(key=lambda c: (c.lb_days, c.cost_usd))
            outcome.closest = run_closest(closest_pool, request, session, fingerprint, outcome, progress)
            outcome.wall_s = time.perf_counter() - wall
            return outcome
        good: list[Candidate] = []
        left: list[Candidate] = []  # not simulated when a limit stopped the search
        runs = Simulations(session, fingerprint, request, outcome)
        order = Ordering(live, request)
        queue = order.initial()
        factors = state_factors(validate(base).training)
        seq = base["parallelism"]["seq_len"]

        def out_by_bounds(c: Candidate) -> str:
            """Why the candidate cannot win without simulating it ("" if it still may): the best plan so far beats
            its bound, or its exact bounds (they walk the schedule's program: only for candidates the search
            reaches) miss a constraint."""
            if not worth_simulating(c, good, request):
                return PRUNED
            hbm = gpu_spec(c.gpu)["hbm_gb"]
            verdict = apply_bounds(c, prices.figures(c), request, factors, hbm, seq, quick=False, tail=prices.tail_s)
            if not verdict and worth_simulating(c, good, request):  # still in: the tightest bound, walked once
                verdict = apply_bounds(c, prices.figures(c), request, factors, hbm, seq, quick=False,
                                       tail=prices.tail_s, with_chain=True)
            return verdict or ("" if worth_simulating(c, good, request) else PRUNED)

        while queue or session.in_flight:
            while queue and session.in_flight < session.slots:
                c = queue.pop(0)
                verdict = out_by_bounds(c)
                if verdict:
                    outcome.dropped[verdict] += 1
                    if verdict == PRUNED:
                        order.heads.discard(id(c))
                    else:
                        order.replace_head(c, queue)
                    continue
                order.heads.discard(id(c))
                stop = CAPPED if len(outcome.simulated) >= request.max_simulations else \
                    TIMED_OUT if time.perf_counter() - wall > request.time_limit_s else ""
                if stop:
                    outcome.exact, outcome.stopped_by = False, stop
                    left += [c] + queue
                    queue = []
                    break
                runs.submit(c)
            if not session.in_flight:
                break
            for c in runs.finished():
                if c.verdict == SIM_MEMORY and c.zero_stage < max(request.zero_stages):
                    retry = Candidate(**{**c.__dict__, "row": {}, "verdict": "", "reason": ""})
                    retry.zero_stage = min(z for z in request.zero_stages if z > c.zero_stage)
                    queue.insert(0, retry)
                    order.heads.add(id(retry))  # next up, ahead of the re-ordering below
                if c.verdict:
                    outcome.dropped[c.verdict] += 1
                else:
                    good.append(c)
                if c.row.get("training_days"):
                    queue = order.learn(c, queue)
                progress("simulating", len(outcome.simulated) - session.in_flight,
                         min(request.max_simulations, len(outcome.simulated) + len(queue)))
        if not outcome.exact:  # what is left open: the candidates no simulated plan rules out, and their best bound
            still = []
            for c in left:
                verdict = out_by_bounds(c)
                if verdict:
                    outcome.dropped[verdict] += 1
                else:
                    still.append(c)
            outcome.dropped[outcome.stopped_by] += len(still)
            left = still
            outcome.open_candidates = len(left)
            outcome.open = sorted(left, key=lambda c: objective(request, c, c.lb_days))
            if left:
                best = outcome.open[0]
                outcome.open_bound = (best.lb_days, request.cost_usd(best.gpus, best.lb_days, best.gpu))
        if not good:
            fitting = [c for c in outcome.simulated if c.row and c.verdict in (SIM_DEADLINE, SIM_BUDGET)]
            outcome.closest = sorted(fitting, key=lambda c: (c.days, c.cost_usd))[:3]
    outcome.wall_s = time.perf_counter() - wall
    return outcome


def family(c: Candidate) -> tuple:
    """Layouts whose estimate the simulation tends to miss by a similar factor (bubble, exposed communication):
    same schedule and pipeline depth, expert parallelism within or beyond an 8-GPU node."""
    return c.schedule, c.pp, c.ep > 8


class Ordering:
    """Which candidate to simulate next. First the most promising layout of each pipeline depth, with and without
    DualPipe (at most half the simulation budget), so that no single family's optimistic bound takes every
    simulation; then every candidate
    by its estimate (:func:`~moesim.simulator.planner.bounds.estimate_step_s`) × what the simulations so far showed
    for its family (simulated / estimated days), or the median over all families for one not simulated yet. A
    search heuristic only: pruning uses the bound alone."""

    def __init__(self, live: list[Candidate], request: PlanRequest):
        self.request = request
        self.live = live
        self.ratios: dict[tuple, list[float]] = {}
        self.explore = max(1, request.max_simulations // 2)
        self.heads: set[int] = set()

    def estimate(self, c: Candidate) -> tuple[float, float]:
        ratios = self.ratios.get(family(c))
        if ratios:
            ratio = sorted(ratios)[len(ratios) // 2]
        elif self.ratios:
            seen = sorted(r for rs in self.ratios.values() for r in rs)
            ratio = seen[len(seen) // 2]
        else:
            ratio = 1.0
        days = c.estimate_days * ratio
        return objective(self.request, c, days)

    def initial(self) -> list[Candidate]:
        queue = sorted(self.live, key=self.estimate)
        heads: dict[tuple, Candidate] = {}
        for c in queue:  # explore across pipeline depths first: their bubbles are what bounds misjudge most
            heads.setdefault(self.depth(c), c)
        first = list(heads.values())[:self.explore]
        self.heads = {id(c) for c in first}
        return first + [c for c in queue if id(c) not in self.heads]

    @staticmethod
    def depth(c: Candidate) -> tuple:
        return c.pp, c.schedule in ("dualpipe", "dualpipev")

    def replace_head(self, c: Candidate, queue: list[Candidate]) -> None:
        """A family head the exact bounds ruled out: the next of its depth takes its place at the front."""
        if id(c) not in self.heads:
            return
        self.heads.discard(id(c))
        for i, other in enumerate(queue):
            if id(other) not in self.heads and self.depth(other) == self.depth(c):
                self.heads.add(id(other))
                queue.insert(0, queue.pop(i))
                return

    def learn(self, c: Candidate, queue: list[Candidate]) -> list[Candidate]:
        """Record a simulated candidate's simulated / bound ratio; the queue re-ordered after the family heads
        still to explore."""
        self.ratios.setdefault(family(c), []).append(c.row["training_days"] / c.estimate_days)
        head = [x for x in queue if id(x) in self.heads]
        rest = [x for x in queue if id(x) not in self.heads]
        return head + sorted(rest, key=self.estimate)


class Simulations:
    """Candidates simulated on an executor session: :meth:`submit` one, :meth:`finished` yields each as its row
    arrives, judged against the request (every one submitted is also recorded in ``outcome.simulated``)."""

    def __init__(self, session, fingerprint: str, request: PlanRequest, outcome: Outcome):
        self.session, self.fingerprint, self.request, self.outcome = session, fingerprint, request, outcome
        self.by_key: dict[str, Candidate] = {}

    def submit(self, c: Candidate) -> None:
        overrides = c.overrides()
        key = point_key(self.fingerprint, overrides)
        self.session.submit(Point(key, overrides))
        self.by_key[key] = c
        self.outcome.simulated.append(c)

    def finished(self):
        for row in self.session.finished():
            c = self.by_key.pop(row["key"])
            judge(c, row, self.request)
            yield c


def run_closest(pool: list[Candidate], request: PlanRequest, session, fingerprint: str, outcome: Outcome,
                progress) -> list[Candidate]:
    """Simulate the few candidates with the best bounds, ignoring deadline and budget; the fitting ones, best
    first (at most three)."""
    found: list[Candidate] = []
    runs = Simulations(session, fingerprint, request, outcome)
    budget = min(request.max_simulations, 2 * max(3, session.slots))
    while (pool or session.in_flight) and len(found) < 3:
        while pool and session.in_flight < session.slots and len(outcome.simulated) < budget:
            runs.submit(pool.pop(0))
        if not session.in_flight:
            break
        for c in runs.finished():
            if c.verdict in (SIM_DEADLINE, SIM_BUDGET, ""):
                found.append(c)
            progress("closest plans", len(found), 3)
    return sorted(found, key=lambda c: (c.days, c.cost_usd))[:3]
