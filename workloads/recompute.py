"""Recomputation by module (Megatron-Core) and by op (TorchTitan): which forward ops backward reruns, and what the
layer keeps from F until B instead.

Megatron-Core's ``--recompute-modules`` (``megatron/core/transformer/transformer_config.py``, recompute_modules)
come in two kinds:

- *normal checkpointing* (``core_attn``, ``mlp``, ``moe``, ``shared_experts``): the module keeps only its input
  and reruns its whole forward (collectives included: ``moe`` dispatches and combines again) before its backward.
- *output-discarding* (``layernorm``, ``moe_act``; ``mla_up_proj`` is the builder's own, as DeepSeek's flag): the
  module's output is freed once its consumer has used it, and the module reruns to rebuild it for the consumer's
  backward. ``layernorm`` is input_layernorm and pre_mlp_layernorm: the copies their GEMMs kept (and, in FP8, the
  casts those GEMMs made of them) go; ``moe_act`` the experts' SwiGLU, whose output the down-projection kept.

TorchTitan's per-op policy (``selective``, ``torchtitan/distributed/activation_checkpoint.py``, op SAC): in a
checkpointed block the outputs of the ops in its save list are kept (``aten.mm``, scaled-dot-product/flash
attention, ``reduce_scatter``, ``max``), except every second ``mm`` in forward order; every other op reruns in
backward: norms, RoPE, activations, casts, every second matmul, and the grouped expert GEMMs (``_grouped_mm`` is
not in the list). A fused GEMM of the op IR counts as the matmuls TorchTitan's modules run (``qkv``: wq, wk, wv;
a SwiGLU ``up``: w1, w3); a skipped matmul reruns as a GEMM of its own width. Communication is not replayed here
(stated: the dispatch/combine outputs are taken as kept).

``full`` (and the ``full`` flag) keeps only the layer's input and reruns the whole forward (``moesim.workloads.model``).
Rerun ops are B-phase, flagged ``recompute`` and not counted as model FLOPs; they run before the layer's backward.
"""

from __future__ import annotations

from dataclasses import replace

from moesim.workloads.layers import BF16, LayerOps
from moesim.workloads.ops import DTYPE_BYTES, Component, Kind, Op, Phase

# Normal checkpointing: the op names each module's forward runs (prefixes) and the size (LayerOps.sizes) it keeps.
REGIONS = {
    "core_attn": (("core_attn",), "core_attn_in"),
    "mlp": (("mlp_norm", "ffn.", "mlp_tp"), "mlp_in"),  # a dense layer: TE fuses pre_mlp_layernorm into fc1
    "moe": (("gate", "router.", "dispatch", "experts.", "shared.", "combine"), "moe_in"),
    "shared_experts": (("shared.",), "shared_experts_in"),
}
# Under TorchTitan's policy: GEMMs whose input is a kept output (attention's, the dispatch's), and the matmuls whose
# outputs become attention's q, k, v.
KEPT_INPUTS = ("o_proj", "experts.up")
ATTENTION_INPUTS = ("qkv", "q", "q_b", "kv_b")
# Output-discarding: the producer rerun, and the consumers whose kept copy of its output goes.
DISCARDS = {
    "layernorm": {"attn_norm": ("qkv_a", "qkv", "q"), "mlp_norm": ("gate", "ffn.up", "shared.up")},
    "moe_act": {"experts.swiglu": ("experts.down",)},
}


def base(op: Op) -> str:
    """An op's name without its phase: ``qkv_a.quant_in.F`` → ``qkv_a.quant_in``."""
    return op.name.rsplit(".", 1)[0]


def _matches(name: str, prefixes) -> bool:
    """``name`` is one of ``prefixes`` or an op of it (``dispatch`` → ``dispatch_notify``, ``dispatch.quant``);
    a prefix ending in ``.`` matches what starts with it."""
    return any(name.startswith(p) if p.endswith(".") else
               name == p or name.startswith(p + ".") or name.startswith(p + "_") for p in prefixes)


def _rerun(op: Op) -> Op:
    return replace(op, phase=Phase.B, recompute=True, model_flops=0.0, model_flops_noncausal=0.0)


