"""Capacity planning: search GPU counts and parallel layouts for a model and token budget, rank by time and cost.

The search space is every GPU count (powers of two from one node up to ``max_gpus``) crossed with every layout
(tp, pp, ep, micro-batch size, schedule) the scenario accepts. Without simulating, clusters too small to meet
the deadline or budget even at peak FLOPS are rejected, and so are layouts whose weights, gradients and
optimizer states alone exceed HBM; the rest are simulated (representative-rank mode, through the sweep
executors) and kept when their peak memory fits. Candidates meeting the deadline and budget are ranked by
training time (or cost); the time/cost Pareto front is over every layout that fits.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from simulator.memory import GB, state_bytes
from simulator.schedules import SCHEDULES
from simulator.sweep.row import OK
from simulator.sweep.spec import Point, apply_value, canonical, point_key
from workloads.errors import ScenarioError
from workloads.loader import validate
from simulator.simulate import SECONDS_PER_DAY
from workloads.model import build_stages, parameter_counts
from workloads.presets import preset_data, preset_names
from workloads import quantities as q

TOKEN_SUFFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12, "P": 1e15}
DAY_UNITS = {"h": 1 / 24, "d": 1.0, "w": 7.0}


def parse_tokens(text: str) -> float:
    """``14.8T`` → 1.48e13; suffixes K, M, B (or G), T, P; a plain number (``1.5e12``) also works."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMBGTP]?)\s*", text, flags=re.IGNORECASE)
    if not match or float(match[1]) <= 0:
        raise ScenarioError(f"--tokens {text!r}: expected a positive number with an optional K/M/B/T suffix, "
                            "e.g. 14.8T")
    try:
        return q.TOKENS(float(match[1]) * TOKEN_SUFFIXES[match[2].upper()])
    except ValueError as err:
        raise ScenarioError(f"--tokens {text!r}: {err}") from None


def parse_days(text: str, option: str = "--deadline") -> float:
    """``60d`` → 60.0 days; units h (hours), d (days), w (weeks); a plain number is days."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([hdw]?)\s*", text, flags=re.IGNORECASE)
    if not match or float(match[1]) <= 0:
        raise ScenarioError(f"{option} {text!r}: expected a positive duration such as 60d, 8w or 720h")
    try:
        return q.DAYS(float(match[1]) * DAY_UNITS[(match[2] or "d").lower()])
    except ValueError as err:
        raise ScenarioError(f"{option} {text!r}: {err} days") from None


def model_presets() -> dict[str, str]:
    """Names --model accepts → preset: each preset's name, its name without the GPU suffix, its model's name."""
    names: dict[str, str] = {}
    for preset in preset_names():
        data = preset_data(preset)
        names[preset] = preset
        names.setdefault(re.sub(r"-(h800|h100|h200)$", "", preset), preset)
        names.setdefault(data["model"]["name"].lower(), preset)
        names.setdefault(data["model"]["name"].lower().replace("-3-", "3-"), preset)
    return names


def resolve_model(name: str) -> str:
    names = model_presets()
    key = name.lower()
    if key not in names:
        known = sorted({n for n in names if n not in preset_names()})
        raise ScenarioError(f"--model {name!r} is unknown; known: {', '.join(known)} (or a preset name)")
    return names[key]


class PlanRequest(BaseModel):
    """What to plan for and the search space; None means every value the scenario allows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: q.TOKENS.field()
    gpu: str
    deadline_days: q.DAYS.field() | None = None
    budget_usd: q.USD.field() | None = None
    price_per_gpu_hour: q.USD_PER_HOUR.field() = 2.0
    max_gpus: q.GPU_COUNT.field() = 4096
    gpu_counts: list[PositiveInt] | None = None
    tp: list[PositiveInt] = Field(default_factory=lambda: [1, 2, 4, 8])
    pp: list[PositiveInt] = Field(default_factory=lambda: [1, 2, 4, 8, 16])
    micro_batch_sizes: list[PositiveInt] = Field(default_factory=lambda: [1, 2])
    schedules: list[str] | None = None
    objective: Literal["time", "cost"] = "time"


@dataclass
class Candidate:
    """One evaluated layout: its overrides and its simulated row (or why it was rejected)."""

    layout: dict[str, Any]
    row: dict[str, Any] = field(default_factory=dict)
    rejected: str = ""  # "", "invalid", "memory", "deadline", "budget"
    reason: str = ""
    cost_usd: float = 0.0

    @property
    def days(self) -> float:
        return self.row["training_days"]

    def summary(self) -> str:
        par = self.layout
        return (f"{par['cluster.gpus']} GPUs dp{par['parallelism.dp']} tp{par['parallelism.tp']} "
                f"pp{par['parallelism.pp']} ep{par['parallelism.ep']} mbs{par['parallelism.micro_batch_size']} "
                f"{par['schedule']}")


