"""A scenario's model, cut into pipeline stages: per-stage chunks of ops, parameter counts and model FLOPs."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from moesim.workloads.errors import ScenarioError
from moesim.workloads.layers import LayerBuilder, LayerOps
from moesim.workloads.recompute import apply_modules, apply_selective
from moesim.workloads.ops import DTYPE_BYTES, Chunk, Component, Phase
from moesim.workloads.scenario import Model, Scenario


@dataclass
class StageWork:
    """One pipeline stage (a virtual stage when virtual_stages > 1): its chunks for one micro-batch.

    ``dense_params`` and ``expert_params`` are held per GPU (after tp and ep sharding).
    """

    stage: int
    layers: list[int]
    forward: Chunk
    backward: Chunk
    weight: Chunk
    dense_params: float = 0.0
    expert_params: float = 0.0

    def chunk(self, phase: Phase) -> Chunk:
        return {Phase.F: self.forward, Phase.B: self.backward, Phase.W: self.weight}[phase]


def stage_layer_ranges(scenario: Scenario) -> list[list[int]]:
    """Transformer-layer indices of each stage, in model order."""
    ranges, start = [], 0
    for count in scenario.layers_per_stage():
        ranges.append(list(range(start, start + count)))
        start += count
    return ranges


def is_moe_layer(model: Model, layer: int) -> bool:
    """MTP blocks (index ≥ layers) are MoE blocks too in an MoE model."""
    return model.moe is not None and layer >= model.moe.first_dense_layers


def build_stages(scenario: Scenario) -> list[StageWork]:
    """Expand the scenario into per-stage F/B/W chunks of one micro-batch on one GPU. Each stage holds the units
    :meth:`Scenario.stage_units` gives it: the embedding, decoder layers, MTP layers, the loss (output head)."""
    builder = LayerBuilder(scenario)
    model = scenario.model
    ranges = stage_layer_ranges(scenario)
    units = scenario.stage_units()
    stages = []
    kinds: dict[tuple, LayerOps] = {}  # each kind of layer built once: layers of a kind differ only by index
    mtp_next = model.layers  # MTP layers are numbered after the decoder layers, in stage order
    for index, layers in enumerate(ranges):
        parts: list[LayerOps] = []
        if units[index].embedding:
            ops = LayerOps(-1)
            builder.embedding(ops)
            parts.append(ops)
        for position, layer in enumerate(layers):
            parts.append(_layer_of_kind(kinds, builder, model, layer, position))
        mtp_layers = list(range(mtp_next, mtp_next + units[index].mtp))
        mtp_next += units[index].mtp
        for mtp_layer in mtp_layers:
            ops = LayerOps(mtp_layer)
            builder.mtp_projection(ops)
            parts.append(ops)
            parts.append(_layer_of_kind(kinds, builder, model, mtp_layer))
            head = LayerOps(mtp_layer)
            builder.head(head)
            parts.append(head)
        if units[index].loss:
            ops = LayerOps(model.layers + model.mtp_depth)
            builder.head(ops)
            parts.append(ops)
        dense, expert = stage_parameters(scenario, layers, first=units[index].embedding, last=units[index].loss,
                                         mtp_layers=mtp_layers)
        if scenario.parallelism.fsdp is not None and scenario.parallelism.pp == 1:  # with PP: once, in the tail
            parts = _fsdp_parts(scenario, parts)
        stages.append(StageWork(index, layers, *_chunks(index, parts), dense, expert))
    return stages


def unit_parameters(scenario: Scenario, part: LayerOps) -> tuple[float, float]:
    """(dense, routed-expert) parameters one GPU holds of one unit of ``build_stages``: the embedding (layer −1),
    a transformer or MTP block, an MTP projection or a head (told apart by their components)."""
    model, par = scenario.model, scenario.parallelism
    counts, h = parameter_counts(model), model.hidden
    names = {c.name for c in part.forward}
    if "EMBED" in names:
        return counts.per_layer["embedding"] / par.tp, 0.0
    if "HEAD" in names:  # an MTP module's head is the main head's (shared): no parameters of its own
        own = part.layer == model.layers + model.mtp_depth
        return ((counts.per_layer["head"] + h) / par.tp if own else 0.0), 0.0
    if not any(n in names for n in ("MLP", "DISPATCH")):  # an MTP projection
        return (2 * h * h + 2 * h) / par.tp, 0.0
    dense, expert = counts.per_layer["attention"], 0.0
    if is_moe_layer(model, part.layer):
        routed, other = moe_params(model)
        dense += other
        expert = routed / (par.ep * par.expert_tp)
    else:
        dense += counts.per_layer["dense_ffn"]
    return dense / par.tp, expert


def largest_unit_parameters(scenario: Scenario) -> float:
    """Parameters per GPU of the largest FSDP unit (what one gather holds unsharded)."""
    return max(sum(unit_parameters(scenario, part)) for stage in _unit_samples(scenario) for part in stage)


def _unit_samples(scenario: Scenario) -> list[list[LayerOps]]:
    """One unit of each kind (embedding, dense and MoE layer, MTP projection, head), ops built, for their sizes."""
    builder, model = LayerBuilder(scenario), scenario.model
    embed, head, proj = LayerOps(-1), LayerOps(model.layers + model.mtp_depth), LayerOps(model.layers)
    builder.embedding(embed)
    builder.head(head)
    builder.mtp_projection(proj)
    layers = [_transformer_layer(builder, model, 0)]
    if model.moe is not None and model.moe.first_dense_layers < model.layers:
        layers.append(_transformer_layer(builder, model, model.moe.first_dense_layers))
    return [[embed, head, proj] if model.mtp_depth else [embed, head], layers]


def _fsdp_parts(scenario: Scenario, parts: list[LayerOps]) -> list[LayerOps]:
    """Each unit with its FSDP collectives (:mod:`moesim.workloads.fsdp`); units of equal size share their ops."""
    from moesim.workloads.fsdp import fsdp_ops, with_fsdp

    shared: dict[tuple[float, float], dict] = {}
    out = []
    for part in parts:
        size = unit_parameters(scenario, part)
        if not any(size):
            out.append(part)
            continue
        ops = shared.get(size)
        if ops is None:
            ops = shared[size] = fsdp_ops(scenario, *size)
        out.append(with_fsdp(part, ops))
    return out


def moe_layer(scenario: Scenario, what: str) -> LayerOps:
    """One MoE layer of ``scenario`` (attention block and MoE block), F, B and W: what a profiler trace of MoE
    layers is compared with. ``what`` names the caller in the error for a dense model."""
    if scenario.model.moe is None:
        raise ScenarioError(f"{what}: the trace's layers are MoE layers; the scenario's model has no moe")
    return _transformer_layer(LayerBuilder(scenario), scenario.model, scenario.model.moe.first_dense_layers)


def _layer_of_kind(kinds: dict[tuple, LayerOps], builder: LayerBuilder, model: Model, layer: int,
                   position: int | None = None) -> LayerOps:
    """Transformer layer ``layer``: the first layer of its kind (dense or MoE, sliding-window or full attention)
    built, later ones its components renumbered, sharing its (frozen) ops and so their prices (moesim.simulator.pricing
    caches by op). ``position``: its place in its stage (None: an MTP layer), for ``training.recompute.layers``."""
    full = _recomputed_fully(builder, position)
    moe = (is_moe_layer(model, layer), model.attention.slides(layer, model.layers), full)
    first = kinds.get(moe)
    if first is None:
        first = kinds[moe] = _transformer_layer(builder, model, layer, full)
        return first
    ops = LayerOps(layer, saved_bytes=first.saved_bytes)
    for mine, theirs in ((ops.forward, first.forward), (ops.backward, first.backward), (ops.weight, first.weight)):
        mine.extend(Component(c.name, layer, c.phase, list(c.ops)) for c in theirs)
    return ops


def _recomputed_fully(builder: LayerBuilder, position: int | None) -> bool:
    """Full recomputation (the flag or the module) of the layer at ``position`` in its stage: every layer, or the
    first ``training.recompute.layers`` of each stage (Megatron's --recompute-method block)."""
    full = builder.recompute.full or "full" in builder.modules
    count = builder.recompute.layers
    return full and (count is None or (position is not None and position < count))


def _transformer_layer(builder: LayerBuilder, model: Model, layer: int, full: bool | None = None) -> LayerOps:
    ops = LayerOps(layer)
    builder.attention(ops)
    if is_moe_layer(model, layer):
        builder.moe(ops)
    else:
        builder.dense_ffn(ops)
    layer_input = builder.tokens // builder.tp * model.hidden * DTYPE_BYTES["bf16"]
    if _recomputed_fully(builder, 0) if full is None else full:
        _recompute_fully(ops, layer_input)
    elif "selective" in builder.modules:
        apply_selective(ops, layer_input)
    elif builder.modules:
        apply_modules(ops, builder.modules)
    return ops


def _recompute_fully(ops: LayerOps, input_bytes: float) -> None:
    """Full activation recomputation: keep only the layer's input, rerun its whole forward before its backward.

    The rerun ops are B-phase, flagged ``recompute`` and not counted as model FLOPs; partial recomputation
    inside the layer becomes moot and is dropped.
    """
    ops.saved_bytes = input_bytes
    backward = []
    for component in ops.backward:
        kept = [op for op in component.ops if not op.recompute]
        if kept:
            backward.append(Component(component.name, component.layer, component.phase, kept))
    # The backward list is reversed at execution, so the rerun goes last here, in reverse forward order.
    for component in reversed(ops.forward):
        rerun = [replace(op, phase=Phase.B, recompute=True, model_flops=0.0, model_flops_noncausal=0.0)
                 for op in component.ops]
        backward.append(Component(component.name, component.layer, Phase.B, rerun[::-1]))
    ops.backward = backward


def _chunks(stage: int, parts: list[LayerOps]) -> tuple[Chunk, Chunk, Chunk]:
    forward = [c for p in parts for c in p.forward]
    # Backward runs the layers in reverse, and each layer's components in reverse.
    backward = [c for p in reversed(parts) for c in reversed(p.backward)]
    weight = [c for p in reversed(parts) for c in reversed(p.weight)]
    saved = sum(p.saved_bytes for p in parts)
    return (Chunk(stage, Phase.F, forward, activation_bytes=saved),
            Chunk(stage, Phase.B, _merge(backward)), Chunk(stage, Phase.W, _merge(weight)))


def _merge(components: list[Component]) -> list[Component]:
    """Join neighbouring components of the same name and layer (a layer's W ops into one run)."""
    merged: list[Component] = []
    for c in components:
        if merged and merged[-1].name == c.name and merged[-1].layer == c.layer:
            merged[-1].ops.extend(c.ops)
        else:
            merged.append(Component(c.name, c.layer, c.phase, list(c.ops)))
    return merged


# --- parameters -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ParameterCounts:
    """Whole-model parameter counts (not sharded)."""

    total: float  # every parameter of the main model (MTP excluded)
    # Those one token computes with: attention, dense FFNs, top_k routed + shared experts per MoE layer, the
    # head; not the embedding table, which is a lookup (DeepSeek's 37B and V2-Lite's 2.4B are counted so).
    activated: float
    mtp: float  # unique parameters of the MTP modules (embedding and head are shared)
    per_layer: dict[str, float] = field(default_factory=dict)


def attention_params(model: Model) -> float:
    att, h = model.attention, model.hidden
    if att.kind == "mla":
        dqk = att.qk_nope_head_dim + att.qk_rope_head_dim
        q = (h * att.q_lora_rank + att.q_lora_rank * att.heads * dqk + att.q_lora_rank) if att.q_lora_rank \
            else h * att.heads * dqk
        kv = h * (att.kv_lora_rank + att.qk_rope_head_dim) + att.kv_lora_rank
        kv += att.kv_lora_rank * att.heads * (att.qk_nope_head_dim + att.v_head_dim)
        return q + kv + att.heads * att.v_head_dim * h + h  # + o_proj + attention norm
    kv_heads = att.kv_heads if att.kind == "gqa" else att.heads
    extra = (2 * att.head_dim if att.qk_norm else 0) + (att.heads if att.sinks else 0)  # q/k norms, sink logits
    return h * (att.heads + 2 * kv_heads) * att.head_dim + att.heads * att.head_dim * h + h + extra


def ffn_params(hidden: int, inter: int) -> float:
    return 3.0 * hidden * inter


def moe_params(model: Model) -> tuple[float, float]:
    """(routed-expert parameters, the rest of the MoE block: shared experts, gate, norm) of one MoE layer."""
    moe, h = model.moe, model.hidden
    routed = moe.routed_experts * ffn_params(h, moe.expert_intermediate)
    shared = moe.shared_experts * ffn_params(h, moe.shared_intermediate or moe.expert_intermediate)
    return routed, shared + moe.routed_experts * h + h


def parameter_counts(model: Model) -> ParameterCounts:
    h = model.hidden
    attn = attention_params(model)
    dense_ffn = ffn_params(h, model.ffn_intermediate) + h
    embed = model.vocab * h
    head = 0.0 if model.tied_embeddings else model.vocab * h
    total = embed + head + h  # + final norm
    activated = head + h
    per_layer = {"attention": attn, "dense_ffn": dense_ffn, "embedding": embed, "head": head}
    mtp = 0.0
    if model.moe is None:
        total += model.layers * (attn + dense_ffn)
        activated += model.layers * (attn + dense_ffn)
    else:
        routed, other = moe_params(model)
        one_expert = routed / model.moe.routed_experts
        dense_layers = model.moe.first_dense_layers
        moe_layers = model.layers - dense_layers
        total += model.layers * attn + dense_layers * dense_ffn + moe_layers * (routed + other)
        activated += model.layers * attn + dense_layers * dense_ffn
        activated += moe_layers * (model.moe.top_k * one_expert + other)
        per_layer.update(routed_experts=routed, moe_other=other, expert=one_expert)
        mtp = model.mtp_depth * (attn + routed + other + 2 * h * h + 2 * h)
    if model.moe is None and model.mtp_depth:
        mtp = model.mtp_depth * (attn + dense_ffn + 2 * h * h + 2 * h)
    return ParameterCounts(total, activated, mtp, per_layer)


def stage_parameters(scenario: Scenario, layers: list[int], first: bool, last: bool,
                     mtp_layers: list[int] | None = None) -> tuple[float, float]:
    """(dense, routed-expert) parameters one GPU of this stage holds: dense sharded by tp, experts by ep·expert_tp.
    ``first``: it holds the embedding; ``last``: the output head; ``mtp_layers``: the MTP layers it holds (None:
    all of them when ``last``, as without a pipeline layout)."""
    model, par = scenario.model, scenario.parallelism
    counts = parameter_counts(model)
    h = model.hidden
    dense = expert = 0.0
    if mtp_layers is None:
        mtp_layers = list(range(model.layers, model.layers + model.mtp_depth)) if last else []
    all_layers = list(layers) + list(mtp_layers)
    for layer in all_layers:
        dense += counts.per_layer["attention"]
        if is_moe_layer(model, layer):
            routed, other = moe_params(model)
            dense += other
            expert += routed / (par.ep * par.expert_tp)  # expert TP splits each expert's intermediate dimension
        else:
            dense += counts.per_layer["dense_ffn"]
        if layer >= model.layers:
            dense += 2 * h * h + 2 * h  # MTP projection and norms
    if first:
        dense += counts.per_layer["embedding"]
    if last:
        dense += counts.per_layer["head"] + h
    return dense / par.tp, expert
