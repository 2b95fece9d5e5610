"""The shape-aware model: seconds for a GEMM, grouped GEMM or attention kernel from its own shape, for ops outside
every fitted curve's measured domain (:mod:`moesim.calibration.domain`).

A Hopper GEMM kernel cuts its M×N output into block tiles, one thread block per tile, and runs the tiles in waves
over the SMs; each tile costs the same whatever part of it is real, so a kernel's time is its *padded* work:

    compute_s = waves × (BLOCK_M × BLOCK_N × K_padded × 2) / (efficiency × peak per SM)
    waves     = ceil(tiles / SMs),   tiles = groups × ceil(m / BLOCK_M) × ceil(n / BLOCK_N)

which carries tile-edge waste (m, n not multiples of the tile), the last partial wave, and the per-group cost of
grouped GEMMs (each expert's rows are padded to BLOCK_M: DeepGEMM's contiguous layout aligns every group to it, so
many small experts pay a partial tile each). The kernel takes ``max(compute_s, memory_s, minimum)``: HBM traffic at
the measured streaming rate (the roofline for skinny, memory-bound shapes) and a per-kernel minimum (the class
curve's fitted fixed cost per launch). Attention kernels tile the same way: FlashAttention-2/3 run one thread block
per 128 query rows of one head of one sequence.

``efficiency`` is the fraction of peak a full wave of whole tiles reaches. It comes from kernel measurements only
(:func:`class_ceilings`): the fastest measured point of the op's class (kind, dtype, pass, kernel library) in the
profiles that price the GPU and in the shipped profiles measured on GPUs of the same SM design (same SMs, same
tensor peak), with that point's own tile and wave losses divided out. The same point is the class's ceiling: no
price, curve or shape model, may beat its rate (:meth:`moesim.calibration.cost_model.CostModel.op_time_s` clamps).

Choice, stated: an op outside the measured domain is priced by this model alone, not scaled to the nearest curve.
The nearest curve's local correction encodes what is specific to its shapes (the router gate's K of 256, whose
prologue and epilogue dominate a 40 µs kernel), which does not transfer to a shape hundreds of times larger; the
full-wave efficiency of the class's best kernel is what does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from moesim.workloads.fp8 import PER_TENSOR_LIBRARY

# Block tiles (BLOCK_M, BLOCK_N) the kernel families choose between, the one with the least padded work winning,
# as their heuristics do (fewest waves, then the fullest last wave). DeepGEMM (deepseek-ai/DeepGEMM,
# deep_gemm/jit_kernels/gemm.py get_best_configs): BLOCK_M 64 for m ≤ 64 else 128, BLOCK_N from a range up to
# 256. CUTLASS 3.x Hopper warp-specialized GEMMs (examples/48_hopper_warp_specialized_gemm; cuBLAS's sm90 kernels
# are of this kind): 128×128, 128×256 and 64×128 CTA tiles. BLOCK_N below 64 is left out: a narrower tile reuses
# its A tile too little to reach the full-wave efficiency this model assumes for every tile.
BLOCK_M_SMALL, BLOCK_M = 64, 128
BLOCK_NS = (64, 128, 256)
# K advances in steps of 128: DeepGEMM's FP8 scaling granularity (1×128 activations, 128×128 weights) and the
# BLOCK_K of its kernels; a K not a multiple of 128 pays the rest of a step.
BLOCK_K = 128
# FlashAttention-2/3 forward and backward: one thread block per 128 query rows (kBlockM = 128 for head dims up to
# 256 on Hopper; FlashAttention-3 paper, arXiv 2407.08608 §3) of one head of one sequence.
ATTENTION_BLOCK_Q = 128


@dataclass(frozen=True)
class Ceiling:
    """The fastest measured point of a class: its rate as a fraction of the peak of the SMs it ran on
    (``fraction``), the full-wave efficiency its tile and wave losses imply (``efficiency``), and which point."""

    fraction: float
    efficiency: float
    source: str


def gemm_tiles(m: int, n: int, k: int, groups: int, sms: int) -> tuple[float, str]:
    """Useful over padded work of the best block tile for ``groups`` GEMMs of m×n×k on ``sms`` SMs (≤ 1), and
    the tile in words."""
    block_m = BLOCK_M_SMALL if m <= BLOCK_M_SMALL else BLOCK_M
    k_padded = math.ceil(k / BLOCK_K) * BLOCK_K
    best, label = 0.0, ""
    for block_n in BLOCK_NS:
        tiles = groups * math.ceil(m / block_m) * math.ceil(n / block_n)
        waves = math.ceil(tiles / sms)
        useful = groups * m * n * k / (waves * sms * block_m * block_n * k_padded)
        if useful > best + 1e-12:
            best, label = useful, f"{block_m}×{block_n} tiles, {tiles} in {waves} wave{'s' * (waves > 1)}"
    return best, label


def attention_tiles(batch: int, heads: int, seq: int, sms: int) -> tuple[float, str]:
    """Useful over padded work of an attention kernel's thread blocks (128 query rows each) on ``sms`` SMs."""
    tiles = batch * heads * math.ceil(seq / ATTENTION_BLOCK_Q)
    waves = math.ceil(tiles / sms)
    useful = batch * heads * seq / (waves * sms * ATTENTION_BLOCK_Q)
    return useful, f"{ATTENTION_BLOCK_Q}-row blocks, {tiles} in {waves} wave{'s' * (waves > 1)}"


