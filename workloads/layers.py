"""Per-layer operations with exact FLOPs and bytes: MLA/GQA attention, dense FFN, MoE, embedding, head, MTP.

Every builder works for one GPU and one micro-batch of ``tokens`` tokens (micro_batch_size × seq_len / cp)
and appends its forward (F), input-backward (B) and weight-backward (W) ops to a :class:`LayerOps`.
A GEMM of an (m×k) input by a (k×n) weight costs 2·m·n·k FLOPs in each of F (m,n,k), B (dgrad: m,k,n)
and W (wgrad: k,n,m). Core attention counts causal pairs s(s+1)/2 per sequence; its backward executes 2.5×
the forward FLOPs (FlashAttention recomputes the scores) and is counted as 2× for MFU.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workloads.ops import DTYPE_BYTES, Comm, Component, Kind, Op, Pattern, Phase
from workloads.scenario import Scenario

BF16 = DTYPE_BYTES["bf16"]
FP32 = DTYPE_BYTES["fp32"]
FP8_SCALE_BYTES_PER_ELEMENT = 4 / 128  # DeepSeek-V3 TR §3.3: one fp32 scale per 1×128 activation tile


def element_bytes(dtype: str) -> float:
    """Bytes per activation element moved, including FP8's per-128-channel scales."""
    return DTYPE_BYTES[dtype] + (FP8_SCALE_BYTES_PER_ELEMENT if dtype == "fp8" else 0.0)


@dataclass
class LayerOps:
    """The F, B and W components of one layer (or pipeline end), plus the bytes F keeps for B."""

    layer: int
    forward: list[Component] = field(default_factory=list)
    backward: list[Component] = field(default_factory=list)  # in execution order
    weight: list[Component] = field(default_factory=list)
    saved_bytes: float = 0.0

    def _component(self, phase: Phase, name: str) -> Component:
        target = {Phase.F: self.forward, Phase.B: self.backward, Phase.W: self.weight}[phase]
        if not target or target[-1].name != name:
            target.append(Component(name, self.layer, phase))
        return target[-1]

    def add(self, component: str, op: Op) -> None:
        self._component(op.phase, component).ops.append(op)


