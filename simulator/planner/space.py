"""The search space: every (GPU kind, GPU count, tp, cp, pp, dp, ep, micro-batch size, schedule with its virtual
stages, recomputation) a scenario could run, with the largest global batch in the requested range that the
layout and schedule accept. Layouts that cannot work are counted by reason, never silently dropped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from moesim.simulator.planner.request import RECOMPUTE, PlanRequest
from moesim.simulator.schedules import ScheduleError, get_schedule


@dataclass
class Candidate:
    """One layout of the search. Bounds (``lb_*``) come from :mod:`moesim.simulator.planner.bounds`, the simulated row
    (``row``) from the sweep executor; ``verdict`` says where it stopped ("" while still in the running)."""

    gpu: str
    gpus: int
    dp: int
    tp: int
    pp: int
    cp: int
    ep: int
    micro_batch_size: int
    schedule: str
    virtual_stages: int
    recompute: str
    global_batch: int
    stage_layers: list[int] | None
    zero_stage: int = 1
    # GPUs per node (NVLink domain) when the GPU kind's differs from the base scenario's (0: the base's), and NICs.
    gpus_per_node: int = 0
    nics_per_node: int = 0
    lb_step_s: float = 0.0
    lb_days: float = 0.0
    estimate_days: float = 0.0  # for ordering the search only
    lb_memory_gb: float = 0.0
    row: dict[str, Any] = field(default_factory=dict)
    verdict: str = ""
    reason: str = ""
    cost_usd: float = 0.0

    @property
    def micro_batches(self) -> int:
        return self.global_batch // (self.dp * self.micro_batch_size)

    @property
    def days(self) -> float:
        return self.row["training_days"]

    def overrides(self) -> dict[str, Any]:
        """The dotted scenario fields this layout sets (what ``--set`` would take)."""
        return {"cluster.gpu": self.gpu, "cluster.gpus": self.gpus, "parallelism.dp": self.dp,
                "parallelism.tp": self.tp, "parallelism.pp": self.pp, "parallelism.cp": self.cp,
                "parallelism.ep": self.ep, "parallelism.micro_batch_size": self.micro_batch_size,
                "parallelism.virtual_stages": self.virtual_stages, "parallelism.zero_stage": self.zero_stage,
                "parallelism.global_batch": self.global_batch, "parallelism.stage_layers": self.stage_layers,
                "schedule": self.schedule, "training.recompute": RECOMPUTE[self.recompute],
                **({"cluster.node.gpus_per_node": self.gpus_per_node, "cluster.node.nics_per_node": self.nics_per_node}
                   if self.gpus_per_node else {})}

    def layout(self) -> dict[str, Any]:
        return {"gpu": self.gpu, "gpus": self.gpus, "dp": self.dp, "tp": self.tp, "pp": self.pp, "cp": self.cp,
                "ep": self.ep, "micro_batch_size": self.micro_batch_size, "micro_batches": self.micro_batches,
                "global_batch": self.global_batch, "schedule": self.schedule,
                "virtual_stages": self.virtual_stages, "zero_stage": self.zero_stage, "recompute": self.recompute}

    def summary(self) -> str:
        sched = self.schedule + (f"(v{self.virtual_stages})" if self.schedule == "interleaved" else "")
        return (f"{self.gpus} {self.gpu.upper()} dp{self.dp} tp{self.tp} pp{self.pp} cp{self.cp} ep{self.ep} "
                f"mbs{self.micro_batch_size}×{self.micro_batches} batch {self.global_batch} {sched} "
                f"ZeRO-{self.zero_stage} recompute {self.recompute}")


@dataclass
class Space:
    """The candidates, and how many layouts were dropped for which reason (also per requested GPU count)."""

    candidates: list[Candidate]
    dropped: Counter
    by_gpus: dict[int, Counter]
    unusable_gpus: dict[int, str]  # requested --gpus values that cannot work → why


def stage_split(layers: int, stages: int, preset_split: list[int] | None) -> list[int] | None:
    """Layers per stage: the preset's own split when it has this many stages, an even one when it divides,
    else the remainder on the middle stages (the first and last already hold the embedding and the head)."""
    if preset_split is not None and len(preset_split) == stages:
        return list(preset_split)
    if layers % stages == 0:
        return None
    base, extra = divmod(layers, stages)
    split = [base] * stages
    middle = list(range(1, stages - 1)) or list(range(stages))
    for i in range(extra):
        split[middle[i % len(middle)]] += 1
    return split


def expert_parallel_sizes(experts: int | None, ranks: int, per_node: int, preset_ep: int = 1) -> list[int]:
    """EP within a node, EP as wide as the experts and ranks allow (the two ends of the all-to-all trade), and the
    preset's own EP when the ranks can take it."""
    if not experts:
        return [1]
    widest = max(e for e in range(1, min(experts, ranks) + 1) if experts % e == 0 and ranks % e == 0)
    node = max(e for e in range(1, min(widest, per_node) + 1) if widest % e == 0)
    sizes = {node, widest}
    if widest % preset_ep == 0 and preset_ep <= widest:
        sizes.add(preset_ep)
    return sorted(sizes)


