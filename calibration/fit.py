"""Fit measured kernel points into cost curves: a roofline with an efficiency curve per op class.

For each (op class, dtype, layout) the curve is ``time = overhead + FLOPs / (rate × sms_used / sms) +
bytes / memory_rate`` (elementwise kernels: ``overhead + bytes / rate``): a fixed cost per launch, a compute
rate reached on large problems and a bandwidth term for skinny shapes, which gives efficiency rising with
problem size and falling with fewer SMs.
The fitted model multiplies the curve by a per-point correction (inverse-distance weighted in log shape
and log SMs), so it reproduces every measured point exactly and follows the curve away from them.
``fit_report`` states the curve's own error and the leave-one-out error of the full model.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from moesim.calibration.domain import measured_domain
from moesim.calibration.profile import ClassFit, KernelPoint, Profile

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


GEMM_INPUT_BYTES = {"fp8": 1, "bf16": 2, "fp32": 4}


def point_bytes(p: KernelPoint) -> float:
    """HBM bytes of a point: measured, from its reported bandwidth, or the GEMM minimum (inputs + bf16 out)."""
    if p.bytes is not None:
        return p.bytes
    if p.memory_gbps is not None:
        return p.memory_gbps * 1e9 * p.seconds()
    m, n, k = p.shape[-3:]
    return p.groups * ((m * k + k * n) * GEMM_INPUT_BYTES.get(p.dtype, 2) + m * n * 2)


def coords(op: str, shape, groups: int, work: float, sms_fraction: float) -> np.ndarray:
    """Where a kernel sits for interpolation: log2 of its shape and of its SMs (an elementwise op priced
    without a shape: log2 of its bytes)."""
    if op == "elementwise" and not shape:
        dims = [work]
    elif op == "grouped_gemm":
        dims = [groups, *shape[-3:]]
    else:
        dims = list(shape)
    return np.log2(np.array([*dims, sms_fraction], dtype=float))


class ClassModel:
    """The fitted curve and corrections of one (op, dtype, layout) from its points.

    Curve: ``overhead + work / (compute_fraction × peak × sms_fraction) + bytes / (memory_fraction × HBM)``
    for FLOP-counted classes (the memory term carries skinny, bandwidth-bound shapes); elementwise classes
    have only ``overhead + bytes / (rate_fraction × HBM)``. A term the data does not support is dropped.
    """

    def __init__(self, op: str, dtype: str, layout: str, points: list[KernelPoint], peaks: dict[str, float],
                 max_overhead_s: float = np.inf, gemm_pass: str = "fprop", source: str = ""):
        self.op, self.dtype, self.layout, self.gemm_pass = op, dtype, layout, gemm_pass
        self.source = source  # the profile the points come from (its label)
        self.peaks = dict(peaks)  # the measured device's peaks: a GPU with others has this class projected
        self.basis = BASIS[op]
        self.points = points
        total_sms = peaks["sms"]
        peak = peak_per_s(peaks, self.basis, dtype)
        bandwidth = peak_per_s(peaks, "bytes", dtype)
        self.work = np.array([point_work(p) for p in points])
        self.bytes = np.array([point_bytes(p) for p in points]) if self.basis == "flops" else np.zeros(len(points))
        self.sms_fraction = np.array([(p.sms or total_sms) / total_sms for p in points])
        self.seconds = np.array([p.seconds() for p in points])
        self.launches = np.array([float(p.launches) for p in points])  # an in-situ class total spans several
        self.coords = np.array([coords(op, p.shape, p.groups, w, f)
                                for p, w, f in zip(points, self.work, self.sms_fraction)])
        # Elementwise ops from the workloads carry bytes but no shape: they interpolate over bytes alone.
        self.work_coords = np.array([coords(op, (), 1, w, f) for w, f in zip(self.work, self.sms_fraction)])
        self.domain = measured_domain(op, dtype, gemm_pass, points, self.work, total_sms)
        # The fastest point, as a fraction of the peak of the SMs it ran on: no price of this curve may beat it.
        self.max_rate_fraction = float(np.max(self.work / self.seconds / (peak * self.sms_fraction)))
        terms = [self.work / (peak * self.sms_fraction)]
        if self.basis == "flops":
            terms.append(self.bytes / bandwidth)
        coefficients = fit_curve(terms, self.seconds, max_overhead_s, self.launches)
        self.overhead_s = coefficients[0]
        self.inverse_fractions = coefficients[1:] + [0.0] * (2 - len(terms))
        curve = self._curve(self.work, self.bytes, self.sms_fraction, peak, bandwidth, self.launches)
        self.log_correction = np.log(self.seconds / curve)
        self.curve_errors = curve / self.seconds - 1.0

    @property
    def rate_fraction(self) -> float:
        """Fraction of peak (of HBM for elementwise) the large-problem rate reaches (inf: no such term)."""
        return 1.0 / self.inverse_fractions[0] if self.inverse_fractions[0] else float("inf")

    @property
    def memory_fraction(self) -> float | None:
        return 1.0 / self.inverse_fractions[1] if self.inverse_fractions[1] else None

    def _curve(self, work, nbytes, sms_fraction, peak: float, bandwidth: float, launches=1.0):
        compute, memory = self.inverse_fractions
        return launches * self.overhead_s + compute * work / (peak * sms_fraction) + memory * nbytes / bandwidth

    def seconds_for(self, shape, groups: int, work: float, sms_fraction: float, peak: float,
                    nbytes: float = 0.0, bandwidth: float = 1.0, launches: float = 1.0) -> float:
        """Seconds on a device of ``peak`` (FLOP/s, or bytes/s for elementwise, over all its SMs) and HBM
        ``bandwidth`` (bytes/s), using ``sms_fraction`` of its SMs; ``nbytes`` is the kernel's HBM traffic,
        ``launches`` the kernels the work is spread over."""
        curve = self._curve(work, nbytes, sms_fraction, peak, bandwidth, launches)
        where = coords(self.op, shape, groups, work, sms_fraction)
        known = self.work_coords if self.op == "elementwise" and not shape else self.coords
        if len(where) != known.shape[1]:
            return float(curve)
        distance = np.linalg.norm(known - where, axis=1)
        nearest = np.argsort(distance)[:NEIGHBOURS]
        if distance[nearest[0]] < 1e-9:  # a measured shape: the mean of its repeated measurements
            return float(curve * np.exp(np.mean(self.log_correction[distance < 1e-9])))
        weights = 1.0 / distance[nearest] ** 2
        return float(curve * np.exp(np.sum(weights * self.log_correction[nearest]) / np.sum(weights)))


def fit_curve(terms: list[np.ndarray], seconds: np.ndarray, max_overhead_s: float = np.inf,
              launches: np.ndarray | None = None) -> list[float]:
    """Non-negative least squares in relative time of ``t = launches · overhead + Σ c_i · term_i``:
    [overhead, c_1, …] (``launches`` defaults to one kernel per point).

    Each term is the point's seconds at 100 % of a peak, so c_i is the inverse of the fraction reached. Every
    subset of terms is tried (there are at most three); the best fit with all coefficients positive wins.
    The overhead may not exceed ``max_overhead_s``: a fixed cost per launch cannot be longer than the shortest
    kernel the device was measured running. Without that bound, two large shapes of unequal efficiency fit a
    line with an intercept of 100+ µs, and the curve then stops scaling with the work.
    """
    columns = [np.ones_like(seconds) if launches is None else launches, *terms]
    best, best_residual = None, np.inf
    for mask in range(1, 2 ** len(columns)):
        chosen = [i for i in range(len(columns)) if mask >> i & 1]
        if chosen == [0] or len(chosen) > len(seconds):
            continue
        a = np.column_stack([columns[i] / seconds for i in chosen])
        solution, *_ = np.linalg.lstsq(a, np.ones_like(seconds), rcond=None)
        if np.any(solution <= 0) or (0 in chosen and solution[0] > max_overhead_s):
            continue
        residual = float(np.sum((a @ solution - 1.0) ** 2))
        if residual < best_residual - 1e-12:
            best_residual = residual
            best = [0.0] * len(columns)
            for i, value in zip(chosen, solution):
                best[i] = float(value)
    if best is None:  # nothing positive fits: the plain rate through the mean (one point, or degenerate data)
        best = [0.0] * len(columns)
        best[1] = float(np.mean(seconds / terms[0]))
    return best


ClassKey = tuple[str, str, str, str]  # (op, dtype, layout, gemm pass)


def group_points(profile: Profile, library: str | None = None) -> dict[ClassKey, list[KernelPoint]]:
    """Points by class; with ``library``, only that kernel generation's GEMM points (and generation-free ones)."""
    groups: dict[ClassKey, list[KernelPoint]] = defaultdict(list)
    for p in profile.points:
        if library is not None and p.library not in ("", library):
            continue
        groups[(p.op, p.dtype, p.layout, p.gemm_pass)].append(p)
    return dict(groups)


