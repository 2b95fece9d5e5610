"""``moesim calibrate validate``: the cost model against published kernel measurements on H800.

Two references, both committed with their sources: the DeepGEMM README's FP8 GEMM and grouped-GEMM table
(``profiles/h800-deepgemm.csv``) and kernel durations from DeepSeek's profiler trace
(``profiles/h800-trace-kernels.csv``, re-extracted from the trace itself when it is present). A reference
point the profile itself contains is held out (predicted from the other points), so agreement is never
by construction. Errors are (model − measured) / measured of kernel time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from moesim.calibration.cost_model import CostModel
from moesim.calibration.profile import KernelPoint, Profile, points_from_deepgemm_csv, same_design_profiles
from moesim.calibration.fit import point_bytes
from moesim.calibration.from_trace import TRACE_KERNELS
from moesim.calibration.trace_kernels import committed_excerpt, extract, find_trace
from moesim.workloads.ops import Kind, Op, Phase

DEEPGEMM_SOURCE = "DeepGEMM README a9967bc, H800"
# The trace's compute kernels launch 112-block grids: 132 SMs less the 20 DeepSeek-V3 reserves for
# communication (TR §3.2.2), so they are priced on 112 SMs.
TRACE_SMS = 112


@dataclass(frozen=True)
class Row:
    source: str
    kernel: str
    shape: str
    sms: int
    measured_us: float
    model_us: float

    @property
    def error(self) -> float:
        return self.model_us / self.measured_us - 1.0


def _same(a: KernelPoint, op: str, dtype: str, shape, groups: int, layout: str) -> bool:
    return (a.op, a.dtype, list(a.shape[-3:]) if op != "attention" else a.shape, a.groups, a.layout) == \
        (op, dtype, list(shape[-3:]) if op != "attention" else list(shape), groups, layout)


def _model_for(profiles: list[Profile], gpu, op: str, dtype: str, shape, groups: int, layout: str,
               kernels: str) -> CostModel:
    """A cost model without the reference point itself, at the reference's kernel generation: neither its curves
    nor its classes' ceilings (:func:`moesim.calibration.profile.same_design_profiles`) hold the point."""
    def without(profs):
        return [prof.model_copy(update={"points": [p for p in prof.points
                                                   if not _same(p, op, dtype, shape, groups, layout)]})
                for prof in profs]
    return CostModel(without(profiles), gpu, kernels, without(same_design_profiles(gpu)))


def _op(op: str, dtype: str, shape, groups: int, layout: str, flops: float, nbytes: float) -> Op:
    kind = Kind(op)
    phase = Phase.B if layout == "causal_bwd" else Phase.F
    shape = (groups, *shape) if kind is Kind.GROUPED_GEMM else tuple(shape)
    return Op(f"validate.{op}", kind, phase, "VALIDATE", dtype, flops, nbytes, shape)


def validation_rows(profile: Profile | list[Profile], gpu, repo_root: Path) -> tuple[list[Row], list[str], str]:
    """Rows for both references, the cost model's fallback notes, and where the trace kernels came from.
    DeepGEMM's table is priced as DeepGEMM kernels, the trace's kernels as the CUTLASS-based generation it ran."""
    profiles = list(profile) if isinstance(profile, (list, tuple)) else [profile]
    rows, notes = [], set()
    text = resources.files("moesim.calibration").joinpath("profiles", "h800-deepgemm.csv").read_text()
    for p in points_from_deepgemm_csv(text, DEEPGEMM_SOURCE):
        model = _model_for(profiles, gpu, p.op, p.dtype, p.shape, p.groups, p.layout, "deepgemm")
        op = _op(p.op, p.dtype, p.shape, p.groups, p.layout, p.flops_executed(), point_bytes(p))
        rows.append(Row(f"DeepGEMM {p.layout}", p.kernel, _shape(p.groups, p.shape), gpu.sms,
                        p.seconds() * 1e6, model.op_time_s(op, gpu.sms, p.layout) * 1e6))
        notes.update([*model.fallbacks.values(), *(o.note for o in model.outside.values())])
    trace = find_trace(repo_root)
    kernels = extract(trace) if trace else committed_excerpt()
    # Named from the checkout (../shared/...), so the line reads the same wherever the checkout is.
    origin = os.path.relpath(trace, repo_root) if trace else \
        "calibration/profiles/h800-trace-kernels.csv (committed excerpt)"
    for k in kernels:
        if k.op == "attention":
            b, h, s, dqk, dv = k.shape
            flops = 2.0 * b * h * (dqk + dv) * s * (s + 1) / 2 * (2.5 if k.layout == "causal_bwd" else 1.0)
            nbytes = b * s * h * (2 * dqk + 2 * dv) * 2 * (2 if k.layout == "causal_bwd" else 1)
        else:
            m, n, kk = k.shape
            flops = 2.0 * k.groups * m * n * kk
            nbytes = k.groups * ((m * kk + kk * n) + m * n * 2)
        model = _model_for(profiles, gpu, k.op, k.dtype, k.shape, k.groups, k.layout, TRACE_KERNELS)
        op = _op(k.op, k.dtype, k.shape, k.groups, k.layout, flops, nbytes)
        rows.append(Row(f"trace {k.phase} L{k.layer}", k.kernel, _shape(k.groups, k.shape), TRACE_SMS,
                        k.duration_us, model.op_time_s(op, TRACE_SMS, k.layout) * 1e6))
        notes.update([*model.fallbacks.values(), *(o.note for o in model.outside.values())])
    return rows, sorted(notes), origin


def _shape(groups: int, shape) -> str:
    return (f"{groups}×" if groups > 1 else "") + "×".join(map(str, shape))


def summary(rows: list[Row]) -> dict[str, tuple[int, float, float]]:
    """Per reference (DeepGEMM, trace) and overall: (points, mean |error|, max |error|)."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(r.source.split()[0], []).append(abs(r.error))
        groups.setdefault("all", []).append(abs(r.error))
    return {k: (len(v), sum(v) / len(v), max(v)) for k, v in groups.items()}


def in_situ_checks(repo_root: Path):
    """Per op class of the in-situ profile fitted from DeepSeek's trace: trace vs model and the error of each
    layer pair predicted by a profile fitted without it (None when the trace is not beside the checkout)."""
    from moesim.calibration.from_trace import check_profile, profile_from_trace
    from moesim.workloads.loader import load_scenario
    from moesim.workloads.traces import load_trace

    trace = find_trace(repo_root)
    if trace is None:
        return None
    scenario = load_scenario(preset="deepseek-v3-h800")
    gpu = scenario.cluster.gpu
    peaks = {"bf16_tflops": gpu.bf16_tflops, "fp8_tflops": gpu.fp8_tflops, "hbm_tbps": gpu.hbm_tbps, "sms": gpu.sms}
    profile, samples, _ = profile_from_trace(load_trace(trace), scenario, peaks)
    return check_profile(profile, samples, gpu, TRACE_KERNELS, gpu.sms - scenario.training.comm_sms)
