"""Per-layer operations with exact FLOPs and bytes: MLA/GQA attention, dense FFN, MoE, embedding, head, MTP.

Every builder works for one GPU and one micro-batch of ``tokens`` tokens (micro_batch_size × seq_len / cp)
and appends its forward (F), input-backward (B) and weight-backward (W) ops to a :class:`LayerOps`.
A GEMM of an (m×k) input by a (k×n) weight costs 2·m·n·k FLOPs in each of F (m,n,k), B (dgrad: m,k,n)
and W (wgrad: k,n,m). Core attention counts causal pairs s(s+1)/2 per sequence; its backward executes 2.5×
the forward FLOPs (FlashAttention recomputes the scores) and is counted as 2× for MFU.

The layers are kernel-complete: besides GEMMs and attention they hold the small kernels a real FP8 MoE step
runs, class for class as DeepSeek's profiler trace shows them (see :class:`moesim.workloads.ops.OpClass`): an FP8
GEMM quantises its activation input in 1×128 tiles before the forward, its output gradient before the dgrad
(whose fp8 weight is transposed block-wise first), and both wgrad inputs in transposed 128×1 tiles; MoE layers
map, permute and un-permute tokens around the grouped GEMMs and DeepEP notifies before each dispatch and
combine; the router runs its top-k and a string of small kernels. That is the default FP8 recipe (``blockwise``);
the per-tensor and MX recipes run their own casts instead (:mod:`moesim.workloads.fp8`). Sliding-window layers count
their causal band (:mod:`moesim.workloads.attention`); module and per-op recomputation rework a built layer
(:mod:`moesim.workloads.recompute`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from moesim.workloads import fp8
from moesim.workloads.attention import causal_pairs, full_pairs
from moesim.workloads.ops import DTYPE_BYTES, Comm, Component, Kind, Op, OpClass, Pattern, Phase
from moesim.workloads.scenario import Scenario

BF16 = DTYPE_BYTES["bf16"]
FP32 = DTYPE_BYTES["fp32"]
FP8_SCALE_BYTES_PER_ELEMENT = 4 / 128  # DeepSeek-V3 TR §3.3: one fp32 scale per 1×128 activation tile
QUANT_BYTES = BF16 + 1 + FP8_SCALE_BYTES_PER_ELEMENT  # read bf16, write fp8 and its scales
INDEX_BYTES = 8  # int64 token/expert indices
# Small router kernels (scores, group masks, scatter, auxiliary statistics, bias update) each layer runs
# besides its two top-k kernels: counted in DeepSeek's profiler trace (profile-data train.json), attn(F) and
# attn(B) of every layer, between the gate GEMM and the dispatch cast.
ROUTER_SMALL_KERNELS = {Phase.F: 24, Phase.B: 25}


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
    # For recomputation (workloads/recompute.py): bytes saved per op name, named tensor sizes (a module's input),
    # and the matmuls a fused GEMM stands for (its output widths, e.g. qkv = q, k, v).
    saved: dict[str, float] = field(default_factory=dict)
    sizes: dict[str, float] = field(default_factory=dict)
    mm_parts: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def save(self, name: str, nbytes: float) -> None:
        """Keep ``nbytes`` from F until B for op ``name``."""
        self.saved_bytes += nbytes
        self.saved[name] = self.saved.get(name, 0.0) + nbytes

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
        self.modules = frozenset(self.recompute.modules)
        self.up_recompute = self.recompute.mla_up_proj or "mla_up_proj" in self.modules
        self.fp8_recipe = fp8.recipe(scenario.training)

    # --- primitives -------------------------------------------------------------------------------------
    def kernel(self, out: LayerOps, component: str, name: str, phase: Phase, op_class: OpClass,
               nbytes: float, flops: float = 0.0, recompute: bool = False) -> None:
        """One memory-bound kernel of class ``op_class`` moving ``nbytes`` of HBM."""
        out.add(component, Op(f"{name}.{phase.value}", Kind.ELEMENTWISE, phase, component, "bf16", flops, nbytes,
                              recompute=recompute, kernel=op_class))

    def fp8_quant(self, out: LayerOps, component: str, name: str, phase: Phase, elements: float,
                  recompute: bool = False) -> None:
        """bf16 → fp8 in 1×128 tiles, then the scales laid out for the GEMM's TMA loads (a second kernel)."""
        self.kernel(out, component, name, phase, OpClass.QUANT, elements * QUANT_BYTES, recompute=recompute)
        self.kernel(out, component, f"{name}_scales", phase, OpClass.QUANT,
                    2 * elements * FP8_SCALE_BYTES_PER_ELEMENT, recompute=recompute)

    def gemm(self, out: LayerOps, component: str, name: str, m: int, n: int, k: int, dtype: str,
             recompute: bool = False, groups: int = 1, gathered_input: bool = False,
             input_fp8: bool = False) -> None:
        """A Linear (or grouped Linear with ``groups`` experts of m tokens each): F, B (dgrad), W (wgrad).

        ``gathered_input``: the input was all-gathered over tensor parallelism (sequence parallelism), so only
        this rank's 1/tp slice is kept for backward and gathered again there (Megatron-LM's sequence parallel).
        In fp8 the GEMMs come with their quantisation kernels (DeepSeek-V3 TR §3.3): the input in 1×128 tiles
        before the forward (``input_fp8``: its producer already wrote fp8, as FP8 dispatch and the fused
        SwiGLU-cast do), the output gradient in 1×128 tiles and the weight's 128×128 blocks transposed before
        the dgrad, and input and output gradient in transposed 128×1 tiles before the wgrad.
        """
        if dtype == "fp8" and self.fp8_recipe != "blockwise":
            for cast in fp8.casts(self.fp8_recipe, groups * m, n, k, groups, input_fp8, recompute):
                self.kernel(out, component, f"{name}.{cast.name}", cast.phase, cast.op_class, cast.nbytes,
                            recompute=cast.recompute)
        elif dtype == "fp8":
            rows = groups * m
            if not input_fp8:
                self.fp8_quant(out, component, f"{name}.quant_in", Phase.F, rows * k)
                if recompute:
                    self.fp8_quant(out, component, f"{name}.quant_in", Phase.B, rows * k, recompute=True)
            self.fp8_quant(out, component, f"{name}.quant_grad", Phase.B, rows * n)
            self.kernel(out, component, f"{name}.weight_t", Phase.B, OpClass.WEIGHT_T, 2.0 * groups * n * k)
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
            out.save(name, groups * m * k * b / (self.tp if gathered_input else 1))
        out.add(component, op(Phase.B, (m, k, n), groups * (m * n * b + k * n * b + m * k * BF16)))
        if dtype == "fp8" and self.fp8_recipe == "blockwise":
            self.kernel(out, component, f"{name}.quant_t", Phase.W, OpClass.QUANT_T, groups * m * (k + n) * QUANT_BYTES)
        out.add(component, op(Phase.W, (k, n, m), groups * (m * k * b + m * n * b + k * n * FP32)))

    def elementwise(self, out: LayerOps, component: str, name: str, bytes_fwd: float,
                    recompute: bool = False, flops_fwd: float = 0.0, saves: float = 0.0,
                    op_class: OpClass = OpClass.ADD, bwd_class: OpClass | None = None) -> None:
        """A memory-bound kernel; its backward moves about twice the bytes (grad in, input in, grad out)."""
        self.kernel(out, component, name, Phase.F, op_class, bytes_fwd, flops_fwd)
        if recompute:
            self.kernel(out, component, name, Phase.B, op_class, bytes_fwd, flops_fwd, recompute=True)
        else:
            out.save(name, saves)
        out.add(component, Op(f"{name}.B", Kind.ELEMENTWISE, Phase.B, component, "bf16", 2 * flops_fwd,
                              2 * bytes_fwd, kernel=bwd_class or op_class))

    def norm(self, out: LayerOps, component: str, name: str, width: int) -> None:
        """RMSNorm over ``width`` channels (bf16 in and out; an FP8 consumer quantises on its own)."""
        t = self.tokens // self.tp if width == self.h else self.tokens
        self.elementwise(out, component, name, t * width * 2 * BF16, recompute=self.recompute.norm,
                         flops_fwd=4.0 * t * width, op_class=OpClass.NORM, bwd_class=OpClass.NORM_BWD)

    def comm(self, out: LayerOps, component: str, name: str, phase: Phase, comm: Comm, dtype: str) -> None:
        out.add(component, Op(f"{name}.{phase.value}", Kind.COMM, phase, component, dtype, comm=comm))

    def comm_op(self, out: LayerOps, component: str, name: str, phase: Phase, comm: Comm, op_class: OpClass,
                host_sync: bool) -> None:
        """A small communication of kernel class ``op_class`` (token counts, routing maps), in fp32; with
        ``host_sync`` the host waits for it (the counts copied to the host)."""
        out.add(component, Op(f"{name}.{phase.value}", Kind.COMM, phase, component, "fp32", comm=comm,
                              kernel=op_class, host_sync=host_sync))

    def kernel_op(self, out: LayerOps, component: str, name: str, phase: Phase, op_class: OpClass, nbytes: float,
                  host_sync: bool) -> None:
        """:meth:`kernel`, and with ``host_sync`` the host reads its result back (waits for it)."""
        out.add(component, Op(f"{name}.{phase.value}", Kind.ELEMENTWISE, phase, component, "bf16", 0.0, nbytes,
                              kernel=op_class, host_sync=host_sync))

    # --- attention ----------------------------------------------------------------------------------------
    def attention(self, out: LayerOps) -> None:
        att, t, h, tp = self.s.model.attention, self.tokens, self.h, self.tp
        heads = att.heads // tp
        pdt = self.prec.attention_proj
        self.norm(out, "ATTN", "attn_norm", h)
        if att.kind == "mla":
            dqk, dv, rope = att.qk_nope_head_dim + att.qk_rope_head_dim, att.v_head_dim, att.qk_rope_head_dim
            # q_a and kv_a share their input: one fused GEMM, as in DeepGEMM's 2112×7168 shape.
            q_in = att.q_lora_rank or 0
            self.gemm(out, "ATTN", "qkv_a", t, q_in + att.kv_lora_rank + att.qk_rope_head_dim, h, pdt,
                      gathered_input=True)
            out.mm_parts["qkv_a"] = (q_in, att.kv_lora_rank + att.qk_rope_head_dim) if q_in else ()
            up_recompute = self.up_recompute
            if att.q_lora_rank:
                self.norm(out, "ATTN", "q_norm", att.q_lora_rank)
                self.gemm(out, "ATTN", "q_b", t, heads * dqk, att.q_lora_rank, pdt, recompute=up_recompute)
            else:
                self.gemm(out, "ATTN", "q", t, heads * dqk, h, pdt, gathered_input=True)
            self.norm(out, "ATTN", "kv_norm", att.kv_lora_rank)
            self.gemm(out, "ATTN", "kv_b", t, heads * (att.qk_nope_head_dim + dv), att.kv_lora_rank, pdt,
                      recompute=up_recompute)
            kv_heads = heads
            # RoPE on q's and k's rotary parts, then q and k concatenated from their nope and rope parts (k's
            # rope part broadcast over heads): rebuilt in backward when the up-projections are recomputed.
            self.elementwise(out, "ATTN", "rope", (t * heads * rope + t * rope) * BF16 * 2, recompute=up_recompute,
                             op_class=OpClass.ROPE)
            self.elementwise(out, "ATTN", "qk_concat", 2 * t * heads * dqk * BF16 * 2, recompute=up_recompute)
        else:
            dqk = dv = att.head_dim
            kv_heads = (att.kv_heads or att.heads) // tp if att.kind == "gqa" else heads
            kv_heads = max(kv_heads, 1)
            self.gemm(out, "ATTN", "qkv", t, (heads + 2 * kv_heads) * dqk, h, pdt, gathered_input=True)
            out.mm_parts["qkv"] = (heads * dqk, kv_heads * dqk, kv_heads * dqk)  # wq, wk, wv
            if att.qk_norm:
                # Qwen3: RMSNorm over head_dim on each q and k head (modeling_qwen3.py q_norm, k_norm); backward
                # needs their inputs, the qkv GEMM's output, which nothing else keeps.
                for name, rows in (("q_norm", t * heads), ("k_norm", t * kv_heads)):
                    self.elementwise(out, "ATTN", name, rows * dqk * 2 * BF16, recompute=self.recompute.norm,
                                     flops_fwd=4.0 * rows * dqk, saves=rows * dqk * BF16, op_class=OpClass.NORM,
                                     bwd_class=OpClass.NORM_BWD)
            self.elementwise(out, "ATTN", "rope", t * (heads + kv_heads) * dqk * BF16 * 2, op_class=OpClass.ROPE)
        self.core_attention(out, heads, kv_heads, dqk, dv)
        if pdt == "fp8" and self.fp8_recipe == "blockwise":
            # TR §3.3: the o_proj input is cached in a custom FP8 format for its wgrad and cast back in backward.
            self.kernel(out, "ATTN", "o_proj.cache_fp8", Phase.F, OpClass.QUANT, t * heads * dv * QUANT_BYTES)
            self.kernel(out, "ATTN", "o_proj.cache_fp8", Phase.B, OpClass.DEQUANT, t * heads * dv * QUANT_BYTES)
        self.gemm(out, "ATTN", "o_proj", t, h, heads * dv, pdt)
        if tp > 1:
            self.tp_comm(out, "ATTN_TP")
        self.elementwise(out, "ATTN", "residual", t // tp * h * BF16 * 3)

    def core_attention(self, out: LayerOps, heads: int, kv_heads: int, dqk: int, dv: int) -> None:
        par, att = self.s.parallelism, self.s.model.attention
        s = par.seq_len
        window = att.sliding_window if att.slides(out.layer, self.s.model.layers) else None
        # zig-zag context parallelism balances the triangle (and the band)
        pairs_causal, pairs_full = causal_pairs(s, window) / par.cp, full_pairs(s, window) / par.cp
        per_pair = 2.0 * heads * (dqk + dv) * par.micro_batch_size
        f_causal, f_full = per_pair * pairs_causal, per_pair * pairs_full
        t = self.tokens
        io = t * (heads * dqk + kv_heads * (dqk + dv) + heads * dv) * BF16
        dt = self.prec.attention_core
        shape = (par.micro_batch_size, heads, s, dqk, dv)
        out.add("ATTN", Op("core_attn.F", Kind.ATTENTION, Phase.F, "ATTN", dt, f_causal, io, shape,
                           f_causal, f_full))
        rebuilt = self.up_recompute and self.s.model.attention.kind == "mla"
        if rebuilt:
            out.save("core_attn", t * heads * dv * BF16)  # output kept; q, k, v rebuilt from latents
        else:
            out.save("core_attn", io)
        out.sizes["core_attn_in"] = 0.0 if rebuilt else io - t * heads * dv * BF16  # q, k, v
        out.sizes["core_attn_out"] = t * heads * dv * BF16  # O
        # FlashAttention backward: dO·O row sums first, then the kernel, then its fp32 dQ accumulator to bf16.
        self.kernel(out, "ATTN", "core_attn.pre", Phase.B, OpClass.ATTN_BWD_PRE,
                    t * heads * (2 * dv * BF16 + FP32))
        out.add("ATTN", Op("core_attn.B", Kind.ATTENTION, Phase.B, "ATTN", dt, 2.5 * f_causal, 2 * io, shape,
                           2 * f_causal, 2 * f_full))
        if att.sinks:
            # GPT-OSS sinks: the forward kernel adds each head's sink logit to its softmax denominator (inside the
            # kernel); backward reduces each head's sink gradient from the log-sum-exp and dO·O row sums.
            self.kernel(out, "ATTN", "core_attn.sink_grad", Phase.B, OpClass.ADD, t * heads * 2 * FP32)
        self.kernel(out, "ATTN", "core_attn.post", Phase.B, OpClass.ATTN_BWD_POST, t * heads * dqk * (FP32 + BF16))

    def tp_comm(self, out: LayerOps, component: str) -> None:
        """Tensor-parallel all-reduce of the layer output (bf16), in F and again in B."""
        nbytes = self.tokens * self.h * BF16
        for phase in (Phase.F, Phase.B):
            self.comm(out, component, component.lower(), phase, Comm(Pattern.ALL_REDUCE, "tp", nbytes), "bf16")

    # --- feed-forward -----------------------------------------------------------------------------------
    def swiglu_mlp(self, out: LayerOps, component: str, name: str, m: int, inter: int, dtype: str,
                   groups: int = 1, gathered_input: bool = False, input_fp8: bool = False) -> None:
        """gate+up (fused, 2·inter wide), SwiGLU, down: the FFN of a dense layer, an expert or a shared expert.

        In fp8 the SwiGLU kernel writes the down-projection's fp8 input itself (a fused cast, as in DeepSeek's
        trace), and its own fp8 input is what backward keeps and casts back to recompute it (TR §3.3)."""
        h = self.h
        deepseek = dtype == "fp8" and self.fp8_recipe == "blockwise"  # the fused SwiGLU-cast of TR §3.3
        self.gemm(out, component, f"{name}.up", m, 2 * inter, h, dtype, groups=groups, gathered_input=gathered_input,
                  input_fp8=input_fp8)
        out.mm_parts[f"{name}.up"] = (inter, inter)  # w1 and w3
        rows = groups * m
        swiglu_bytes = rows * inter * (2 * BF16 + element_bytes(dtype if deepseek else "bf16"))
        if deepseek:
            self.kernel(out, component, f"{name}.swiglu_in", Phase.B, OpClass.DEQUANT, rows * 2 * inter * QUANT_BYTES)
        self.elementwise(out, component, f"{name}.swiglu", swiglu_bytes, recompute=self.recompute.swiglu,
                         flops_fwd=4.0 * rows * inter, op_class=OpClass.SWIGLU, bwd_class=OpClass.SWIGLU_BWD)
        self.gemm(out, component, f"{name}.down", m, h, inter, dtype, recompute=False, groups=groups,
                  input_fp8=deepseek)

    def dense_ffn(self, out: LayerOps) -> None:
        out.sizes["mlp_in"] = self.tokens // self.tp * self.h * BF16  # the residual stream, sequence-parallel
        self.norm(out, "MLP", "mlp_norm", self.h)
        self.swiglu_mlp(out, "MLP", "ffn", self.tokens, self.s.model.ffn_intermediate // self.tp,
                        self.prec.dense_mlp, gathered_input=True)
        if self.tp > 1:
            self.tp_comm(out, "MLP_TP")
        self.elementwise(out, "MLP", "residual", self.tokens // self.tp * self.h * BF16 * 3)

    def router(self, out: LayerOps, t: int, experts: int, top_k: int) -> None:
        """The gate's scores → group-limited top-k → auxiliary statistics and bias update (sigmoid gating)."""
        scores = t * experts * FP32
        for name in ("router.group_topk", "router.topk"):
            self.kernel(out, "ATTN", name, Phase.F, OpClass.ROUTER, scores + t * top_k * (FP32 + INDEX_BYTES))
        self.kernel(out, "ATTN", "router.scores_grad", Phase.B, OpClass.ROUTER, 3 * scores)
        for phase, count in ROUTER_SMALL_KERNELS.items():
            for i in range(count):
                self.kernel(out, "ATTN", f"router.small{i}", phase, OpClass.ROUTER, 0.0)

    def ep_notify(self, out: LayerOps, component: str, phase: Phase) -> None:
        """DeepEP's layout/notify kernel: every rank tells its EP peers how many tokens it sends each expert.
        Before the forward dispatch the host waits for the counts received (``training.dispatch_host_sync``);
        the backward reuses the forward's layout (DeepEP's cached handle), and the combine needs no counts."""
        experts = self.s.model.moe.routed_experts
        sync = component == "DISPATCH" and phase is Phase.F and self.s.training.dispatch_host_sync
        out.add(component, Op(f"{component.lower()}_notify.{phase.value}", Kind.COMM, phase, component, "fp32",
                              comm=Comm(Pattern.ALL_TO_ALL, "ep", experts * FP32), kernel=OpClass.EP_NOTIFY,
                              host_sync=sync))

    def moe(self, out: LayerOps) -> None:
        """Gate, DISPATCH, routed experts as grouped GEMMs, shared experts, COMBINE (EP over ``ep`` GPUs).

        ``training.dispatcher`` picks how tokens travel (:meth:`moe_dispatch`); ``parallelism.expert_tp`` splits
        each expert's intermediate dimension over that many GPUs, which all-gather their peers' tokens after the
        dispatch and reduce-scatter the outputs before the combine (Megatron's expert tensor parallelism);
        ``training.capacity_factor`` drops the picks over an expert's capacity before dispatch."""
        moe, par, h, tr = self.s.model.moe, self.s.parallelism, self.h, self.s.training
        t = self.tokens // self.tp  # with tp > 1 each TP rank routes its sequence-parallel slice
        out.sizes["moe_in"] = out.sizes["shared_experts_in"] = t * h * BF16  # pre_mlp_layernorm's output
        self.norm(out, "ATTN", "mlp_norm", h)
        self.gemm(out, "ATTN", "gate", t, moe.routed_experts, h, self.prec.gate)
        self.router(out, t, moe.routed_experts, moe.top_k)
        if tr.dispatcher != "deepep" or par.expert_tp > 1 or tr.capacity_factor is not None:
            self.moe_dispatch(out, t)
            return
        d_bytes, c_bytes = element_bytes(tr.dispatch_dtype), element_bytes(tr.combine_dtype)
        if tr.dispatch_dtype == "fp8":
            self.kernel(out, "ATTN", "dispatch.quant", Phase.F, OpClass.QUANT, t * h * QUANT_BYTES)
        dispatch = Comm(Pattern.EP_DISPATCH, "ep", t * moe.top_k * h * d_bytes, t, h, moe.top_k, d_bytes)
        combine = Comm(Pattern.EP_COMBINE, "ep", t * moe.top_k * h * c_bytes, t, h, moe.top_k, c_bytes)
        # Backward mirrors forward: combine's gradient is dispatched out and dispatch's gradient combined back.
        # The gradient dispatched before the experts' down-projection backward travels in the dispatch dtype
        # (TR §3.3: FP8, visible as the cast before DeepEP's dispatch in combine(B) of DeepSeek's trace).
        bwd_dispatch = Comm(Pattern.EP_DISPATCH, "ep", t * moe.top_k * h * d_bytes, t, h, moe.top_k, d_bytes)
        self.ep_notify(out, "DISPATCH", Phase.F)
        self.comm(out, "DISPATCH", "dispatch", Phase.F, dispatch, tr.dispatch_dtype)
        self.ep_notify(out, "DISPATCH", Phase.B)
        self.comm(out, "DISPATCH", "dispatch", Phase.B, combine, tr.combine_dtype)
        local_experts = moe.routed_experts // par.ep
        per_expert = max(1, round(t * moe.top_k * par.ep / moe.routed_experts))
        rows = local_experts * per_expert
        # Received tokens → expert-contiguous rows (index mapping, then the permute), and back after the experts.
        for phase in (Phase.F, Phase.B):
            self.kernel(out, "MLP", "experts.index", phase, OpClass.INDEX, 2 * rows * INDEX_BYTES)
            self.kernel(out, "MLP", "experts.permute", phase, OpClass.PERMUTE,
                        2 * rows * h * d_bytes)
        self.swiglu_mlp(out, "MLP", "experts", per_expert, moe.expert_intermediate, self.prec.expert,
                        groups=local_experts, input_fp8=tr.dispatch_dtype == "fp8")
        for phase in (Phase.F, Phase.B):
            self.kernel(out, "MLP", "experts.unpermute", phase, OpClass.UNPERMUTE, (rows + t) * h * BF16)
        if moe.shared_experts:
            inter = (moe.shared_intermediate or moe.expert_intermediate) * moe.shared_experts
            self.swiglu_mlp(out, "MLP", "shared", t, inter, self.prec.expert)
        self.ep_notify(out, "COMBINE", Phase.F)
        self.comm(out, "COMBINE", "combine", Phase.F, combine, tr.combine_dtype)
        # The top-k weighted sum happens inside the combine kernel (DeepEP), so it has no op of its own.
        if tr.dispatch_dtype == "fp8":
            self.kernel(out, "COMBINE", "combine_grad.quant", Phase.B, OpClass.QUANT, t * h * QUANT_BYTES)
        self.ep_notify(out, "COMBINE", Phase.B)
        self.comm(out, "COMBINE", "combine", Phase.B, bwd_dispatch, tr.dispatch_dtype)

    def moe_dispatch(self, out: LayerOps, t: int) -> None:
        """The MoE block after the router under :mod:`moesim.workloads.dispatchers` (any dispatcher, expert TP, capacity)."""
        from moesim.workloads.dispatchers import build_moe_block  # it builds on this module's primitives

        build_moe_block(self, out, t)

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
