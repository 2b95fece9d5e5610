"""The operation IR: the contract between workloads, calibration and the simulator (DESIGN.md).

An :class:`Op` is one kernel-sized piece of work for one GPU and one micro-batch: a GEMM, a grouped GEMM, an
attention kernel, an elementwise kernel or a communication. Ops are grouped into the four components that
DualPipe overlaps (ATTN, DISPATCH, MLP, COMBINE) plus the pipeline ends (EMBED, HEAD); a list of components
makes a chunk: what one pipeline stage runs for one micro-batch in one phase.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Kind(str, Enum):
    GEMM = "gemm"
    GROUPED_GEMM = "grouped_gemm"
    ATTENTION = "attention"
    ELEMENTWISE = "elementwise"
    COMM = "comm"


class Stream(str, Enum):
    """The in-order streams of a GPU. Pipeline send/recv has its own stream, as DualPipe and Megatron run it
    (DualPipe issues its P2P ops with ``dist.batch_isend_irecv`` apart from DeepEP's buffer kernels; Megatron's
    ``p2p_communication`` batches them on NCCL's own stream), so it never queues behind an expert all-to-all."""

    COMPUTE = "compute"
    COMM = "comm"
    PP = "pp"


class Phase(str, Enum):
    F = "F"  # forward
    B = "B"  # backward for inputs
    W = "W"  # backward for weights


class Pattern(str, Enum):
    ALL_TO_ALL = "all_to_all"
    EP_DISPATCH = "ep_dispatch"
    EP_COMBINE = "ep_combine"
    ALL_REDUCE = "all_reduce"
    REDUCE_SCATTER = "reduce_scatter"
    ALL_GATHER = "all_gather"
    SEND_RECV = "send_recv"


DTYPE_BYTES = {"fp8": 1, "bf16": 2, "fp32": 4}


class OpClass(str, Enum):
    """What kernel an op runs, as a profile prices it and the per-op breakdown groups it.

    GEMMs and attention are split by pass: forward (``fprop``, also a recomputed forward in B), input-gradient
    (``dgrad``) and weight-gradient (``wgrad``) GEMMs run different kernels at different rates, and so do
    FlashAttention's forward and backward. The rest are the small kernels an FP8 MoE step runs around them
    (names as in DeepSeek's profiler trace, see ``workloads/traces/classify.py``).
    """

    GEMM_FPROP = "gemm.fprop"
    GEMM_DGRAD = "gemm.dgrad"
    GEMM_WGRAD = "gemm.wgrad"
    GROUPED_FPROP = "grouped_gemm.fprop"
    GROUPED_DGRAD = "grouped_gemm.dgrad"
    GROUPED_WGRAD = "grouped_gemm.wgrad"
    ATTN_FWD = "attention.fwd"
    ATTN_BWD = "attention.bwd"
    ATTN_BWD_PRE = "attention.bwd_pre"  # FlashAttention backward's dO·O row sums
    ATTN_BWD_POST = "attention.bwd_post"  # its fp32 dQ accumulator converted to bf16
    NORM = "norm"  # RMSNorm forward (fused with the residual add)
    NORM_BWD = "norm.bwd"
    SWIGLU = "swiglu"
    SWIGLU_BWD = "swiglu.bwd"
    ROPE = "rope"  # rotary embedding and the q/k concatenation of MLA
    QUANT = "fp8.quant"  # bf16 → fp8 in 1×128 tiles (per token), before an FP8 GEMM's activation input
    QUANT_T = "fp8.quant_t"  # bf16 → fp8 in 128×1 tiles, transposed: a wgrad GEMM's token-major inputs
    WEIGHT_T = "fp8.weight_t"  # an fp8 weight's 128×128 blocks transposed for the dgrad GEMM
    AMAX = "fp8.amax"  # per-tensor scaling: a bf16 tensor's absolute maximum, and the scale from it
    CAST_T = "fp8.cast_transpose"  # per-tensor scaling: bf16 → fp8, row-wise and transposed in one kernel
    MX_QUANT = "fp8.mx_quant"  # MXFP8: bf16 → fp8 in 1×32 blocks with E8M0 scales, along rows and columns
    TRANSPOSE = "fp8.transpose"  # an fp8 tensor transposed for the wgrad GEMM
    DEQUANT = "fp8.dequant"  # fp8 → bf16 (received tokens and cached activations cast back)
    PERMUTE = "moe.permute"  # received tokens expanded into expert-contiguous rows
    UNPERMUTE = "moe.unpermute"  # expert outputs reduced back to tokens (weighted by the gate)
    INDEX = "moe.index"  # token → expert row mapping and per-expert counts
    ROUTER = "router"  # gate scores, group-limited top-k, auxiliary statistics and bias update
    ADD = "add"  # residual adds, copies, fills and other plain memory-bound kernels
    EP_NOTIFY = "ep.notify"  # DeepEP's layout and notify kernels before dispatch and combine
    EP_DISPATCH = "ep.dispatch"
    EP_COMBINE = "ep.combine"
    COLLECTIVE = "collective"  # TP/DP collectives and pipeline sends


COMM_COMPONENTS = frozenset({"DISPATCH", "COMBINE"})
GEMM_PASS = {Phase.F: "fprop", Phase.B: "dgrad", Phase.W: "wgrad"}


@dataclass(frozen=True, slots=True)
class Comm:
    """What a communication op moves: ``bytes_per_rank`` is what each member sends (for EP: before dedup)."""

    pattern: Pattern
    group: str  # "ep", "tp", "dp", "edp" (expert data parallel), "pp"
    bytes_per_rank: float
    # EP only: tokens this rank routes, their hidden size, top-k and bytes per element (incl. scales).
    tokens: int = 0
    hidden: int = 0
    top_k: int = 0
    element_bytes: float = 0.0

    @property
    def token_bytes(self) -> float:
        """EP only: bytes of one token's hidden state as it is sent (hidden × bytes per element, scales incl.)."""
        return self.hidden * self.element_bytes


@dataclass(frozen=True, slots=True)
class Op:
    """One kernel for one micro-batch on one GPU.

    ``flops`` are the FLOPs the kernel executes; ``model_flops`` those counted for MFU (no recomputation,
    attention causal) and ``model_flops_noncausal`` the same with attention counted as a full square.
    ``bytes`` is HBM traffic (read + write) for compute ops, 0 for comm (see ``comm``).
    ``shape`` holds (m, n, k) for GEMMs, (groups, m, n, k) for grouped GEMMs, (batch, heads, seq, dqk, dv)
    for attention.
    """

    name: str
    kind: Kind
    phase: Phase
    component: str
    dtype: str
    flops: float = 0.0
    bytes: float = 0.0
    shape: tuple = ()
    model_flops: float = 0.0
    model_flops_noncausal: float = 0.0
    comm: Comm | None = None
    recompute: bool = False
    kernel: OpClass | None = None  # set for elementwise and comm ops; GEMMs and attention derive it
    host_sync: bool = False  # the launching host thread waits here until the GPU has drained to this op

    @property
    def stream(self) -> Stream:
        """Communication ops, and the kernels DeepEP's dispatch and combine run beside them (the cast of a
        gradient before its FP8 dispatch), run on the communication stream; pipeline send/recv on its own."""
        if self.comm is not None and self.comm.pattern is Pattern.SEND_RECV:
            return Stream.PP
        return Stream.COMM if self.kind is Kind.COMM or self.component in COMM_COMPONENTS else Stream.COMPUTE

    @property
    def gemm_pass(self) -> str:
        """``fprop``, ``dgrad`` or ``wgrad``: a recomputed forward in B is a forward pass."""
        return "fprop" if self.recompute else GEMM_PASS[self.phase]

    @property
    def op_class(self) -> OpClass:
        """The kernel class this op is priced as (see :class:`OpClass`)."""
        if self.kernel is not None:
            return self.kernel
        if self.kind in (Kind.GEMM, Kind.GROUPED_GEMM):
            return OpClass(f"{self.kind.value}.{self.gemm_pass}")
        if self.kind is Kind.ATTENTION:
            return OpClass.ATTN_FWD if self.gemm_pass == "fprop" else OpClass.ATTN_BWD
        if self.kind is Kind.COMM:
            return _COMM_CLASS.get(self.comm.pattern, OpClass.COLLECTIVE) if self.comm else OpClass.COLLECTIVE
        return OpClass.ADD


_COMM_CLASS = {Pattern.EP_DISPATCH: OpClass.EP_DISPATCH, Pattern.EP_COMBINE: OpClass.EP_COMBINE}


@dataclass(slots=True)
class Component:
    """A run of ops on one stream: ATTN, MLP, EMBED, HEAD on compute; DISPATCH, COMBINE on comm."""

    name: str
    layer: int
    phase: Phase
    ops: list[Op] = field(default_factory=list)

    @property
    def stream(self) -> Stream:
        return self.ops[0].stream if self.ops else Stream.COMPUTE


@dataclass(slots=True)
class Chunk:
    """What one pipeline stage runs for one micro-batch in one phase, as ordered components."""

    stage: int
    phase: Phase
    components: list[Component]
    activation_bytes: float = 0.0  # bytes kept from F until B for this micro-batch (F chunks only)

    def ops(self):
        for component in self.components:
            yield from component.ops
