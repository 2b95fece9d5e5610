"""Project a profile onto another GPU by its specifications.

Each point is classified on the device it was measured on by its roofline: compute-bound if its FLOPs at
the tensor peak take longer than its bytes at the HBM bandwidth, memory-bound otherwise. Compute-bound
points scale with the ratio of tensor peaks (per dtype), memory-bound points with the ratio of HBM
bandwidths. Collectives depend on the interconnect, not on these specifications, and are not carried over.
The result's ``origin`` and ``device`` say it is a projection.
"""

from __future__ import annotations

from calibration.fit import fit_report, peak_per_s, point_bytes
from calibration.profile import KernelPoint, Profile


def is_memory_bound(p: KernelPoint, peaks: dict[str, float]) -> bool:
    if p.op == "elementwise":
        return True
    compute_s = p.flops_executed() / peak_per_s(peaks, "flops", p.dtype)
    return point_bytes(p) / peak_per_s(peaks, "bytes", p.dtype) > compute_s


def project(profile: Profile, target: dict, key: str) -> Profile:
    """``profile`` as it would measure on GPU ``target`` (a topologies/data/gpus.yaml spec named ``key``)."""
    peaks = {"bf16_tflops": float(target["bf16_tflops"]), "fp8_tflops": float(target["fp8_tflops"]),
             "hbm_tbps": float(target["hbm_tbps"]), "sms": float(target["sms"])}
    bandwidth_ratio = peaks["hbm_tbps"] / profile.peaks["hbm_tbps"]
    points = []
    for p in profile.points:
        if is_memory_bound(p, profile.peaks):
            ratio, bound = bandwidth_ratio, "memory-bound"
        else:
            ratio = peak_per_s(peaks, "flops", p.dtype) / peak_per_s(profile.peaks, "flops", p.dtype)
            bound = "compute-bound"
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
