"""The MoE block after the router, by token dispatcher (``training.dispatcher``), with expert tensor parallelism
(``parallelism.expert_tp``) and token dropping (``training.capacity_factor``).

Dispatchers, as Megatron-Core runs them (megatron/core/transformer/moe/token_dispatcher.py):

- ``deepep`` (``--moe-enable-deepep``) and ``hybridep`` (the flex dispatcher's HybridEP backend): a token crosses
  InfiniBand once per target node and is forwarded over NVLink (``Pattern.EP_DISPATCH``/``EP_COMBINE``), after a
  notify kernel that exchanges the token counts; the received rows are permuted to expert order in ``MLP``.
  HybridEP has no published kernel measurement: it is priced at DeepEP's measured EP rates, with DeepEP's kernels.
- ``alltoall`` (MoEAlltoAllTokenDispatcher): the counts are all-gathered over EP and copied to the host (a host
  sync before the dispatch, ``training.dispatch_host_sync``); tokens are permuted locally into per-expert order,
  sent by a NCCL all-to-all (one copy per (token, expert) pick, no per-node deduplication), sorted from
  (source, expert) into expert order, and the reverse after the experts: sort back, all-to-all, unpermute (the
  top-k weighted sum).
- ``allgather`` (MoEAllGatherTokenDispatcher): every EP member all-gathers all tokens of its group (bytes grow
  with EP) and its routing map and probabilities, keeps the rows of its own experts (a local mask and permute),
  and after the experts scatter-adds its outputs into the gathered buffer, which a reduce-scatter returns. The
  grouped GEMM reads its per-expert counts on the host (TEGroupedMLP's ``tokens_per_expert.tolist()``).

Expert tensor parallelism: after the dispatch the ``expert_tp`` GPUs of an expert all-gather their peers' rows
(Megatron's ``gather_from_sequence_parallel_region`` over the expert-TP group) and each runs every row on
1/expert_tp of the intermediate dimension; before the combine they reduce-scatter the outputs.

Capacity: an expert takes at most ``capacity_factor`` × its balanced share of the picks (Megatron's
``get_capacity``); the picks over it are dropped before dispatch (``--moe-token-drop-policy probs``), so the bytes
sent and the expert rows shrink by the kept fraction of the routing model's picks
(:meth:`moesim.workloads.ep_load.EpLoad.capped`).
"""

from __future__ import annotations

from moesim.workloads.ep_load import scenario_ep_load
from moesim.workloads.layers import BF16, FP32, INDEX_BYTES, QUANT_BYTES, element_bytes
from moesim.workloads.ops import Comm, OpClass, Pattern, Phase


def kept_fraction(scenario) -> float:
    """Fraction of routed picks an expert keeps under ``training.capacity_factor`` (1.0 when unset)."""
    cf = scenario.training.capacity_factor
    if cf is None or scenario.model.moe is None:
        return 1.0
    return scenario_ep_load(scenario).capped(cf)[0]


