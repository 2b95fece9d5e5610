"""``parallelism.stage_layers: auto``: the split of decoder layers over pipeline stages that the cost model says
leaves the slowest pipeline rank fastest. An optimisation over the model's own prices, never a fit to a
published figure.

Each unit is priced once by the scenario's :class:`~simulator.pricing.Pricer` as the sum of its F, B and W ops
(seconds per micro-batch; communication included unless the schedule hides it behind compute): a dense and an MoE decoder layer, the embedding, each MTP
layer with its head, the loss (final norm, head, cross-entropy). The embedding stays on the first stage, the MTP
layers and the loss on the last (moesim's placement without a ``pipeline_layout``). A rank's load is what it runs
per micro-batch on average: each stage's cost times the share of micro-batches the schedule runs it on that rank
(``schedule.rank_of``: interleaved ranks hold several stages, DualPipe runs stage s on rank s for half the
micro-batches and on rank pp-1-s for the other half). The search starts from the split whose most expensive stage
is cheapest (dynamic programming, exact where each rank runs one stage) and moves one layer at a time between
neighbouring stages while that lowers the largest rank load (then the spread of loads): a local optimum. Rank loads
do not see the order in which the pipeline fills and drains, so both ends of the search (the stage-balanced split
and the local optimum) and the splits that differ from them only in how the first and last stages share their
layers (up to two layers either way, within 1% of their largest load) are simulated, and the shortest simulated
step wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.pricing import Pricer
from workloads.layers import LayerBuilder, LayerOps
from workloads.model import _transformer_layer, is_moe_layer
from workloads.scenario import Scenario


@dataclass(frozen=True)
class AutoSplit:
    """The chosen split and what the cost model says of it and of the even split (seconds per micro-batch)."""

    stage_layers: list[int]
    slowest_rank_s: float
    even_slowest_rank_s: float | None  # None where the layers do not split evenly
    simulated: int = 1  # candidate splits simulated

    def note(self) -> str:
        even = (f"; the even split's slowest rank {self.even_slowest_rank_s * 1e3:.1f} ms"
                if self.even_slowest_rank_s is not None else "")
        return (f"parallelism.stage_layers: auto chose {self.stage_layers} (slowest rank "
                f"{self.slowest_rank_s * 1e3:.1f} ms of F+B+W per micro-batch{even}; best simulated step of "
                f"{self.simulated} candidate splits)")


# Schedules that run one micro-batch's forward beside another's backward, so that one's communication hides
# behind the other's compute (DeepSeek-V3 TR §3.2.1): their units are priced by compute alone.
OVERLAPPING = ("dualpipe", "dualpipev")


def _ops_s(pricer: Pricer, ops: LayerOps, with_comm: bool) -> float:
    return sum(pricer.op_time_s(op) for c in (*ops.forward, *ops.backward, *ops.weight) for op in c.ops
               if with_comm or op.comm is None)


def unit_costs_s(scenario: Scenario, pricer: Pricer) -> tuple[list[float], float, float]:
    """(per decoder layer, first stage's fixed units, last stage's fixed units), seconds of F+B+W per
    micro-batch; communication counted unless the schedule overlaps it (:data:`OVERLAPPING`)."""
    builder = LayerBuilder(scenario)
    comm = scenario.schedule not in OVERLAPPING
    model = scenario.model
    kinds: dict[bool, float] = {}
    layers = []
    for layer in range(model.layers):
        moe = is_moe_layer(model, layer)
        if moe not in kinds:
            kinds[moe] = _ops_s(pricer, _transformer_layer(builder, model, layer), comm)
        layers.append(kinds[moe])
    embedding = LayerOps(-1)
    builder.embedding(embedding)
    last = 0.0
    for depth in range(model.mtp_depth):
        mtp_layer = model.layers + depth
        entry, head = LayerOps(mtp_layer), LayerOps(mtp_layer)
        builder.mtp_projection(entry)
        builder.head(head)
        last += _ops_s(pricer, entry, comm) + _ops_s(pricer, _transformer_layer(builder, model, mtp_layer), comm) \
            + _ops_s(pricer, head, comm)
    loss = LayerOps(model.layers + model.mtp_depth)
    builder.head(loss)
    return layers, _ops_s(pricer, embedding, comm), last + _ops_s(pricer, loss, comm)


def _rank_loads(split: list[int], layers: list[float], first: float, last: float,
                shares: list[dict[int, float]]) -> list[float]:
    """Each rank's seconds per micro-batch; ``shares[stage]``: rank → share of micro-batches it runs the stage."""
    loads = [0.0] * (1 + max(r for share in shares for r in share))
    start = 0
    for stage, count in enumerate(split):
        cost = sum(layers[start:start + count]) + (first if stage == 0 else 0.0) + \
            (last if stage == len(split) - 1 else 0.0)
        for rank, share in shares[stage].items():
            loads[rank] += share * cost
        start += count
    return loads


def _score(loads: list[float]) -> tuple[float, float]:
    return max(loads), sum(x * x for x in loads)


