"""The answer: plans meeting every constraint ranked by the objective, the time/cost Pareto front, why the
winner wins, and — when nothing meets the constraints — the closest plans and what would have to change.

Days are simulated training days for the token budget; "with failures" adds the expected time lost to
failures and checkpoint restarts (simulator/failures/faults.py); cost is GPU-hours × the price per GPU-hour (USD).
"""

from __future__ import annotations

from typing import Any

from moesim.simulator.planner.request import PlanRequest, energy_mwh
from moesim.simulator.planner.search import Outcome
from moesim.simulator.planner.space import Candidate


def duration(days: float) -> str:
    """``0.0417`` → ``1 hour``; ``60`` → ``60 days``."""
    if days < 1:
        hours = days * 24
        return f"{hours:.3g} hour" + ("" if hours == 1 else "s")
    return f"{days:.3g} days"


def ranked(outcome: Outcome, request: PlanRequest) -> list[Candidate]:
    """Simulated candidates that fit and meet every constraint, best first by the objective."""
    ok = [c for c in outcome.simulated if c.row and not c.verdict]
    return sorted(ok, key=lambda c: request.rank(c.gpus, c.days, c.gpu))


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """Those no other candidate beats on both days and cost, fastest first."""
    front: list[Candidate] = []
    for c in sorted(candidates, key=lambda c: (c.days, c.cost_usd)):
        if not front or c.cost_usd < front[-1].cost_usd:
            front.append(c)
    return front


def headroom_gb(c: Candidate) -> float:
    return c.row["hbm_gb"] - c.row["max_peak_memory_gb"]


def why(c: Candidate, best: list[Candidate], request: PlanRequest) -> list[str]:
    """Why a plan is where it is, in words a planner would use."""
    out = []
    fastest = min(best, key=lambda b: (b.days, b.cost_usd))
    cheapest = min(best, key=lambda b: (b.cost_usd, b.days))
    if c is fastest:
        out.append(f"fastest of {len(best)} plans that meet every constraint")
    if c is cheapest:
        out.append(f"cheapest of {len(best)} plans that meet every constraint")
    row = c.row
    out.append(f"MFU {row['mfu_causal']:.1%}: of a {row['step_time_s']:.2f} s step, pipeline bubble ≤ "
               f"{row['max_bubble_s']:.2f} s and exposed communication ≤ {row['max_exposed_comm_s']:.2f} s")
    out.append(f"peak memory {row['max_peak_memory_gb']:.1f} of {row['hbm_gb']:g} GB "
               f"({headroom_gb(c):.1f} GB headroom, ZeRO-{c.zero_stage}, recompute {c.recompute})")
    out.append(f"{row['training_days_with_failures']:.1f} days expected with failures and checkpoint restarts")
    if request.deadline_days is not None:
        out.append(f"{request.deadline_days - c.days:.1f} days inside the {duration(request.deadline_days)} deadline")
    if request.budget_usd is not None:
        out.append(f"${request.budget_usd - c.cost_usd:,.0f} under the ${request.budget_usd:,.0f} budget")
    others = [b for b in best if b is not c]
    if c is best[0] and others:
        runner = others[0]
        if request.objective == "time":
            out.append(f"{runner.days - c.days:.1f} days faster than the next plan ({runner.summary()})")
        elif request.objective == "cost":
            out.append(f"${runner.cost_usd - c.cost_usd:,.0f} cheaper than the next plan ({runner.summary()})")
        else:
            mine, theirs = request.rank(c.gpus, c.days, c.gpu)[0], request.rank(runner.gpus, runner.days, runner.gpu)[0]
            unit = "GPU-hours" if request.objective == "gpu-hours" else "MWh"
            out.append(f"{theirs - mine:,.0f} {unit} fewer than the next plan ({runner.summary()})")
    return out