def data_parallel_sizes(request: PlanRequest, ranks: int) -> list[int]:
    """dp for ``ranks`` = tp·pp·cp GPUs per replica: each requested GPU count it divides, or else powers of two
    and three times powers of two (every cluster size a planner quotes) up to ``max_gpus``."""
    if request.gpu_counts:
        return sorted({g // ranks for g in request.gpu_counts if g % ranks == 0 and g <= request.max_gpus})
    out, power = [], 1
    while power * ranks <= request.max_gpus:
        out.append(power)
        if 3 * power * ranks <= request.max_gpus and power >= 1:
            out.append(3 * power)
        power *= 2
    return sorted(set(out))


def micro_batch_count(schedule: str, virtual: int, pp: int, low: int, high: int) -> tuple[int | None, str]:
    """The most micro-batches in [low, high] the schedule accepts (more micro-batches, smaller bubble)."""
    if high < low:
        return None, "global batch range: no multiple of dp·micro_batch_size in it"
    cls = get_schedule(schedule)
    reason = ""
    for m in range(high, max(low, high - 4 * pp * virtual - 2) - 1, -1):
        try:
            cls(pp, m, virtual)
            return m, ""
        except ScheduleError as err:
            reason = str(err)
    return None, f"global batch range: no micro-batch count {schedule} accepts (e.g. {reason.split(': ', 1)[-1]})"


def node_gpus(base: dict, kind: str) -> int:
    """GPUs per node a plan on GPU ``kind`` uses: the base scenario's, unless ``kind``'s NVLink domain (GPU catalogue)
    differs from the base GPU's; then the largest power of two of that domain, so that power-of-two layouts (EP
    groups dividing 2^k experts) fill whole domains: 64 of an NVL72 rack's 72 GPUs (the other 8 are spares, not in
    the job's GPU-hours)."""
    from moesim.topologies.gpus import gpu_entry, gpu_kinds

    per_node = base["cluster"].get("node", {}).get("gpus_per_node", 8)
    base_gpu = base["cluster"].get("gpu")
    base_domain = gpu_entry(base_gpu.lower()).get("nvlink_domain_gpus") if isinstance(base_gpu, str) and \
        base_gpu.lower() in gpu_kinds() else per_node
    domain = gpu_entry(kind).get("nvlink_domain_gpus") or base_domain
    return per_node if domain == base_domain else 1 << (int(domain).bit_length() - 1)


def enumerate_space(base: dict, request: PlanRequest) -> Space:
    """Every candidate layout of the request, plus the count of dropped layouts by reason. GPU kinds whose node
    (:func:`node_gpus`) is the base scenario's share one enumeration; others get their own."""
    base_node = base["cluster"].get("node", {}).get("gpus_per_node", 8)
    groups: dict[int, list[str]] = {}
    for kind in request.gpus_kinds:
        groups.setdefault(node_gpus(base, kind), []).append(kind)
    spaces = []
    for per_node, kinds in groups.items():
        space = _enumerate(base, request, per_node, kinds)
        if per_node != base_node:
            nics = base["cluster"].get("node", {}).get("nics_per_node", 8) * per_node // base_node
            for c in space.candidates:
                c.gpus_per_node, c.nics_per_node = per_node, nics
        spaces.append(space)
    if len(spaces) == 1:
        return spaces[0]
    dropped: Counter = sum((s.dropped for s in spaces), Counter())
    by_gpus: dict[int, Counter] = {}
    for s in spaces:
        for g, counter in s.by_gpus.items():
            by_gpus.setdefault(g, Counter()).update(counter)
    # A GPU count is unusable only if no GPU kind can use it.
    unusable = {g: why for g, why in spaces[0].unusable_gpus.items() if all(g in s.unusable_gpus for s in spaces)}
    return Space([c for s in spaces for c in s.candidates], dropped, by_gpus, unusable)


def _enumerate(base: dict, request: PlanRequest, per_node: int, kinds: list[str]) -> Space:
    """The candidate layouts on nodes of ``per_node`` GPUs, for each of ``kinds``."""
    model, par = base["model"], base["parallelism"]
    heads, layers, seq = model["attention"]["heads"], model["layers"], par["seq_len"]
    experts = (model.get("moe") or {}).get("routed_experts")
    low, high = request.batch_range
    dropped: Counter = Counter()
    by_gpus: dict[int, Counter] = {g: Counter() for g in request.gpu_counts or []}
    candidates: list[Candidate] = []
    unusable: dict[int, str] = {}
    for g in request.gpu_counts or []:
        if g > request.max_gpus:
            unusable[g] = f"above --max-gpus {request.max_gpus}; raise --max-gpus"
        elif g > per_node and g % per_node:
            unusable[g] = f"not a whole number of {per_node}-GPU nodes"

    def drop(reason: str, gpus: int, count: int = 1) -> None:
        dropped[reason] += count
        if gpus in by_gpus:
            by_gpus[gpus][reason] += count

    for tp in request.tp:
        for cp in request.cp:
            for pp in request.pp:
                for dp in data_parallel_sizes(request, tp * pp * cp):
                    gpus = dp * tp * pp * cp
                    if gpus in unusable:
                        continue
                    if tp > per_node:
                        drop(f"tp larger than a {per_node}-GPU node", gpus)
                        continue
                    if heads % tp:
                        drop(f"tp does not divide the {heads} attention heads", gpus)
                        continue
                    if seq % cp:
                        drop(f"cp does not divide the {seq}-token sequence", gpus)
                        continue
                    if gpus > per_node and gpus % per_node:
                        drop(f"not a whole number of {per_node}-GPU nodes", gpus)
                        continue
                    for ep in expert_parallel_sizes(experts, dp * cp * tp, per_node, par.get("ep", 1)):
                        for mbs in request.micro_batch_sizes:
                            step = dp * mbs
                            m_low, m_high = -(-low // step), high // step
                            for schedule, virtual in request.schedules:
                                stages = pp * virtual
                                if stages > layers:
                                    drop("more pipeline stages than layers", gpus, len(request.recompute))
                                    continue
                                m, why = micro_batch_count(schedule, virtual, pp, m_low, m_high)
                                if m is None:
                                    drop(why.split(" (e.g.")[0], gpus, len(request.recompute))
                                    continue
                                split = stage_split(layers, stages, par.get("stage_layers"))
                                for recompute in request.recompute:
                                    candidates.append(Candidate(
                                        kinds[0], gpus, dp, tp, pp, cp, ep, mbs, schedule, virtual,
                                        recompute, m * step, split))
    for g, counter in by_gpus.items():
        if g not in unusable and not any(c.gpus == g for c in candidates):
            top = ", ".join(f"{reason} ({n})" for reason, n in counter.most_common(3))
            unusable[g] = f"no layout can use it: {top or 'no tp·pp·cp of the search divides it'}"
    if len(kinds) > 1:  # the same layouts on each GPU kind
        candidates = [Candidate(**{**c.__dict__, "gpu": kind, "row": {}}) for kind in kinds for c in candidates]
        dropped = Counter({k: n * len(kinds) for k, n in dropped.items()})
    return Space(candidates, dropped, by_gpus, unusable)