def local_search(split: list[int], layers: list[float], first: float, last: float,
                 shares: list[dict[int, float]]) -> list[int]:
    """Move one layer at a time across a stage boundary while the (largest load, sum of squared loads) drops."""
    best = _score(_rank_loads(split, layers, first, last, shares))
    improved = True
    while improved:
        improved = False
        for boundary in range(len(split) - 1):
            for step in (1, -1):  # +1: the first layer of stage boundary+1 moves back; -1: the other way
                moved = list(split)
                moved[boundary] += step
                moved[boundary + 1] -= step
                if min(moved[boundary], moved[boundary + 1]) < 0:
                    continue
                score = _score(_rank_loads(moved, layers, first, last, shares))
                if score < (best[0] - 1e-12, best[1]) or (abs(score[0] - best[0]) <= 1e-12
                                                          and score[1] < best[1] - 1e-18):
                    split, best, improved = moved, score, True
    return split


def best_split(layers: list[float], first: float, last: float, stages: int) -> list[int]:
    """The contiguous split of ``layers`` (costs, in order) into ``stages`` stages, the first carrying ``first``
    and the last ``last`` besides, whose most expensive stage is cheapest (among equals, the first the search
    meets: deterministic). Dynamic programming, O(stages × layers²)."""
    n = len(layers)
    prefix = [0.0]
    for cost in layers:
        prefix.append(prefix[-1] + cost)
    inf = float("inf")
    # best[s][j]: the cheapest "most expensive stage" placing layers[:j] on stages 0..s-1; cut[s][j]: where
    # stage s-1 starts.
    best = [[inf] * (n + 1) for _ in range(stages + 1)]
    cut = [[0] * (n + 1) for _ in range(stages + 1)]
    best[0][0] = 0.0
    for s in range(1, stages + 1):
        extra = (first if s == 1 else 0.0) + (last if s == stages else 0.0)
        for j in range(n + 1):
            for i in range(j, -1, -1):  # stage s-1 holds layers[i:j]
                if best[s - 1][i] == inf:
                    continue
                value = max(best[s - 1][i], prefix[j] - prefix[i] + extra)
                if value < best[s][j] - 1e-15:
                    best[s][j], cut[s][j] = value, i
    split, j = [], n
    for s in range(stages, 0, -1):
        i = cut[s][j]
        split.append(j - i)
        j = i
    return split[::-1]


def stage_shares(schedule, stages: int, micro_batches: int) -> list[dict[int, float]]:
    """For each stage, rank → the share of micro-batches ``schedule`` runs it on that rank."""
    shares: list[dict[int, float]] = []
    for stage in range(stages):
        counts: dict[int, int] = {}
        for micro_batch in range(micro_batches):
            rank = schedule.rank_of(micro_batch, stage)
            counts[rank] = counts.get(rank, 0) + 1
        shares.append({rank: count / micro_batches for rank, count in counts.items()})
    return shares


def end_variants(split: list[int], layers: list[float], first: float, last: float,
                 shares: list[dict[int, float]], within: float = 0.01) -> list[list[int]]:
    """``split`` and the splits that move up to two layers between its first and last stages (through the stages
    between, each keeping its count: the first stage gives k layers, the last takes k), whose largest rank load is
    within ``within`` of ``split``'s."""
    base = max(_rank_loads(split, layers, first, last, shares))
    out = [split]
    for k in (1, -1, 2, -2):
        moved = list(split)
        moved[0] -= k
        moved[-1] += k
        if len(moved) < 2 or min(moved[0], moved[-1]) < 0:
            continue
        if max(_rank_loads(moved, layers, first, last, shares)) <= base * (1 + within):
            out.append(moved)
    return out


def auto_split(scenario: Scenario, pricer: Pricer, schedule, step_s=None) -> AutoSplit:
    """The split ``stage_layers: auto`` stands for under ``schedule`` (the scenario's pipeline schedule);
    ``step_s(scenario)``: the simulated step time of a concrete split (None: rank loads alone decide)."""
    par = scenario.parallelism
    stages = par.pp * par.virtual_stages
    layers, first, last = unit_costs_s(scenario, pricer)
    shares = stage_shares(schedule, stages, scenario.micro_batches)
    balanced = best_split(layers, first, last, stages)
    split = local_search(balanced, layers, first, last, shares)
    candidates = [split]
    if step_s is not None:  # both starts of the search and their end-stage variants, each once
        for start in (split, balanced):
            candidates += [c for c in end_variants(start, layers, first, last, shares) if c not in candidates]
    if len(candidates) > 1:
        times = [step_s(with_split(scenario, c)) for c in candidates]
        split = candidates[min(range(len(candidates)), key=lambda i: (times[i], i))]
    slowest = max(_rank_loads(split, layers, first, last, shares))
    even = None
    if scenario.model.layers % stages == 0:
        even = max(_rank_loads([scenario.model.layers // stages] * stages, layers, first, last, shares))
    return AutoSplit(split, slowest, even, len(candidates))


def with_split(scenario: Scenario, split: list[int]) -> Scenario:
    parallelism = scenario.parallelism.model_copy(update={"stage_layers": list(split)})
    return scenario.model_copy(update={"parallelism": parallelism})


def resolve_auto(scenario: Scenario, pricer: Pricer, schedule, step_s=None) -> tuple[Scenario, AutoSplit | None]:
    """``scenario`` with ``stage_layers: auto`` replaced by the split it stands for (and that split), or as it is."""
    if scenario.parallelism.stage_layers != "auto":
        return scenario, None
    chosen = auto_split(scenario, pricer, schedule, step_s)
    return with_split(scenario, chosen.stage_layers), chosen