def tile_use(kind: str, shape, groups: int, sms: int) -> tuple[float, str]:
    """Useful fraction of the padded work of a kernel of ``kind`` (``gemm``, ``grouped_gemm``, ``attention``)
    and ``shape`` ((m, n, k), grouped (m, n, k) per group with ``groups``, attention (b, h, s, dqk, dv))."""
    if kind == "attention":
        batch, heads, seq = shape[:3]
        return attention_tiles(int(batch), int(heads), int(seq), sms)
    m, n, k = (int(v) for v in shape[-3:])
    return gemm_tiles(m, n, k, groups, sms)


def shape_model_s(kind: str, shape, groups: int, flops: float, nbytes: float, sms: int, peak_per_s: float,
                  total_sms: int, hbm_bytes_per_s: float, efficiency: float, minimum_s: float = 0.0) -> float:
    """Seconds for one kernel on ``sms`` of ``total_sms`` SMs of a device of ``peak_per_s`` FLOP/s (all SMs) and
    ``hbm_bytes_per_s`` of achievable HBM bandwidth, at full-wave ``efficiency``: the larger of the padded
    compute, the HBM traffic and the per-kernel ``minimum_s``."""
    use, _ = tile_use(kind, shape, groups, sms)
    compute_s = flops / (efficiency * use * peak_per_s * sms / total_sms) if flops else 0.0
    memory_s = nbytes / hbm_bytes_per_s if hbm_bytes_per_s else 0.0
    return max(compute_s, memory_s, minimum_s)


def point_ceiling(kind: str, shape, groups: int, rate_fraction: float, sms: int, what: str) -> Ceiling:
    """The ceiling a measured point sets: its rate fraction, and that fraction over its tile use (≤ 1)."""
    use, _ = tile_use(kind, shape, groups, sms)
    return Ceiling(rate_fraction, min(1.0, rate_fraction / use), what)


def ceiling_key(kind: str, dtype: str, gemm_pass: str, layout: str, library: str = "") -> tuple[str, str, str]:
    """Which ceiling an op or point belongs to: GEMMs by kind and dtype, FP8 weight-gradient GEMMs apart (DeepGEMM
    and the CUTLASS kernels before it run them as kernels of their own, accumulating into an FP32 gradient:
    reference/h800-wgrad-kernels.csv; BF16 GEMMs of every pass are cuBLAS's one family, and so are per-tensor FP8
    GEMMs, grouped or not, of ``library`` cublas), attention by dtype and direction."""
    if kind == "attention":
        return kind, dtype, "bwd" if layout == "causal_bwd" else "fwd"
    if library == PER_TENSOR_LIBRARY and dtype == "fp8":
        # Transformer Engine's GroupedLinear runs one cuBLAS GEMM per expert: the dense per-tensor class's ceiling.
        return "gemm", dtype, "fprop"
    return kind, dtype, "wgrad" if gemm_pass == "wgrad" and dtype == "fp8" else "fprop"


def class_ceilings(profiles, library: str | None) -> dict[tuple[str, str, str], Ceiling]:
    """Per class (:func:`ceiling_key`), the ceiling ``profiles``' (:class:`moesim.calibration.profile.Profile`) GEMM
    and attention points of kernel ``library`` set: FP8 GEMMs only of that library (block-scaled FP8 kernels
    differ by generation, and a per-tensor-scaled cuBLAS FP8 GEMM, library "", is none of them), other points
    also when they name no library. The fraction is the fastest point's; the efficiency comes from the fastest
    compute-bound point (FLOPs at the peak outlast bytes at the HBM peak): a bandwidth-bound point's rate says
    how fast its bytes moved, not how fast a wave of tiles computes (the fastest point when none is)."""
    from moesim.calibration.fit import peak_per_s, point_bytes

    found: dict[tuple[str, str, str], list[tuple[float, bool, Ceiling]]] = {}
    for prof in profiles:
        total = prof.peaks["sms"]
        for p in prof.points:
            if p.op == "elementwise" or (library is not None and p.library not in ("", library)):
                continue
            # A per-tensor-scaled FP8 point that names no library is a cuBLAS one (as above): it sets cuBLAS's ceiling.
            if library is not None and p.op != "attention" and p.dtype == "fp8" and p.library != library and not (
                    library == "cublas" and p.library == ""):
                continue
            sms = int(p.sms or total)
            shape = p.shape if p.op == "attention" else p.shape[-3:]
            peak = peak_per_s(prof.peaks, "flops", p.dtype) * sms / total
            fraction = p.flops_executed() / p.seconds() / peak
            compute_bound = p.flops_executed() / peak >= point_bytes(p) / peak_per_s(prof.peaks, "bytes", p.dtype)
            what = (f"{prof.label}: {p.kernel or p.op} {'×'.join(map(str, p.shape))}"
                    f"{f' ×{p.groups} groups' if p.groups > 1 else ''} at {p.tflops:.0f} TFLOPS on {sms} SMs")
            found.setdefault(ceiling_key(p.op, p.dtype, p.gemm_pass, p.layout, library or ""), []).append(
                (fraction, compute_bound, point_ceiling(p.op, shape, p.groups, fraction, sms, what)))
    ceilings = {}
    for key, points in found.items():
        fastest = max(points, key=lambda x: x[0])[2]
        anchors = [c for _, bound, c in points if bound] or [fastest]
        anchor = max(anchors, key=lambda c: c.fraction)
        ceilings[key] = Ceiling(fastest.fraction, anchor.efficiency, anchor.source)
    return ceilings
