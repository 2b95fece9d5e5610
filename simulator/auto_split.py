"""``parallelism.stage_layers: auto``: the split of layers over pipeline stages that the cost model says
leaves the slowest pipeline rank fastest. An optimisation over the model's own prices, never a fit to a
published figure.

Each unit is priced once by the scenario's :class:`~moesim.simulator.pricing.Pricer` as the sum of its F, B and W ops
(seconds per micro-batch; communication included unless the schedule hides it behind compute): a dense and an MoE
decoder layer, each MTP layer with its projection and head, the embedding (always on the first stage) and the loss
(final norm, head, cross-entropy; always on the last). Decoder layers and then MTP layers are split in order, so an
MTP layer may get a stage of its own, as Megatron's layouts give it (the result is then a ``pipeline_layout``).
A rank's load is what it runs
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

from moesim.simulator.pricing import Pricer
from moesim.workloads.layers import LayerBuilder, LayerOps
from moesim.workloads.model import _transformer_layer, is_moe_layer
from moesim.workloads.scenario import Scenario


@dataclass(frozen=True)
class AutoSplit:
    """The chosen split and what the cost model says of it and of the even split (seconds per micro-batch).
    ``units``: decoder and MTP layers per stage, in model order (the MTP layers after the decoder layers)."""

    units: list[int]
    stage_layers: list[int]  # decoder layers per stage
    layout: str | None  # the split in Megatron's notation, where the model has MTP layers (they move too)
    slowest_rank_s: float
    even_slowest_rank_s: float | None  # None where the layers do not split evenly
    simulated: int = 1  # candidate splits simulated

    def note(self) -> str:
        even = (f"; the even split's slowest rank {self.even_slowest_rank_s * 1e3:.1f} ms"
                if self.even_slowest_rank_s is not None else "")
        chosen = f"pipeline_layout {self.layout}" if self.layout else str(self.stage_layers)
        return (f"parallelism.stage_layers: auto chose {chosen} (slowest rank "
                f"{self.slowest_rank_s * 1e3:.1f} ms of F+B+W per micro-batch{even}; best simulated step of "
                f"{self.simulated} candidate splits)")


# Schedules that run one micro-batch's forward beside another's backward, so that one's communication hides
# behind the other's compute (DeepSeek-V3 TR §3.2.1): their units are priced by compute alone.
OVERLAPPING = ("dualpipe", "dualpipev")


def _ops_s(pricer: Pricer, ops: LayerOps, with_comm: bool) -> float:
    return sum(pricer.op_time_s(op) for c in (*ops.forward, *ops.backward, *ops.weight) for op in c.ops
               if with_comm or op.comm is None)


def unit_costs_s(scenario: Scenario, pricer: Pricer) -> tuple[list[float], float, float]:
    """(per decoder layer then per MTP layer with its projection and head, the embedding, the loss), seconds of
    F+B+W per micro-batch; communication counted unless the schedule overlaps it (:data:`OVERLAPPING`)."""
    builder = LayerBuilder(scenario)
    comm = scenario.schedule not in OVERLAPPING
    model = scenario.model
    kinds: dict[bool, float] = {}
    units = []
    for layer in range(model.layers):
        moe = is_moe_layer(model, layer)
        if moe not in kinds:
            kinds[moe] = _ops_s(pricer, _transformer_layer(builder, model, layer), comm)
        units.append(kinds[moe])
    embedding = LayerOps(-1)
    builder.embedding(embedding)
    for depth in range(model.mtp_depth):
        mtp_layer = model.layers + depth
        entry, head = LayerOps(mtp_layer), LayerOps(mtp_layer)
        builder.mtp_projection(entry)
        builder.head(head)
        units.append(_ops_s(pricer, entry, comm) + _ops_s(pricer, _transformer_layer(builder, model, mtp_layer), comm)
                     + _ops_s(pricer, head, comm))
    loss = LayerOps(model.layers + model.mtp_depth)
    builder.head(loss)
    return units, _ops_s(pricer, embedding, comm), _ops_s(pricer, loss, comm)


def layout_of(split: list[int], layers: int) -> str:
    """``split`` (units per stage: ``layers`` decoder layers, then MTP layers) in Megatron's layout notation,
    runs of equal stages written ``(…|)*n``."""
    stages, start = [], 0
    for i, count in enumerate(split):
        decoder = max(0, min(count, layers - start))
        text = ("E" if i == 0 else "") + "t" * decoder + "m" * (count - decoder) + ("L" if i == len(split) - 1 else "")
        stages.append(text)
        start += count
    groups: list[list] = []
    for text in stages:
        if groups and groups[-1][0] == text:
            groups[-1][1] += 1
        else:
            groups.append([text, 1])
    parts = []
    for i, (text, n) in enumerate(groups):
        last = i == len(groups) - 1
        if n == 1:
            parts.append(text if last else f"{text}|")
        else:
            parts.append(f"({text}|)*{n - 1}{text}" if last else f"({text}|)*{n}")
    return "".join(parts)


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
    par, model = scenario.parallelism, scenario.model
    stages = par.pp * par.virtual_stages
    units, first, last = unit_costs_s(scenario, pricer)
    shares = stage_shares(schedule, stages, scenario.micro_batches)
    balanced = best_split(units, first, last, stages)
    split = local_search(balanced, units, first, last, shares)
    candidates = [split]
    if step_s is not None:  # both starts of the search and their end-stage variants, each once
        for start in (split, balanced):
            candidates += [c for c in end_variants(start, units, first, last, shares) if c not in candidates]
    if len(candidates) > 1:
        times = [step_s(with_split(scenario, c)) for c in candidates]
        split = candidates[min(range(len(candidates)), key=lambda i: (times[i], i))]
    slowest = max(_rank_loads(split, units, first, last, shares))
    even = None
    if model.layers % stages == 0:
        even_split = [model.layers // stages] * stages
        even_split[-1] += model.mtp_depth
        even = max(_rank_loads(even_split, units, first, last, shares))
    decoder, start = [], 0
    for count in split:
        decoder.append(max(0, min(count, model.layers - start)))
        start += count
    return AutoSplit(split, decoder, layout_of(split, model.layers) if model.mtp_depth else None, slowest, even,
                     len(candidates))


def with_split(scenario: Scenario, split: list[int]) -> Scenario:
    """``scenario`` split as ``split`` says (units per stage): as ``stage_layers`` without MTP layers, else as a
    ``pipeline_layout`` (the MTP layers may sit on stages of their own)."""
    update: dict = {"stage_layers": list(split)}
    if scenario.model.mtp_depth:
        update = {"stage_layers": None, "pipeline_layout": layout_of(split, scenario.model.layers)}
    parallelism = scenario.parallelism.model_copy(update=update)
    return scenario.model_copy(update={"parallelism": parallelism})


def resolve_auto(scenario: Scenario, pricer: Pricer, schedule, step_s=None) -> tuple[Scenario, AutoSplit | None]:
    """``scenario`` with ``stage_layers: auto`` replaced by the split it stands for (and that split), or as it is."""
    if scenario.parallelism.stage_layers != "auto":
        return scenario, None
    chosen = auto_split(scenario, pricer, schedule, step_s)
    return with_split(scenario, chosen.units), chosen
