"""Project a profile onto another GPU by its specifications.

Each point is classified on the device it was measured on by its roofline: compute-bound if its FLOPs at
the tensor peak take longer than its bytes at the HBM bandwidth, memory-bound otherwise. Compute-bound
points scale with the ratio of tensor peaks (per dtype), memory-bound points with the ratio of HBM
bandwidths. Collectives depend on the interconnect, not on these specifications, and are not carried over.
The result's ``origin`` and ``device`` say it is a projection.
"""

from __future__ import annotations

from moesim.calibration.fit import fit_report, peak_per_s, point_bytes
from moesim.calibration.profile import KernelPoint, Profile


def is_memory_bound(p: KernelPoint, peaks: dict[str, float]) -> bool:
    if p.op == "elementwise":
        return True
    compute_s = p.flops_executed() / peak_per_s(peaks, "flops", p.dtype)
    return point_bytes(p) / peak_per_s(peaks, "bytes", p.dtype) > compute_s


def _target_peaks(target: dict) -> dict[str, float]:
    # A GPU without FP8 tensor cores (A100) keeps its BF16 peak here; its FP8 points are dropped (project_points).
    return {"bf16_tflops": float(target["bf16_tflops"]),
            "fp8_tflops": float(target["fp8_tflops"] or target["bf16_tflops"]),
            "hbm_tbps": float(target["hbm_tbps"]), "sms": float(target["sms"])}


def scaling(p: KernelPoint, profile: Profile, peaks: dict[str, float]) -> tuple[str, float]:
    """(``compute-bound`` or ``memory-bound``, the factor its rate is multiplied by on the GPU of ``peaks``)."""
    if is_memory_bound(p, profile.peaks):
        return "memory-bound", peaks["hbm_tbps"] / profile.peaks["hbm_tbps"]
    return "compute-bound", peak_per_s(peaks, "flops", p.dtype) / peak_per_s(profile.peaks, "flops", p.dtype)


def projection_rows(profile: Profile, target: dict) -> list[dict]:
    """Class by class (op, layout, dtype, pass), which scaling carries ``profile``'s points to GPU ``target``:
    points that are compute-bound (× tensor-peak ratio) and memory-bound (× HBM-bandwidth ratio)."""
    peaks = _target_peaks(target)
    rows: dict[tuple, dict] = {}
    for p in profile.points:
        key = (p.op, p.layout, p.dtype, p.gemm_pass, p.library)
        row = rows.setdefault(key, {"op": p.op, "layout": p.layout, "dtype": p.dtype, "pass": p.gemm_pass,
                                    "library": p.library or "", "points": 0, "compute_bound": 0, "memory_bound": 0,
                                    "tensor_peak_ratio": None, "hbm_ratio": None, "dropped": 0})
        row["points"] += 1
        if p.dtype == "fp8" and target["fp8_tflops"] is None:
            row["dropped"] += 1
            continue
        bound, ratio = scaling(p, profile, peaks)
        if bound == "memory-bound":
            row["memory_bound"] += 1
            row["hbm_ratio"] = ratio
        else:
            row["compute_bound"] += 1
            row["tensor_peak_ratio"] = ratio
    return list(rows.values())


def project(profile: Profile, target: dict, key: str) -> Profile:
    """``profile`` as it would measure on GPU ``target`` (a topologies/data/gpus.yaml spec named ``key``)."""
    peaks = _target_peaks(target)
    bandwidth_ratio = peaks["hbm_tbps"] / profile.peaks["hbm_tbps"]
    points = []
    for p in profile.points:
        if p.dtype == "fp8" and target["fp8_tflops"] is None:
            continue  # no FP8 tensor cores: an FP8 kernel does not run there
        bound, ratio = scaling(p, profile, peaks)
        sms = None if p.sms is None else max(1, round(p.sms * peaks["sms"] / profile.peaks["sms"]))
        points.append(p.model_copy(update={
            "tflops": p.tflops * ratio,
            "memory_gbps": None if p.memory_gbps is None else p.memory_gbps * ratio,
            "time_us": None if p.time_us is None else p.time_us / ratio,
            "bytes": point_bytes(p) if p.op == "elementwise" else p.bytes, "sms": sms,
            "source": f"projected ({bound}, ×{ratio:.3f}) from {profile.device}: {p.source}"}))
    origin = (f"projected from {profile.device} ({profile.origin}) by specifications: compute-bound points "
              f"scaled by tensor peak, memory-bound by HBM bandwidth (×{bandwidth_ratio:.3f})")
    projected = Profile(
        device=f"{target['name']} (projected from {profile.device})", origin=origin, peaks=peaks, points=points,
        efficiency=profile.efficiency,
        provenance={**profile.provenance, "projected_from": profile.device, "projected_onto": key,
                    "projection": origin, "collectives": "not projected: they depend on the interconnect"})
    projected.fit = fit_report(projected)
    return projected