def _append_reruns(ops: LayerOps, chosen) -> None:
    """Rerun the forward ops ``chosen(op)`` picks before the layer's backward (in forward order: the backward list
    is reversed at execution, so they go last here, components in reverse)."""
    rerun_names = {base(op) for c in ops.backward for op in c.ops if op.recompute}
    for component in reversed(ops.forward):
        rerun = [_rerun(op) for op in component.ops if chosen(op) and base(op) not in rerun_names]
        if rerun:
            ops.backward.append(Component(component.name, component.layer, Phase.B, rerun))


def _drop(ops: LayerOps, names) -> None:
    for name in names:
        ops.saved_bytes -= ops.saved.pop(name, 0.0)


def apply_modules(ops: LayerOps, modules: frozenset[str]) -> None:
    """Megatron-Core's modules (see the module docstring) on one built layer, in place: output-discarding ones
    first, so a checkpointed module whose input they freed keeps it itself."""
    for module in sorted(modules & DISCARDS.keys()):
        for producer, consumers in DISCARDS[module].items():
            present = [c for c in consumers if c in ops.saved]
            if not present and not any(base(op) == producer for c in ops.forward for op in c.ops):
                continue
            _drop(ops, present)
            casts = tuple(f"{c}.quant_in" for c in present) + tuple(f"{c}.input" for c in present)
            _append_reruns(ops, lambda op, p=producer, q=casts: base(op) == p or _matches(base(op), q))
    for module in sorted(modules & REGIONS.keys()):
        prefixes, size = REGIONS[module]
        if size not in ops.sizes:
            continue  # not this layer's kind (mlp on an MoE layer, moe on a dense one)
        if module == "shared_experts" and "moe" in modules:
            continue
        _append_reruns(ops, lambda op, p=prefixes: _matches(base(op), p))
        _drop(ops, [name for name in ops.saved if _matches(name, prefixes)])
        keep = ops.sizes[size]
        if module == "shared_experts" and "gate" in ops.saved:
            keep = 0.0  # its input is the gate GEMM's kept input, one tensor
        ops.saved_bytes += keep


def apply_selective(ops: LayerOps, layer_input_bytes: float) -> None:
    """TorchTitan's per-op policy on one built layer, in place (see the module docstring).

    Memory is counted by the same rules as without recomputation (GEMM inputs, attention's q, k, v and output):
    the layer's input, the inputs of GEMMs whose producer is kept (``o_proj``: the attention output;
    ``experts.up``: the dispatched tokens), the attention output, and the q, k, v whose matmul output is kept."""
    saved = layer_input_bytes + sum(ops.saved.get(name, 0.0) for name in KEPT_INPUTS)
    count = 0
    reruns: list[list[Op]] = []
    for component in ops.forward:
        rerun = []
        for op in component.ops:
            if op.kind is Kind.ATTENTION:
                saved += ops.sizes["core_attn_out"]
            if op.kind in (Kind.COMM, Kind.ATTENTION):
                continue
            if op.kind is not Kind.GEMM:
                rerun.append(_rerun(op))
                continue
            m, n, k = op.shape
            b = DTYPE_BYTES[op.dtype]
            for width in ops.mm_parts.get(base(op)) or (n,):
                count += 1
                if count % 2:
                    saved += m * width * BF16 if base(op) in ATTENTION_INPUTS else 0.0
                else:
                    rerun.append(replace(op, name=f"{base(op)}.mm{count}.B", phase=Phase.B, recompute=True,
                                         flops=2.0 * m * width * k, bytes=m * k * b + k * width * b + m * width * BF16,
                                         shape=(m, width, k), model_flops=0.0, model_flops_noncausal=0.0))
        reruns.append(rerun)
    # The flags' partial reruns are moot, as under full recomputation.
    backward = [Component(c.name, c.layer, c.phase, [op for op in c.ops if not op.recompute]) for c in ops.backward]
    ops.backward = [c for c in backward if c.ops]
    for component, rerun in reversed(list(zip(ops.forward, reruns))):
        if rerun:
            ops.backward.append(Component(component.name, component.layer, Phase.B, rerun))
    ops.saved_bytes = saved
    ops.saved = {}
