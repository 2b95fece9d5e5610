"""FP8 scaling recipes: the kernels each runs around an FP8 GEMM, with the HBM bytes they move, and the kernel
library that prices its GEMMs.

A GEMM ``Y = X·Wᵀ`` of ``rows`` tokens (X: rows×k, W: n×k, output gradient G: rows×n) needs, in FP8, its operands
cast with scales; Hopper's FP8 tensor cores take only K-major operands, so the wgrad GEMM (Gᵀ·X) needs X and G
transposed too. Per recipe (bytes per element: bf16 read 2, fp8 written 1):

- ``blockwise`` (DeepSeek-V3 TR §3.3, DeepGEMM): 1×128 activation tiles and 128×128 weight blocks, each with an
  fp32 scale; its kernels stay in :meth:`moesim.workloads.layers.LayerBuilder.gemm` (unchanged, the default).
- ``tensorwise`` (per-tensor current scaling: Transformer Engine's ``Float8CurrentScaling``, torchao's
  ``tensorwise``): one scale per tensor from the tensor's own amax, so each tensor is read twice: an amax
  reduction (2 B/element), a scale kernel, then a cast that writes the row-wise and the transposed copy at once
  (TE's cast_transpose: 2 + 1 + 1 B/element). For X and W in the forward, G in the backward.
- ``delayed`` (TE's ``DelayedScaling``): the scale comes from the amax history of earlier steps, so the cast
  computes the new amax on the fly: the cast_transpose alone (4 B/element), no amax pass.
- ``mxfp8`` (OCP Microscaling v1.0; Blackwell tensor cores): one E8M0 scale byte per 32 elements; the row-wise and
  the column-wise copies are quantised along different axes (a transpose of the row-wise one would carry the
  wrong blocks), so the cast writes both: 2 + 2·(1 + 1/32) B/element.

Weights are cast every micro-batch (torchao's Float8Linear does; Transformer Engine can keep them across the
micro-batches of a step, so this is its upper bound). A tensor whose producer already wrote fp8 (an FP8 dispatch)
needs only its transposed copy (1 + 1 B/element), in the per-tensor recipes.

Per-tensor-scaled FP8 GEMMs (``tensorwise``, ``delayed``) and ``mxfp8`` run cuBLAS(Lt) kernels, not DeepGEMM: the
cost model prices them from the ``cublas`` kernel library's points (and from points that name no library: those
are cuBLAS per-tensor measurements, e.g. ml-engineering's torch._scaled_mm MAMF), else by the shape model.
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.workloads.ops import DTYPE_BYTES, OpClass, Phase

BF16, FP32, FP8 = DTYPE_BYTES["bf16"], DTYPE_BYTES["fp32"], DTYPE_BYTES["fp8"]
MX_BLOCK = 32  # OCP Microscaling Formats (MX) v1.0 §5: 32 elements share one 8-bit E8M0 scale
CAST_T_BYTES = BF16 + 2 * FP8  # read bf16, write fp8 row-wise and transposed
MX_QUANT_BYTES = BF16 + 2 * (FP8 + 1 / MX_BLOCK)  # read bf16, write fp8 + scales along rows and along columns
TRANSPOSE_BYTES = 2 * FP8
PER_TENSOR_LIBRARY = "cublas"


@dataclass(frozen=True)
class Cast:
    """One cast-side kernel of an FP8 GEMM: its phase, name suffix, class and HBM bytes."""

    phase: Phase
    name: str
    op_class: OpClass
    nbytes: float
    recompute: bool = False


def recipe(training) -> str:
    """The scenario's FP8 recipe (``training.fp8_recipe``), ``blockwise`` when unset."""
    return training.fp8_recipe or "blockwise"


def gemm_library(training) -> str:
    """The kernel library pricing the scenario's FP8 GEMMs: ``training.kernels`` (DeepGEMM or the CUTLASS kernels
    before it) for ``blockwise``, cuBLAS for the per-tensor and MX recipes."""
    return training.kernels if recipe(training) == "blockwise" else PER_TENSOR_LIBRARY


def _scale(phase: Phase, name: str, elements: float, per_tensor_amax: bool, mx: bool,
           recompute: bool = False) -> list[Cast]:
    """The kernels that turn one bf16 tensor of ``elements`` into its fp8 copies."""
    if mx:
        return [Cast(phase, f"{name}.mx_quant", OpClass.MX_QUANT, elements * MX_QUANT_BYTES, recompute)]
    amax = [Cast(phase, f"{name}.amax", OpClass.AMAX, elements * BF16 + FP32, recompute),
            Cast(phase, f"{name}.scale", OpClass.AMAX, 2 * FP32, recompute)] if per_tensor_amax else []
    return [*amax, Cast(phase, f"{name}.cast_t", OpClass.CAST_T, elements * CAST_T_BYTES, recompute)]


def casts(name: str, rows: int, n: int, k: int, groups: int, input_fp8: bool, recompute: bool) -> list[Cast]:
    """The F and B kernels of an FP8 GEMM under a non-blockwise recipe ``name`` (``tensorwise``, ``delayed``,
    ``mxfp8``): input and weight before the forward (the input again in B when the GEMM is recomputed), the output
    gradient before the dgrad. The wgrad needs none: both its operands' transposed copies exist."""
    amax, mx = name == "tensorwise", name == "mxfp8"
    out: list[Cast] = []
    inputs = [(Phase.F, False)] + ([(Phase.B, True)] if recompute else [])
    for phase, again in inputs:
        if input_fp8 and not mx:
            out.append(Cast(phase, "input.transpose", OpClass.TRANSPOSE, rows * k * TRANSPOSE_BYTES, again))
        else:
            out.extend(_scale(phase, "input", rows * k, amax, mx, again))
    out.extend(_scale(Phase.F, "weight", groups * n * k, amax, mx))
    out.extend(_scale(Phase.B, "grad", rows * n, amax, mx))
    return out