def plan_base(preset: str, request: PlanRequest) -> dict:
    data = preset_data(preset)
    apply_value(data, "cluster.gpu", request.gpu)
    apply_value(data, "training.tokens", request.tokens)
    return data


def gpu_counts(request: PlanRequest, gpus_per_node: int) -> list[int]:
    if request.gpu_counts:
        return sorted(c for c in set(request.gpu_counts) if c <= request.max_gpus)
    start = gpus_per_node if request.max_gpus >= gpus_per_node else 1
    counts, n = [], start
    while n <= request.max_gpus:
        counts.append(n)
        n *= 2
    return counts


def stage_split(layers: int, pp: int, preset_split: list[int] | None) -> list[int] | None:
    """Layers per stage: the preset's own split when it has this many stages, an even one when it divides,
    else the remainder on the middle stages (the first and last already hold the embedding and the head)."""
    if preset_split is not None and len(preset_split) == pp:
        return list(preset_split)
    if layers % pp == 0:
        return None
    base, extra = divmod(layers, pp)
    split = [base] * pp
    middle = list(range(1, pp - 1)) or list(range(pp))
    for i in range(extra):
        split[middle[i % len(middle)]] += 1
    return split


def layouts(base: dict, request: PlanRequest) -> list[dict[str, Any]]:
    """Every layout of the search space that the scenario's divisibility rules could accept."""
    model, par = base["model"], base["parallelism"]
    per_node = base["cluster"].get("node", {}).get("gpus_per_node", 8)
    heads, layers = model["attention"]["heads"], model["layers"]
    experts = (model.get("moe") or {}).get("routed_experts")
    schedules = request.schedules or sorted(SCHEDULES)
    out = []
    for gpus in gpu_counts(request, per_node):
        for tp in (t for t in request.tp if t <= per_node and heads % t == 0 and gpus % t == 0):
            for pp in (p for p in request.pp if p <= layers and gpus % (tp * p) == 0):
                dp = gpus // (tp * pp)
                for mbs in (m for m in request.micro_batch_sizes if par["global_batch"] % (dp * m) == 0):
                    for ep in expert_parallel_sizes(experts, dp * tp, per_node, par.get("ep", 1)):
                        for schedule in schedules:
                            out.append({
                                "cluster.gpus": gpus, "parallelism.dp": dp, "parallelism.tp": tp,
                                "parallelism.pp": pp, "parallelism.ep": ep, "parallelism.cp": 1,
                                "parallelism.virtual_stages": 1, "parallelism.micro_batch_size": mbs,
                                "parallelism.stage_layers": stage_split(layers, pp, par.get("stage_layers")),
                                "schedule": schedule})
    return out


def expert_parallel_sizes(experts: int | None, ranks: int, per_node: int, preset_ep: int = 1) -> list[int]:
    """EP within a node, EP as wide as the experts and ranks allow (the two ends of the all-to-all trade), and the
    preset's own EP when the ranks can take it."""
    if not experts:
        return [1]
    widest = max(e for e in range(1, min(experts, ranks) + 1) if experts % e == 0 and ranks % e == 0)
    node = max(e for e in range(1, min(widest, per_node) + 1) if widest % e == 0)
    sizes = {node, widest}
    if widest % preset_ep == 0:
        sizes.add(preset_ep)
    return sorted(sizes)


def static_memory_gb(data: dict, cache: dict | None = None) -> float:
    """Weights + gradients + optimizer states on the fullest pipeline rank (no activations), in GB.

    Parameters per GPU depend only on tp, pp, ep and the stage split, so ``cache`` keeps them across layouts
    that differ in dp, micro-batch size or schedule (building the stages is the slow part). The fullest *stage*
    is a lower bound for a schedule that puts several stages on one rank, so this filter never rejects a
    layout the simulation would find fitting."""
    scenario = validate(data)
    par = scenario.parallelism
    key = (par.tp, par.pp, par.ep, par.virtual_stages, tuple(scenario.layers_per_stage()))
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = [(s.dense_params, s.expert_params) for s in build_stages(scenario)]
    return max(sum(state_bytes(scenario, dense, expert)) for dense, expert in cache[key]) / GB


def search(base: dict, request: PlanRequest, run_points) -> list[Candidate]:
    """Evaluate every layout. ``run_points(points) -> iterable of rows`` simulates (a sweep executor's run)."""
    candidates, to_run = [], []
    fingerprint = canonical(base)
    scenario = validate(base)
    hbm_gb = scenario.cluster.gpu.hbm_gb
    params: dict = {}
    for layout in layouts(base, request):
        cand = Candidate(layout)
        candidates.append(cand)
        if out_of_reach(cand, scenario, request):
            continue
        data = copy.deepcopy(base)
        try:
            for key, value in layout.items():
                apply_value(data, key, value)
            static_gb = static_memory_gb(data, params)
        except ScenarioError as err:
            cand.rejected, cand.reason = "invalid", str(err)
            continue
        if static_gb > hbm_gb:
            cand.rejected = "memory"
            cand.reason = f"weights, gradients and optimizer states alone need {static_gb:.1f} of {hbm_gb:g} GB"
            continue
        to_run.append((Point(point_key(fingerprint, layout), layout), cand))
    by_key = {point.key: cand for point, cand in to_run}
    for row in run_points([point for point, _ in to_run]):
        judge(by_key[row["key"]], row, request)
    return candidates