def build_moe_block(b, out, t: int) -> None:
    """The MoE block of LayerBuilder ``b`` after its router, for ``t`` tokens routed by this GPU."""
    s = b.s
    moe, par, tr, h = s.model.moe, s.parallelism, s.training, b.h
    kind, etp, ep, k, experts = tr.dispatcher, par.expert_tp, par.ep, moe.top_k, moe.routed_experts
    kept = kept_fraction(s)
    d_bytes, c_bytes = element_bytes(tr.dispatch_dtype), element_bytes(tr.combine_dtype)
    local_experts = experts // ep
    sent = max(1, round(t * kept))  # tokens this GPU sends (DeepEP's per-token count, drops spread evenly)
    picks = t * k * kept  # (token, expert) picks this GPU sends
    # Rows per local expert: the picks of this EP group for it, times the expert-TP peers whose rows it gathers.
    per_expert_ep = max(1, round(t * k * ep * kept / experts))
    per_expert = per_expert_ep * etp
    rows_ep, rows = local_experts * per_expert_ep, local_experts * per_expert
    sync = tr.dispatch_host_sync

    if tr.dispatch_dtype == "fp8":
        b.kernel(out, "ATTN", "dispatch.quant", Phase.F, OpClass.QUANT, t * h * QUANT_BYTES)
    if kind == "alltoall":
        # Local permute into per-expert order before the all-to-all; its backward un-permutes the gradient.
        for phase in (Phase.F, Phase.B):
            b.kernel(out, "ATTN", "dispatch.permute", phase, OpClass.PERMUTE, (t + picks) * h * d_bytes)

    # DISPATCH (F), and in B the gradient of the dispatch combined back.
    if kind in ("deepep", "hybridep"):
        b.ep_notify(out, "DISPATCH", Phase.F)
        b.comm(out, "DISPATCH", "dispatch", Phase.F,
               Comm(Pattern.EP_DISPATCH, "ep", sent * k * h * d_bytes, sent, h, k, d_bytes), tr.dispatch_dtype)
        b.ep_notify(out, "DISPATCH", Phase.B)
        _etp_reduce_scatter(b, out, "DISPATCH", Phase.B, etp * rows_ep * h * BF16)
        b.comm(out, "DISPATCH", "dispatch", Phase.B,
               Comm(Pattern.EP_COMBINE, "ep", sent * k * h * c_bytes, sent, h, k, c_bytes), tr.combine_dtype)
    elif kind == "alltoall":
        counts = Comm(Pattern.ALL_GATHER, "ep", ep * experts * INDEX_BYTES)
        b.comm_op(out, "DISPATCH", "dispatch_counts", Phase.F, counts, OpClass.EP_NOTIFY, sync)
        b.comm(out, "DISPATCH", "dispatch", Phase.F, Comm(Pattern.ALL_TO_ALL, "ep", picks * h * d_bytes),
               tr.dispatch_dtype)
        _etp_reduce_scatter(b, out, "DISPATCH", Phase.B, etp * rows_ep * h * BF16)
        b.comm(out, "DISPATCH", "dispatch", Phase.B, Comm(Pattern.ALL_TO_ALL, "ep", picks * h * c_bytes),
               tr.combine_dtype)
    else:  # allgather: every member gathers the group's tokens, routing map (bool) and probabilities (fp32)
        routing = Comm(Pattern.ALL_GATHER, "ep", ep * t * experts * (1 + FP32))
        b.comm_op(out, "DISPATCH", "dispatch_routing", Phase.F, routing, OpClass.EP_NOTIFY, False)
        b.comm(out, "DISPATCH", "dispatch", Phase.F, Comm(Pattern.ALL_GATHER, "ep", ep * t * h * d_bytes),
               tr.dispatch_dtype)
        _etp_reduce_scatter(b, out, "DISPATCH", Phase.B, etp * rows_ep * h * BF16)
        b.comm(out, "DISPATCH", "dispatch", Phase.B, Comm(Pattern.REDUCE_SCATTER, "ep", ep * t * h * c_bytes),
               tr.combine_dtype)
    _etp_all_gather(b, out, "DISPATCH", Phase.F, etp * rows_ep * h * d_bytes)

    # Received rows → expert-contiguous rows, the experts, and back.
    for phase in (Phase.F, Phase.B):
        # allgather: the local mask and per-expert counts over all gathered tokens (read on the host in F).
        index_rows = ep * t * k if kind == "allgather" else rows
        b.kernel_op(out, "MLP", "experts.index", phase, OpClass.INDEX, 2 * index_rows * INDEX_BYTES,
                    kind == "allgather" and phase is Phase.F and sync)
        if kind != "alltoall" or local_experts > 1:  # alltoall with one local expert needs no sort
            b.kernel(out, "MLP", "experts.permute", phase, OpClass.PERMUTE, 2 * rows * h * d_bytes)
    b.swiglu_mlp(out, "MLP", "experts", per_expert, moe.expert_intermediate // etp, b.prec.expert,
                 groups=local_experts, input_fp8=tr.dispatch_dtype == "fp8")
    for phase in (Phase.F, Phase.B):
        if kind == "alltoall":
            if local_experts > 1:
                b.kernel(out, "MLP", "experts.unsort", phase, OpClass.PERMUTE, 2 * rows * h * BF16)
        elif kind == "allgather":  # scatter-add into the gathered buffer
            b.kernel(out, "MLP", "experts.unpermute", phase, OpClass.UNPERMUTE, (rows + ep * t) * h * BF16)
        else:
            b.kernel(out, "MLP", "experts.unpermute", phase, OpClass.UNPERMUTE, (rows + t) * h * BF16)
    if moe.shared_experts:
        inter = (moe.shared_intermediate or moe.expert_intermediate) * moe.shared_experts
        b.swiglu_mlp(out, "MLP", "shared", t, inter, b.prec.expert)

    # COMBINE (F), and in B the gradient of the combine dispatched out.
    if kind in ("deepep", "hybridep"):
        b.ep_notify(out, "COMBINE", Phase.F)
        _etp_reduce_scatter(b, out, "COMBINE", Phase.F, etp * rows_ep * h * BF16)
        b.comm(out, "COMBINE", "combine", Phase.F,
               Comm(Pattern.EP_COMBINE, "ep", sent * k * h * c_bytes, sent, h, k, c_bytes), tr.combine_dtype)
        if tr.dispatch_dtype == "fp8":
            b.kernel(out, "COMBINE", "combine_grad.quant", Phase.B, OpClass.QUANT, t * h * QUANT_BYTES)
        b.ep_notify(out, "COMBINE", Phase.B)
        b.comm(out, "COMBINE", "combine", Phase.B,
               Comm(Pattern.EP_DISPATCH, "ep", sent * k * h * d_bytes, sent, h, k, d_bytes), tr.dispatch_dtype)
    else:
        if kind == "alltoall":
            fwd = Comm(Pattern.ALL_TO_ALL, "ep", picks * h * c_bytes)
            bwd = Comm(Pattern.ALL_TO_ALL, "ep", picks * h * d_bytes)
        else:
            fwd = Comm(Pattern.REDUCE_SCATTER, "ep", ep * t * h * c_bytes)
            bwd = Comm(Pattern.ALL_GATHER, "ep", ep * t * h * d_bytes)
        _etp_reduce_scatter(b, out, "COMBINE", Phase.F, etp * rows_ep * h * BF16)
        b.comm(out, "COMBINE", "combine", Phase.F, fwd, tr.combine_dtype)
        if tr.dispatch_dtype == "fp8":
            b.kernel(out, "COMBINE", "combine_grad.quant", Phase.B, OpClass.QUANT, t * h * QUANT_BYTES)
        b.comm(out, "COMBINE", "combine", Phase.B, bwd, tr.dispatch_dtype)
    _etp_all_gather(b, out, "COMBINE", Phase.B, etp * rows_ep * h * d_bytes)
    if kind == "alltoall":
        # The top-k weighted sum of the received rows back into tokens (DeepEP does it inside its combine).
        for phase in (Phase.F, Phase.B):
            b.kernel(out, "MLP", "combine.unpermute", phase, OpClass.UNPERMUTE, (picks + t) * h * BF16)


def _etp_all_gather(b, out, component: str, phase: Phase, gathered_bytes: float) -> None:
    """The expert-TP all-gather of the received rows (``gathered_bytes``: the gathered buffer)."""
    if b.s.parallelism.expert_tp > 1:
        b.comm(out, component, "expert_tp_gather", phase, Comm(Pattern.ALL_GATHER, "etp", gathered_bytes), "bf16")


def _etp_reduce_scatter(b, out, component: str, phase: Phase, buffer_bytes: float) -> None:
    """The expert-TP reduce-scatter of the experts' outputs (``buffer_bytes``: the full buffer)."""
    if b.s.parallelism.expert_tp > 1:
        b.comm(out, component, "expert_tp_scatter", phase, Comm(Pattern.REDUCE_SCATTER, "etp", buffer_bytes), "bf16")
