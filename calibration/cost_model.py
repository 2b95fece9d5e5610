"""The cost model: seconds for a compute op on a GPU, as a roofline times a measured efficiency.

time = max(flops / (efficiency × peak(dtype) × sms_used / sms),  bytes / (memory_efficiency × HBM bandwidth))

The efficiency of a GEMM or grouped GEMM is read from the profile's measured points of the same class and
dtype: inverse-distance weighting in log2(m, n, k) over the nearest points, exact on a measured shape.
Op classes without points fall back to the profile's stated efficiency (each with its source), and the
model records that it did so in :attr:`CostModel.fallbacks`.
"""

from __future__ import annotations

import numpy as np

from calibration.profile import Profile
from workloads.ops import Kind, Op

NEIGHBOURS = 4


class CostModel:
    """Prices compute ops for one GPU spec (a :class:`workloads.scenario.GpuSpec`) from a profile."""

    def __init__(self, profile: Profile, gpu):
        self.profile = profile
        self.gpu = gpu
        self.fallbacks: dict[str, str] = {}
        self._points: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        for p in profile.points:
            peak = profile.peaks[f"{p.dtype}_tflops"] * (p.sms or profile.peaks["sms"]) / profile.peaks["sms"]
            coords, effs = self._points.get((p.op, p.dtype), (np.empty((0, 3)), np.empty(0)))
            coords = np.vstack([coords, np.log2(np.array(p.shape, dtype=float))])
            self._points[(p.op, p.dtype)] = (coords, np.append(effs, p.tflops / peak))
        self._cache: dict[tuple, float] = {}

    def efficiency(self, kind: str, dtype: str, shape: tuple[int, int, int]) -> float:
        """Fraction of the tensor peak a kernel of this class, dtype and (m, n, k) reaches."""
        found = self._points.get((kind, dtype))
        if found is None:
            stated = self.profile.efficiency.get(kind)
            if stated is None:
                raise KeyError(f"profile {self.profile.device} has no points or efficiency for {kind}")
            self.fallbacks[f"{kind}/{dtype}"] = (
                f"{kind} in {dtype}: no measured points; roofline at {stated.value:.3f} of peak ({stated.source})")
            return stated.value
        coords, effs = found
        distance = np.linalg.norm(coords - np.log2(np.array(shape, dtype=float)), axis=1)
        nearest = np.argsort(distance)[:NEIGHBOURS]
        if distance[nearest[0]] < 1e-9:
            return float(effs[nearest[0]])
        weights = 1.0 / distance[nearest] ** 2
        return float(np.exp(np.sum(weights * np.log(effs[nearest])) / np.sum(weights)))

    def memory_efficiency(self) -> float:
        return self.profile.efficiency["memory"].value

    def op_time_s(self, op: Op, sms: int | None = None) -> float:
        """Seconds for ``op`` on ``sms`` streaming multiprocessors (default: all of the GPU's)."""
        sms = sms or self.gpu.sms
        key = (op.kind, op.dtype, op.shape, op.flops, op.bytes, sms)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        memory_s = op.bytes / (self.memory_efficiency() * self.gpu.hbm_tbps * 1e12)
        compute_s = 0.0
        if op.flops and op.kind is not Kind.ELEMENTWISE:
            peak = (self.gpu.fp8_tflops if op.dtype == "fp8" else self.gpu.bf16_tflops) * 1e12
            if op.dtype == "fp32":
                peak = self.gpu.bf16_tflops * 1e12 / 2  # TF32 tensor-core rate is half of BF16 on Hopper
            if op.kind in (Kind.GEMM, Kind.GROUPED_GEMM):
                mnk = op.shape[-3:]
                eff = self.efficiency(op.kind.value, op.dtype, tuple(int(x) for x in mnk))
            else:
                eff = self.efficiency(op.kind.value, op.dtype, (1, 1, 1))
            compute_s = op.flops / (eff * peak * sms / self.gpu.sms)
        seconds = max(compute_s, memory_s)
        self._cache[key] = seconds
        return seconds