def out_of_reach(cand: Candidate, scenario, request: PlanRequest) -> bool:
    """Reject, without simulating, a cluster too small to meet the deadline or budget even at the GPU's peak.

    The bound: 6 FLOPs per activated parameter per token (forward 2, backward 4; attention and recomputation
    only add to it) at the GPU's FP8 dense peak (the fastest tensor-core rate it has, hardware spec)."""
    if request.deadline_days is None and request.budget_usd is None:
        return False
    gpus = cand.layout["cluster.gpus"]
    gpu = scenario.cluster.gpu
    peak_flops = max(gpu.fp8_tflops, gpu.bf16_tflops) * 1e12
    flops = 6 * parameter_counts(scenario.model).activated * request.tokens
    days = flops / (gpus * peak_flops) / SECONDS_PER_DAY
    cost = gpus * days * 24 * request.price_per_gpu_hour
    if request.deadline_days is not None and days > request.deadline_days:
        cand.rejected = "deadline"
        cand.reason = f"at least {days:.1f} days even at the {gpu.fp8_tflops:g} TFLOPS peak on {gpus} GPUs"
    elif request.budget_usd is not None and cost > request.budget_usd:
        cand.rejected, cand.reason = "budget", f"at least ${cost:,.0f} even at the {gpu.fp8_tflops:g} TFLOPS peak"
    return bool(cand.rejected)


def judge(cand: Candidate, row: dict, request: PlanRequest) -> None:
    cand.row = row
    if row.get("fits_in_memory") is False:  # simulated, but over HBM (the row is invalid for that reason)
        cand.rejected = "memory"
        cand.reason = f"peak memory {row['max_peak_memory_gb']:.1f} of {row['hbm_gb']:g} GB"
        return
    if row["status"] != OK:
        cand.rejected, cand.reason = "invalid", row["reason"]
        return
    cand.cost_usd = row["gpu_hours"] * request.price_per_gpu_hour
    if request.deadline_days is not None and cand.days > request.deadline_days:
        cand.rejected, cand.reason = "deadline", f"{cand.days:.1f} days > {request.deadline_days:g}-day deadline"
    elif request.budget_usd is not None and cand.cost_usd > request.budget_usd:
        cand.rejected = "budget"
        cand.reason = f"${cand.cost_usd:,.0f} > ${request.budget_usd:,.0f} budget"


def ranked(candidates: list[Candidate], objective: str = "time") -> list[Candidate]:
    """Candidates meeting every constraint, best first (time then cost, or cost then time)."""
    ok = [c for c in candidates if c.row and not c.rejected]
    key = (lambda c: (c.days, c.cost_usd)) if objective == "time" else (lambda c: (c.cost_usd, c.days))
    return sorted(ok, key=key)


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """Layouts that fit in memory and that no other fitting layout beats on both days and cost, fastest first."""
    fitting = sorted((c for c in candidates if c.row and c.rejected not in ("invalid", "memory")),
                     key=lambda c: (c.days, c.cost_usd))
    front: list[Candidate] = []
    for cand in fitting:
        if not front or cand.cost_usd < front[-1].cost_usd:
            front.append(cand)
    return front


def reasons(cand: Candidate, request: PlanRequest, best: list[Candidate]) -> list[str]:
    """Why a candidate is recommended, in words a planner would use."""
    out = []
    if cand is min(best, key=lambda c: (c.days, c.cost_usd)):
        out.append(f"fastest of {len(best)} that meet every constraint")
    if cand is min(best, key=lambda c: (c.cost_usd, c.days)):
        out.append(f"cheapest of {len(best)} that meet every constraint")
    out.append(f"peak memory {cand.row['max_peak_memory_gb']:.1f} of {cand.row['hbm_gb']:g} GB")
    out.append(f"{cand.row['training_days_with_failures']:.1f} days expected with failures and checkpoint restarts")
    out.append(f"MFU {cand.row['mfu_causal']:.1%}, bubble ≤ {cand.row['max_bubble_s']:.2f} s, "
               f"exposed comm ≤ {cand.row['max_exposed_comm_s']:.2f} s of a {cand.row['step_time_s']:.2f} s step")
    if request.deadline_days is not None:
        out.append(f"meets the {request.deadline_days:g}-day deadline with {request.deadline_days - cand.days:.1f} "
                   "days to spare")
    if request.budget_usd is not None:
        out.append(f"${request.budget_usd - cand.cost_usd:,.0f} under budget")
    return out


def rejection_counts(candidates: list[Candidate]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in candidates:
        if c.rejected:
            counts[c.rejected] = counts.get(c.rejected, 0) + 1
    return counts