def what_must_change(outcome: Outcome, request: PlanRequest) -> list[str]:
    """For an impossible request: how far the closest plans are, and which change would make one work."""
    if not outcome.closest:
        return ["no layout of the search fits in memory on these GPUs; try more GPUs (--max-gpus), another --gpu, "
                "or a wider search (--pp, --tp, --micro-batch-sizes)"]
    fastest = min(outcome.closest, key=lambda c: c.days)
    cheapest = min(outcome.closest, key=lambda c: c.cost_usd)
    out = []
    if request.deadline_days is not None and fastest.days > request.deadline_days:
        ratio = fastest.days / request.deadline_days
        out.append(f"a deadline of at least {fastest.days:.1f} days (the fastest plan found, on {fastest.gpus} GPUs)")
        out.append(f"or at most {request.tokens / ratio / 1e12:.3g}T tokens in {duration(request.deadline_days)}")
        low, high = request.batch_range
        if fastest.global_batch * 2 > high:
            out.append(f"or a global batch above {high:,} sequences (e.g. --global-batch {low}..{2 * high}): its "
                       f"{fastest.micro_batches} micro-batches per pipeline leave a large bubble, at some cost to "
                       "convergence")
        out.append(f"or at least {ratio:.1f}× the GPUs ({fastest.gpus * ratio:,.0f} if it scaled perfectly, which it "
                   f"does not; the search stopped at --max-gpus {request.max_gpus})"
                   if request.gpu_counts is None else
                   f"or at least {ratio:.1f}× the GPUs ({fastest.gpus * ratio:,.0f} if it scaled perfectly, "
                   "which it does not)")
    if request.budget_usd is not None and cheapest.cost_usd > request.budget_usd:
        out.append(f"a budget of at least ${cheapest.cost_usd:,.0f} (the cheapest plan found), or a price per "
                   f"GPU-hour of at most ${request.price_per_gpu_hour * request.budget_usd / cheapest.cost_usd:.2f}")
    return out


def plan_row(c: Candidate) -> dict[str, Any]:
    """One plan as JSON: its layout, the simulated metrics a planner acts on, and its lower bounds."""
    row = c.row
    return {"layout": c.layout(), "training_days": row["training_days"],
            "training_days_with_failures": row["training_days_with_failures"], "gpu_hours": row["gpu_hours"],
            "cost_usd": c.cost_usd, "energy_mwh": energy_mwh(c.gpus, row["training_days"], c.gpu),
            "step_time_s": row["step_time_s"], "tokens_per_s": row["tokens_per_s"],
            "mfu_causal": row["mfu_causal"], "peak_memory_gb": row["max_peak_memory_gb"], "hbm_gb": row["hbm_gb"],
            "memory_headroom_gb": headroom_gb(c), "bubble_s": row["max_bubble_s"],
            "exposed_comm_s": row["max_exposed_comm_s"], "lower_bound_days": c.lb_days,
            "lower_bound_memory_gb": c.lb_memory_gb, "verdict": c.verdict or "meets every constraint",
            "overrides": c.overrides()}


def plan_json(name: str, request: PlanRequest, outcome: Outcome, batch_source: str) -> dict[str, Any]:
    """Everything: the request, the search's counts, the ranked plans with reasons, the front, the closest."""
    best = ranked(outcome, request)
    return {
        "model": name, "request": request.model_dump(), "global_batch_from": batch_source,
        "search": {"layouts": len(outcome.space.candidates) + sum(outcome.space.dropped.values()),
                   "candidates": len(outcome.space.candidates), "simulated": len(outcome.simulated),
                   "priced_layer_kinds": outcome.priced_kinds, "exact": outcome.exact,
                   "stopped_by": outcome.stopped_by, "open_candidates": outcome.open_candidates,
                   "open_bound_days": outcome.open_bound[0] if outcome.open_bound else None,
                   "open_bound_cost_usd": outcome.open_bound[1] if outcome.open_bound else None,
                   "dropped": dict(outcome.dropped.most_common()), "wall_s": outcome.wall_s,
                   "unusable_gpus": {str(g): why_not for g, why_not in outcome.space.unusable_gpus.items()}},
        "plans": [{**plan_row(c), "reasons": why(c, best, request)} for c in best[:request.top]],
        "pareto": [plan_row(c) for c in pareto_front(best)],
        "closest": [plan_row(c) for c in outcome.closest],
        "what_must_change": what_must_change(outcome, request) if not best else [],
        "simulated": [plan_row(c) for c in outcome.simulated if c.row and "max_peak_memory_gb" in c.row],
    }
