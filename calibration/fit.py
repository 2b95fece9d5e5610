"""Fit measured kernel points into cost curves: a roofline with an efficiency curve per op class.

For each (op class, dtype, layout) the curve is ``time = overhead + work / (rate × sms_used / sms)``, work
being FLOPs (GEMMs, attention) or HBM bytes (elementwise kernels): a fixed cost per launch plus a rate
reached on large problems, which gives efficiency rising with problem size and falling with fewer SMs.
The fitted model multiplies the curve by a per-point correction (inverse-distance weighted in log shape
and log SMs), so it reproduces every measured point exactly and follows the curve away from them.
``fit_report`` states the curve's own error and the leave-one-out error of the full model.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from calibration.profile import ClassFit, KernelPoint, Profile

NEIGHBOURS = 4
BASIS = {"gemm": "flops", "grouped_gemm": "flops", "attention": "flops", "elementwise": "bytes"}


def peak_per_s(peaks: dict[str, float], basis: str, dtype: str) -> float:
    """FLOP/s (or bytes/s) of a device's peak for this basis and dtype."""
    if basis == "bytes":
        return peaks["hbm_tbps"] * 1e12
    if dtype == "fp32":
        return peaks["bf16_tflops"] * 1e12 / 2  # TF32 tensor-core rate is half of BF16 on Hopper
    return peaks[f"{dtype}_tflops"] * 1e12


def point_work(point: KernelPoint) -> float:
    if BASIS[point.op] == "bytes":
        if point.bytes is not None:
            return point.bytes
        return point.memory_gbps * 1e9 * point.seconds()
    return point.flops_executed()


def coords(op: str, shape, groups: int, work: float, sms_fraction: float) -> np.ndarray:
    """Where a kernel sits for interpolation: log2 of its shape (bytes for elementwise) and of its SMs."""
    if op == "elementwise":
        dims = [work]
    elif op == "grouped_gemm":
        dims = [groups, *shape[-3:]]
    else:
        dims = list(shape)
    return np.log2(np.array([*dims, sms_fraction], dtype=float))


class ClassModel:
    """The fitted curve and corrections of one (op, dtype, layout) from its points."""

    def __init__(self, op: str, dtype: str, layout: str, points: list[KernelPoint], peaks: dict[str, float]):
        self.op, self.dtype, self.layout = op, dtype, layout
        self.basis = BASIS[op]
        self.points = points
        total_sms = peaks["sms"]
        peak = peak_per_s(peaks, self.basis, dtype)
        self.work = np.array([point_work(p) for p in points])
        self.sms_fraction = np.array([(p.sms or total_sms) / total_sms for p in points])
        self.seconds = np.array([p.seconds() for p in points])
        self.coords = np.array([coords(op, p.shape, p.groups, w, f)
                                for p, w, f in zip(points, self.work, self.sms_fraction)])
        self.overhead_s, self.rate_fraction = fit_curve(self.work, self.sms_fraction * peak, self.seconds)
        curve = self.overhead_s + self.work / (self.rate_fraction * peak * self.sms_fraction)
        self.log_correction = np.log(self.seconds / curve)
        self.curve_errors = curve / self.seconds - 1.0

    def seconds_for(self, shape, groups: int, work: float, sms_fraction: float, peak: float) -> float:
        """Seconds on a device of ``peak`` (FLOP/s or bytes/s over all its SMs) using ``sms_fraction`` of it."""
        curve = self.overhead_s + work / (self.rate_fraction * peak * sms_fraction)
        where = coords(self.op, shape, groups, work, sms_fraction)
        if len(where) != self.coords.shape[1]:
            return curve
        distance = np.linalg.norm(self.coords - where, axis=1)
        nearest = np.argsort(distance)[:NEIGHBOURS]
        if distance[nearest[0]] < 1e-9:
            return float(curve * np.exp(self.log_correction[nearest[0]]))
        weights = 1.0 / distance[nearest] ** 2
        return float(curve * np.exp(np.sum(weights * self.log_correction[nearest]) / np.sum(weights)))


def fit_curve(work: np.ndarray, peak: np.ndarray, seconds: np.ndarray) -> tuple[float, float]:
    """Least squares in relative time of ``t = overhead + work / (fraction × peak)``: (overhead_s, fraction).

    ``peak`` is per point (it already includes the point's SM share). Both parameters stay positive: a
    negative overhead is refitted as zero.
    """
    scaled = work / peak  # seconds at 100 % of peak
    a = np.column_stack([1.0 / seconds, scaled / seconds])
    if len(seconds) >= 2:
        (overhead, inv_fraction), *_ = np.linalg.lstsq(a, np.ones_like(seconds), rcond=None)
        if overhead >= 0 and inv_fraction > 0:
            return float(overhead), float(1.0 / inv_fraction)
    inv_fraction = float(np.sum(a[:, 1]) / np.sum(a[:, 1] ** 2))
    return 0.0, 1.0 / inv_fraction


def group_points(profile: Profile) -> dict[tuple[str, str, str], list[KernelPoint]]:
    groups: dict[tuple[str, str, str], list[KernelPoint]] = defaultdict(list)
    for p in profile.points:
        groups[(p.op, p.dtype, p.layout)].append(p)
    return dict(groups)


def class_models(profile: Profile) -> dict[tuple[str, str, str], ClassModel]:
    return {key: ClassModel(*key, pts, profile.peaks) for key, pts in group_points(profile).items()}


def fit_report(profile: Profile) -> list[ClassFit]:
    """One :class:`ClassFit` per (op, dtype, layout), with curve and leave-one-out errors (relative time)."""
    report = []
    for (op, dtype, layout), points in group_points(profile).items():
        model = ClassModel(op, dtype, layout, points, profile.peaks)
        peak = peak_per_s(profile.peaks, model.basis, dtype)
        loo = []
        if len(points) >= 3:
            for i, p in enumerate(points):
                rest = ClassModel(op, dtype, layout, points[:i] + points[i + 1:], profile.peaks)
                pred = rest.seconds_for(p.shape, p.groups, model.work[i], model.sms_fraction[i], peak)
                loo.append(pred / model.seconds[i] - 1.0)
        rate = model.rate_fraction * peak / (1e12 if model.basis == "flops" else 1e9)
        errors = np.abs(model.curve_errors)
        report.append(ClassFit(
            op=op, dtype=dtype, basis=model.basis, overhead_us=model.overhead_s * 1e6, rate=rate,
            points=len(points), curve_rms_error=float(np.sqrt(np.mean(errors ** 2))),
            curve_max_error=float(errors.max()),
            loo_rms_error=float(np.sqrt(np.mean(np.square(loo)))) if loo else None,
            loo_max_error=float(np.max(np.abs(loo))) if loo else None))
        report[-1] = report[-1].model_copy(update={"op": f"{op}/{layout}" if layout != "normal" else op})
    return report
