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
    COMPUTE = "compute"
    COMM = "comm"


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

    @property
    def stream(self) -> Stream:
        return Stream.COMM if self.kind is Kind.COMM else Stream.COMPUTE


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