def shortest_kernel_s(profile: Profile) -> float:
    """The shortest measured kernel of the profile: the bound on any class's fixed cost per launch."""
    return min((p.seconds() / p.launches for p in profile.points), default=np.inf)


def class_models(profile: Profile, library: str | None = None) -> dict[ClassKey, ClassModel]:
    cap = shortest_kernel_s(profile)
    return {key: ClassModel(*key[:3], pts, profile.peaks, cap, key[3], profile.label)
            for key, pts in group_points(profile, library).items()}


def class_label(op: str, layout: str, gemm_pass: str = "fprop", library: str = "") -> str:
    """How tables name a class: ``grouped_gemm/contiguous wgrad (cutlass)``."""
    label = f"{op}/{layout}" if layout != "normal" else op
    if gemm_pass != "fprop":
        label += f" {gemm_pass}"
    return f"{label} ({library})" if library else label


def fit_report(profile: Profile) -> list[ClassFit]:
    """One :class:`ClassFit` per (op, dtype, layout), with curve and leave-one-out errors (relative time)."""
    report = []
    cap = shortest_kernel_s(profile)
    by_library: dict[tuple, list[KernelPoint]] = defaultdict(list)
    for p in profile.points:  # each kernel generation fitted on its own
        by_library[(p.op, p.dtype, p.layout, p.gemm_pass, p.library)].append(p)
    for (op, dtype, layout, gemm_pass, _), points in by_library.items():
        model = ClassModel(op, dtype, layout, points, profile.peaks, cap, gemm_pass)
        peak = peak_per_s(profile.peaks, model.basis, dtype)
        bandwidth = peak_per_s(profile.peaks, "bytes", dtype)
        loo = []
        if len(points) >= 3:
            for i, p in enumerate(points):
                rest = ClassModel(op, dtype, layout, points[:i] + points[i + 1:], profile.peaks, cap, gemm_pass)
                pred = rest.seconds_for(p.shape, p.groups, model.work[i], model.sms_fraction[i], peak,
                                        model.bytes[i], bandwidth, p.launches)
                loo.append(pred / model.seconds[i] - 1.0)
        unit = 1e12 if model.basis == "flops" else 1e9
        rate = model.rate_fraction * peak / unit if model.inverse_fractions[0] else None
        memory = model.memory_fraction
        errors = np.abs(model.curve_errors)
        report.append(ClassFit(
            op=class_label(op, layout, gemm_pass, points[0].library), dtype=dtype, basis=model.basis,
            overhead_us=model.overhead_s * 1e6, rate=rate,
            memory_gbps=memory * bandwidth / 1e9 if memory else None, points=len(points),
            curve_rms_error=float(np.sqrt(np.mean(errors ** 2))), curve_max_error=float(errors.max()),
            loo_rms_error=float(np.sqrt(np.mean(np.square(loo)))) if loo else None,
            loo_max_error=float(np.max(np.abs(loo))) if loo else None))
    return report