class LayerBuilder:
    """Builds the ops of each layer kind for one scenario (shapes divided by tp, tokens by cp)."""

    def __init__(self, scenario: Scenario):
        self.s = scenario
        par, model = scenario.parallelism, scenario.model
        self.tokens = par.micro_batch_size * par.seq_len // par.cp
        self.tp = par.tp
        self.h = model.hidden
        self.prec = scenario.training.precision
        self.recompute = scenario.training.recompute

    # --- primitives -------------------------------------------------------------------------------------
    def gemm(self, out: LayerOps, component: str, name: str, m: int, n: int, k: int, dtype: str,
             recompute: bool = False, groups: int = 1, gathered_input: bool = False) -> None:
        """A Linear (or grouped Linear with ``groups`` experts of m tokens each): F, B (dgrad), W (wgrad).

        ``gathered_input``: the input was all-gathered over tensor parallelism (sequence parallelism), so only
        this rank's 1/tp slice is kept for backward and gathered again there (Megatron-LM's sequence parallel).
        """
        b = DTYPE_BYTES[dtype]
        kind = Kind.GROUPED_GEMM if groups > 1 else Kind.GEMM
        flops = 2.0 * groups * m * n * k

        def op(phase, shape, bytes_, rec=False, counted=True):
            shape = (groups, *shape) if groups > 1 else shape
            mf = flops if counted else 0.0
            return Op(f"{name}.{phase.value}", kind, phase, component, dtype, flops, bytes_, shape,
                      mf, mf, recompute=rec)

        fwd_bytes = groups * (m * k * b + k * n * b + m * n * BF16)
        out.add(component, op(Phase.F, (m, n, k), fwd_bytes))
        if recompute:
            out.add(component, op(Phase.B, (m, n, k), fwd_bytes, rec=True, counted=False))
        else:
            out.saved_bytes += groups * m * k * b / (self.tp if gathered_input else 1)
        out.add(component, op(Phase.B, (m, k, n), groups * (m * n * b + k * n * b + m * k * BF16)))
        out.add(component, op(Phase.W, (k, n, m), groups * (m * k * b + m * n * b + k * n * FP32)))

    def elementwise(self, out: LayerOps, component: str, name: str, bytes_fwd: float,
                    recompute: bool = False, flops_fwd: float = 0.0, saves: float = 0.0) -> None:
        """A memory-bound kernel; its backward moves about twice the bytes (grad in, input in, grad out)."""
        out.add(component, Op(f"{name}.F", Kind.ELEMENTWISE, Phase.F, component, "bf16", flops_fwd, bytes_fwd))
        if recompute:
            out.add(component, Op(f"{name}.F", Kind.ELEMENTWISE, Phase.B, component, "bf16", flops_fwd,
                                  bytes_fwd, recompute=True))
        else:
            out.saved_bytes += saves
        out.add(component, Op(f"{name}.B", Kind.ELEMENTWISE, Phase.B, component, "bf16", 2 * flops_fwd,
                              2 * bytes_fwd))

    def norm(self, out: LayerOps, component: str, name: str, width: int, quant_to: str = "bf16") -> None:
        """RMSNorm over ``width`` channels (read bf16, write bf16 or fp8 with scales)."""
        t = self.tokens // self.tp if width == self.h else self.tokens
        self.elementwise(out, component, name, t * width * (BF16 + element_bytes(quant_to)),
                         recompute=self.recompute.norm, flops_fwd=4.0 * t * width)

    def comm(self, out: LayerOps, component: str, name: str, phase: Phase, comm: Comm, dtype: str) -> None:
        out.add(component, Op(f"{name}.{phase.value}", Kind.COMM, phase, component, dtype, comm=comm))

    # --- attention --------------------------------------------------------------------------------------
    def attention(self, out: LayerOps) -> None:
        att, t, h, tp = self.s.model.attention, self.tokens, self.h, self.tp
        heads = att.heads // tp
        pdt = self.prec.attention_proj
        self.norm(out, "ATTN", "attn_norm", h, quant_to=pdt)
        if att.kind == "mla":
            dqk, dv = att.qk_nope_head_dim + att.qk_rope_head_dim, att.v_head_dim
            # q_a and kv_a share their input: one fused GEMM, as in DeepGEMM's 2112×7168 shape.
            q_in = att.q_lora_rank or 0
            self.gemm(out, "ATTN", "qkv_a", t, q_in + att.kv_lora_rank + att.qk_rope_head_dim, h, pdt,
                      gathered_input=True)
            up_recompute = self.recompute.mla_up_proj
            if att.q_lora_rank:
                self.norm(out, "ATTN", "q_norm", att.q_lora_rank, quant_to=pdt)
                self.gemm(out, "ATTN", "q_b", t, heads * dqk, att.q_lora_rank, pdt, recompute=up_recompute)
            else:
                self.gemm(out, "ATTN", "q", t, heads * dqk, h, pdt, gathered_input=True)
            self.norm(out, "ATTN", "kv_norm", att.kv_lora_rank, quant_to=pdt)
            self.gemm(out, "ATTN", "kv_b", t, heads * (att.qk_nope_head_dim + dv), att.kv_lora_rank, pdt,
                      recompute=up_recompute)
            kv_heads = heads
        else:
            dqk = dv = att.head_dim
            kv_heads = (att.kv_heads or att.heads) // tp if att.kind == "gqa" else heads
            kv_heads = max(kv_heads, 1)
            self.gemm(out, "ATTN", "qkv", t, (heads + 2 * kv_heads) * dqk, h, pdt, gathered_input=True)
        self.elementwise(out, "ATTN", "rope", t * heads * dqk * BF16 * 2, saves=0.0)
        self.core_attention(out, heads, kv_heads, dqk, dv)
        self.gemm(out, "ATTN", "o_proj", t, h, heads * dv, pdt)
        if tp > 1:
            self.tp_comm(out, "ATTN_TP")
        self.elementwise(out, "ATTN", "residual", t // tp * h * BF16 * 3)

    def core_attention(self, out: LayerOps, heads: int, kv_heads: int, dqk: int, dv: int) -> None:
        par = self.s.parallelism
        s = par.seq_len
        pairs_causal = s * (s + 1) / 2 / par.cp  # zig-zag context parallelism balances the triangle
        pairs_full = s * s / par.cp
        per_pair = 2.0 * heads * (dqk + dv) * par.micro_batch_size
        f_causal, f_full = per_pair * pairs_causal, per_pair * pairs_full
        t = self.tokens
        io = t * (heads * dqk + kv_heads * (dqk + dv) + heads * dv) * BF16
        dt = self.prec.attention_core
        shape = (par.micro_batch_size, heads, s, dqk, dv)
        out.add("ATTN", Op("core_attn.F", Kind.ATTENTION, Phase.F, "ATTN", dt, f_causal, io, shape,
                           f_causal, f_full))
        if self.recompute.mla_up_proj and self.s.model.attention.kind == "mla":
            out.saved_bytes += t * heads * dv * BF16  # output kept; q, k, v rebuilt from latents
        else:
            out.saved_bytes += io
        out.add("ATTN", Op("core_attn.B", Kind.ATTENTION, Phase.B, "ATTN", dt, 2.5 * f_causal, 2 * io, shape,
                           2 * f_causal, 2 * f_full))

    def tp_comm(self, out: LayerOps, component: str) -> None:
        """Tensor-parallel all-reduce of the layer output (bf16), in F and again in B."""
        nbytes = self.tokens * self.h * BF16
        for phase in (Phase.F, Phase.B):
            self.comm(out, component, component.lower(), phase, Comm(Pattern.ALL_REDUCE, "tp", nbytes), "bf16")

    # --- feed-forward -----------------------------------------------------------------------------------
    def swiglu_mlp(self, out: LayerOps, component: str, name: str, m: int, inter: int, dtype: str,
                   groups: int = 1, gathered_input: bool = False) -> None:
        """gate+up (fused, 2·inter wide), SwiGLU, down: the FFN of a dense layer, an expert or a shared expert."""
        h = self.h
        self.gemm(out, component, f"{name}.up", m, 2 * inter, h, dtype, groups=groups, gathered_input=gathered_input)
        swiglu_bytes = groups * m * inter * (2 * BF16 + element_bytes(dtype))
        self.elementwise(out, component, f"{name}.swiglu", swiglu_bytes, recompute=self.recompute.swiglu,
                         flops_fwd=4.0 * groups * m * inter)
        self.gemm(out, component, f"{name}.down", m, h, inter, dtype, recompute=False, groups=groups)

    def dense_ffn(self, out: LayerOps) -> None:
        self.norm(out, "MLP", "mlp_norm", self.h, quant_to=self.prec.dense_mlp)
        self.swiglu_mlp(out, "MLP", "ffn", self.tokens, self.s.model.ffn_intermediate // self.tp,
                        self.prec.dense_mlp, gathered_input=True)
        if self.tp > 1:
            self.tp_comm(out, "MLP_TP")
        self.elementwise(out, "MLP", "residual", self.tokens // self.tp * self.h * BF16 * 3)

    def moe(self, out: LayerOps) -> None:
        """Gate, DISPATCH, routed experts as grouped GEMMs, shared experts, COMBINE (EP over ``ep`` GPUs)."""
        moe, par, h, tr = self.s.model.moe, self.s.parallelism, self.h, self.s.training
        t = self.tokens // self.tp  # with tp > 1 each TP rank routes its sequence-parallel slice
        self.norm(out, "ATTN", "mlp_norm", h, quant_to=tr.dispatch_dtype)
        self.gemm(out, "ATTN", "gate", t, moe.routed_experts, h, self.prec.gate)
        self.elementwise(out, "ATTN", "topk", t * moe.routed_experts * FP32 * 2)
        d_bytes, c_bytes = element_bytes(tr.dispatch_dtype), element_bytes(tr.combine_dtype)
        dispatch = Comm(Pattern.EP_DISPATCH, "ep", t * moe.top_k * h * d_bytes, t, h, moe.top_k, d_bytes)
        combine = Comm(Pattern.EP_COMBINE, "ep", t * moe.top_k * h * c_bytes, t, h, moe.top_k, c_bytes)
        # Backward mirrors forward: combine's gradient is dispatched out, dispatch's gradient combined back,
        # both in the combine dtype (TR §3.3 keeps combine BF16 forward and backward).
        bwd_dispatch = Comm(Pattern.EP_DISPATCH, "ep", t * moe.top_k * h * c_bytes, t, h, moe.top_k, c_bytes)
        self.comm(out, "DISPATCH", "dispatch", Phase.F, dispatch, tr.dispatch_dtype)
        self.comm(out, "DISPATCH", "dispatch", Phase.B, combine, tr.combine_dtype)
        local_experts = moe.routed_experts // par.ep
        per_expert = max(1, round(t * moe.top_k * par.ep / moe.routed_experts))
        self.swiglu_mlp(out, "MLP", "experts", per_expert, moe.expert_intermediate, self.prec.expert,
                        groups=local_experts)
        if moe.shared_experts:
            inter = (moe.shared_intermediate or moe.expert_intermediate) * moe.shared_experts
            self.swiglu_mlp(out, "MLP", "shared", t, inter, self.prec.expert)
        self.comm(out, "COMBINE", "combine", Phase.F, combine, tr.combine_dtype)
        # The top-k weighted sum happens inside the combine kernel (DeepEP), so it has no op of its own.
        self.comm(out, "COMBINE", "combine", Phase.B, bwd_dispatch, tr.combine_dtype)

    # --- pipeline ends ----------------------------------------------------------------------------------
    def embedding(self, out: LayerOps) -> None:
        t, h = self.tokens, self.h
        out.add("EMBED", Op("embed.F", Kind.ELEMENTWISE, Phase.F, "EMBED", "bf16", 0.0, t * h * BF16 * 2))
        out.add("EMBED", Op("embed.W", Kind.ELEMENTWISE, Phase.W, "EMBED", "fp32", 0.0, t * h * (BF16 + 2 * FP32)))

    def head(self, out: LayerOps) -> None:
        t, h, vocab = self.tokens, self.h, self.s.model.vocab // self.tp
        self.norm(out, "HEAD", "final_norm", h)
        self.gemm(out, "HEAD", "head", t, vocab, h, self.prec.head)
        self.elementwise(out, "HEAD", "cross_entropy", t * vocab * FP32 * 2)

    def mtp_projection(self, out: LayerOps) -> None:
        """An MTP module's entry: two RMSNorms and the 2h→h projection (its block and head come after)."""
        self.norm(out, "ATTN", "mtp_norm_h", self.h)
        self.norm(out, "ATTN", "mtp_norm_e", self.h)
        self.gemm(out, "ATTN", "mtp_proj", self.tokens, self.h, 2 * self.h, "bf16")
