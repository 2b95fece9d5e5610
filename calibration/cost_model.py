"""The cost model: seconds for a compute op on a GPU, from a profile's fitted curves or the roofline.

For an op class with measured points (see :mod:`calibration.fit`) the time is the fitted curve
``overhead + work / (rate × sms_used / sms)`` times a correction that makes it exact on measured shapes;
rates are stored as fractions of the measured device's peak and applied to the target GPU's peak, so the
same profile prices another GPU of the same kind. Elementwise kernels use the curve of their own kernel
(RMSNorm, SwiGLU, RoPE) or of a plain add. Op classes without points fall back to the roofline
``max(flops / (efficiency × peak), bytes / (memory efficiency × HBM))`` with the profile's stated
efficiency (each with its source); every fallback is recorded in :attr:`CostModel.fallbacks`.
"""

from __future__ import annotations

from calibration.fit import ClassModel, class_models, peak_per_s, point_bytes, point_work
from calibration.profile import Profile
from workloads.ops import Kind, Op, Phase

# The layouts a training op runs as, in order of preference: DeepSeek-V3 training uses DeepGEMM's contiguous
# grouped layout (masked is the decoding layout); attention forward and backward are different kernels.
LAYOUTS = {Kind.GEMM: ("normal",), Kind.GROUPED_GEMM: ("contiguous", "masked")}
ELEMENTWISE_KERNELS = (("norm", "rmsnorm"), ("swiglu", "swiglu"), ("rope", "rope"), ("cast", "fp8_cast"))


def elementwise_kernel(op_name: str) -> str:
    """The benchmarked kernel an elementwise op is priced as (``add`` for plain memory-bound kernels)."""
    for marker, kernel in ELEMENTWISE_KERNELS:
        if marker in op_name:
            return kernel
    return "add"


def point_op(point) -> Op:
    """The op a profile point measured, as the simulator would price it (for checks and validation)."""
    kind = Kind(point.op)
    phase = Phase.B if point.layout == "causal_bwd" else Phase.F
    if kind is Kind.ELEMENTWISE:
        return Op(f"bench.{point.layout}", kind, phase, "BENCH", point.dtype, 0.0, point_work(point),
                  tuple(point.shape))
    shape = (point.groups, *point.shape[-3:]) if kind is Kind.GROUPED_GEMM else tuple(point.shape)
    return Op(f"bench.{point.op}", kind, phase, "BENCH", point.dtype, point.flops_executed(), point_bytes(point),
              shape)


class CostModel:
    """Prices compute ops for one GPU spec (a :class:`workloads.scenario.GpuSpec`) from a profile."""

    def __init__(self, profile: Profile, gpu):
        self.profile = profile
        self.gpu = gpu
        self.fallbacks: dict[str, str] = {}
        self.models: dict[tuple[str, str, str], ClassModel] = class_models(profile)
        self._cache: dict[tuple, float] = {}

    def _model(self, op: Op, layout: str | None = None) -> ClassModel | None:
        kind = op.kind.value
        if layout is not None and (kind, op.dtype, layout) in self.models:
            return self.models[(kind, op.dtype, layout)]
        if op.kind is Kind.ELEMENTWISE:
            kernel = elementwise_kernel(op.name)
            for layout in (kernel, "add"):
                found = [m for (k, _, lay), m in self.models.items() if k == kind and lay == layout]
                if found:
                    return found[0]
            return None
        if op.kind is Kind.ATTENTION:
            layouts = ("causal_bwd",) if op.phase is Phase.B else ("causal_fwd",)
        else:
            layouts = LAYOUTS[op.kind]
        for layout in layouts:
            if (kind, op.dtype, layout) in self.models:
                return self.models[(kind, op.dtype, layout)]
        same_dtype = [m for (k, d, _), m in self.models.items() if k == kind and d == op.dtype]
        if same_dtype:
            return same_dtype[0]
        if kind in self.profile.efficiency:
            return None  # the stated efficiency of this class is a closer measurement than another dtype's curve
        other = [m for (k, d, lay), m in self.models.items() if k == kind and (lay in layouts or not layouts)]
        other = other or [m for (k, _, _), m in self.models.items() if k == kind]
        if other:
            m = other[0]
            self.fallbacks[f"{kind}/{op.dtype}"] = (
                f"{kind} in {op.dtype}: no {op.dtype} points; the {m.dtype} curve's fraction of peak is applied "
                f"to the {op.dtype} peak")
            return m
        return None

    def memory_efficiency(self) -> float:
        """Fraction of HBM bandwidth a large streaming kernel reaches (fitted ``add`` curve, else stated)."""
        add = [m for (k, _, lay), m in self.models.items() if k == "elementwise" and lay == "add"]
        if add:
            return min(1.0, add[0].rate_fraction)
        return self.profile.efficiency["memory"].value

    def _roofline_s(self, op: Op, sms: int) -> float:
        memory = self.profile.efficiency["memory"]
        memory_s = op.bytes / (memory.value * self.gpu.hbm_tbps * 1e12)
        if op.kind is Kind.ELEMENTWISE:
            self.fallbacks[f"elementwise/{elementwise_kernel(op.name)}"] = (
                f"elementwise {elementwise_kernel(op.name)}: no measured points; memory roofline at "
                f"{memory.value:.3f} of HBM ({memory.source})")
            return memory_s
        stated = self.profile.efficiency.get(op.kind.value)
        if stated is None:
            raise ValueError(f"profile {self.profile.device} has no points or stated efficiency for {op.kind.value}"
                             f" kernels; measure them (moesim calibrate run --ops {op.kind.value}) or use another"
                             f" profile")
        self.fallbacks[f"{op.kind.value}/{op.dtype}"] = (
            f"{op.kind.value} in {op.dtype}: no measured points; roofline at {stated.value:.3f} of peak "
            f"({stated.source})")
        peak = self._peak(op.dtype)
        return max(op.flops / (stated.value * peak * sms / self.gpu.sms), memory_s)

    def _peak(self, dtype: str) -> float:
        return peak_per_s({"bf16_tflops": self.gpu.bf16_tflops, "fp8_tflops": self.gpu.fp8_tflops,
                           "hbm_tbps": self.gpu.hbm_tbps}, "flops", dtype)

    def op_time_s(self, op: Op, sms: int | None = None, layout: str | None = None) -> float:
        """Seconds for ``op`` on ``sms`` streaming multiprocessors (default: all of the GPU's).

        ``layout`` picks the measured layout to price with (e.g. ``masked`` grouped GEMMs) when it has points.
        """
        sms = sms or self.gpu.sms
        key = (op.name, op.kind, op.phase, op.dtype, op.shape, op.flops, op.bytes, sms, layout)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        model = self._model(op, layout)
        if op.kind is Kind.ELEMENTWISE and not op.bytes:
            seconds = 0.0
        elif model is None:
            seconds = self._roofline_s(op, sms)
        elif model.basis == "bytes":
            seconds = model.seconds_for(op.shape, 1, op.bytes, sms / self.gpu.sms, self.gpu.hbm_tbps * 1e12)
        else:
            shape, groups = op.shape, 1
            if op.kind is Kind.GROUPED_GEMM:
                groups, shape = op.shape[0], op.shape[-3:]
            seconds = model.seconds_for(shape, groups, op.flops, sms / self.gpu.sms, self._peak(op.dtype),
                                        op.bytes, self.gpu.hbm_tbps * 1e12)
        self._cache[key] = seconds
        return seconds
