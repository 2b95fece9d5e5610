"""Extrapolation error, measured rather than assumed (``moesim calibrate validate``).

For each class of a profile with enough points of different sizes, the points are split at the median FLOPs per
kernel: a curve fitted on the small shapes prices the large ones, and one fitted on the large prices the small.
Beside each, the shape model (:mod:`moesim.calibration.shape_model`) prices the same held-out points with its efficiency
taken from the kept points only, so the two ways of pricing outside a measured domain are compared on data. The
shape model's own error on every measured point (efficiency from the class's fastest point) is reported too.
Errors are (model − measured) / measured of kernel time.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from moesim.calibration.fit import ClassModel, class_label, peak_per_s, point_bytes, point_work, shortest_kernel_s
from moesim.calibration.profile import KernelPoint, Profile
from moesim.calibration.shape_model import Ceiling, class_ceilings, shape_model_s

MIN_POINTS = 4  # a class needs this many points, at least two on each side of the split, to be checked


@dataclass(frozen=True)
class RangeCheck:
    """One class, one direction: errors of the curve fitted on one side, and of the shape model, on the other."""

    profile: str
    klass: str  # class label and dtype, e.g. "gemm wgrad (deepgemm) fp8"
    direction: str  # "small→large" or "large→small"
    fitted_on: int
    curve_errors: tuple[float, ...]
    shape_errors: tuple[float, ...]


def _sms(p: KernelPoint, peaks) -> int:
    return int(p.sms or peaks["sms"])


def fastest(points: list[KernelPoint], peaks) -> Ceiling:
    """The ceiling ``points`` (one class) set, as :func:`moesim.calibration.shape_model.class_ceilings` finds it."""
    (ceiling,) = class_ceilings([Profile(device="held out", peaks=peaks, points=points)], None).values()
    return ceiling


def shape_price_s(p: KernelPoint, peaks, ceiling: Ceiling, memory_fraction: float, minimum_s: float) -> float:
    """The shape model's seconds for point ``p`` (all its launches) at ``ceiling``'s efficiency, clamped at its
    rate, with HBM at ``memory_fraction`` of the peak and ``minimum_s`` per kernel."""
    sms, total = _sms(p, peaks), int(peaks["sms"])
    peak = peak_per_s(peaks, "flops", p.dtype)
    shape = p.shape if p.op == "attention" else p.shape[-3:]
    seconds = shape_model_s(p.op, shape, p.groups, p.flops_executed(), point_bytes(p), sms, peak, total,
                            memory_fraction * peaks["hbm_tbps"] * 1e12, ceiling.efficiency, minimum_s * p.launches)
    return max(seconds, p.flops_executed() / (ceiling.fraction * peak * sms / total))


def _classes(profile: Profile) -> dict[tuple, list[KernelPoint]]:
    groups: dict[tuple, list[KernelPoint]] = defaultdict(list)
    for p in profile.points:
        if p.op != "elementwise":  # streaming kernels have no shape model; their curves are checked by fit_report
            groups[(p.op, p.dtype, p.layout, p.gemm_pass, p.library)].append(p)
    return groups


def _curve_error(model: ClassModel, p: KernelPoint, peaks) -> float:
    peak = peak_per_s(peaks, model.basis, p.dtype)
    seconds = model.seconds_for(p.shape, p.groups, point_work(p), _sms(p, peaks) / peaks["sms"], peak,
                                point_bytes(p), peak_per_s(peaks, "bytes", p.dtype), p.launches)
    return seconds / p.seconds() - 1.0


def range_checks(profile: Profile, memory_fraction: float) -> list[RangeCheck]:
    """Small→large and large→small for each class of ``profile`` with enough points of different sizes."""
    checks = []
    cap = shortest_kernel_s(profile)
    for (op, dtype, layout, gemm_pass, library), points in _classes(profile).items():
        size = {id(p): p.flops_executed() / p.launches for p in points}
        split = float(np.median(sorted(set(size.values()))))
        small = [p for p in points if size[id(p)] <= split]
        large = [p for p in points if size[id(p)] > split]
        if len(points) < MIN_POINTS or len(small) < 2 or len(large) < 2:
            continue
        klass = f"{class_label(op, layout, gemm_pass, library)} {dtype}"
        for direction, kept, priced in (("small→large", small, large), ("large→small", large, small)):
            model = ClassModel(op, dtype, layout, kept, profile.peaks, cap, gemm_pass)
            ceiling = fastest(kept, profile.peaks)
            checks.append(RangeCheck(
                profile.label, klass, direction, len(kept),
                tuple(_curve_error(model, p, profile.peaks) for p in priced),
                tuple(shape_price_s(p, profile.peaks, ceiling, memory_fraction, model.overhead_s) / p.seconds() - 1.0
                      for p in priced)))
    return checks


def shape_model_errors(profile: Profile, memory_fraction: float) -> dict[str, tuple[float, ...]]:
    """Per class of ``profile``, the shape model's error on every point, efficiency from the class's fastest."""
    errors = {}
    cap = shortest_kernel_s(profile)
    for (op, dtype, layout, gemm_pass, library), points in _classes(profile).items():
        ceiling = fastest(points, profile.peaks)
        overhead = ClassModel(op, dtype, layout, points, profile.peaks, cap, gemm_pass).overhead_s
        errors[f"{class_label(op, layout, gemm_pass, library)} {dtype}"] = tuple(
            shape_price_s(p, profile.peaks, ceiling, memory_fraction, overhead) / p.seconds() - 1.0 for p in points)
    return errors
