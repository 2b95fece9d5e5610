"""The cost model: seconds for a compute op on a GPU, from profiles' fitted curves or the roofline.

Ops are priced by their class (:class:`moesim.workloads.ops.OpClass`): a GEMM by its pass (forward, input-gradient,
weight-gradient) and the kernel generation the scenario names (``training.kernels``: DeepGEMM or the
CUTLASS-based kernels before it), FlashAttention forward and backward apart, and each small kernel class
(FP8 casts, permutes, router kernels …) by its own curve. Profiles compose: given several, the first whose
curve of the class was measured where the op lies (:mod:`moesim.calibration.domain`) prices it (in-situ trace
measurements before isolated microbenchmarks), and :attr:`CostModel.sources` says which one priced each class.
A GEMM or attention op outside every curve's domain is priced by the shape model (:mod:`moesim.calibration.shape_model`)
and a note says so; no price beats its class's fastest measured point (:meth:`CostModel.fastest_s`). For a class with measured points the time is the
fitted curve ``launches · overhead + work / (rate × sms_used / sms) (+ bytes / memory rate)`` times a
correction exact on measured shapes; rates are fractions of the measured device's peak applied to the target
GPU's. Classes without points fall back to the roofline with the profile's stated efficiency (each with its
source), recorded in :attr:`CostModel.fallbacks`.
"""

from __future__ import annotations

from dataclasses import dataclass

from moesim.calibration.fit import ClassModel, class_label, class_models, peak_per_s, point_bytes, point_work
from moesim.calibration.profile import Profile, same_design_profiles
from moesim.calibration.shape_model import ceiling_key, class_ceilings, shape_model_s, tile_use
from moesim.workloads.fp8 import PER_TENSOR_LIBRARY
from moesim.workloads.ops import Kind, Op, OpClass, Phase

# The layouts a training op runs as, in order of preference: DeepSeek-V3 training uses DeepGEMM's contiguous
# grouped layout (masked is the decoding layout); attention forward and backward are different kernels.
LAYOUTS = {Kind.GEMM: ("normal",), Kind.GROUPED_GEMM: ("contiguous", "masked")}
# Elementwise classes that isolated microbenchmarks (calibration/bench) measure under their kernel's name.
BENCH_KERNELS = {OpClass.NORM: "rmsnorm", OpClass.NORM_BWD: "rmsnorm", OpClass.SWIGLU: "swiglu",
                 OpClass.SWIGLU_BWD: "swiglu", OpClass.ROPE: "rope", OpClass.QUANT: "fp8_cast",
                 OpClass.QUANT_T: "fp8_cast"}
KERNEL_GENERATIONS = ("deepgemm", "cutlass")


def elementwise_layouts(op_class: OpClass) -> tuple[str, ...]:
    """Where an elementwise class's points may be filed, most specific first (``add``: plain streaming)."""
    layouts = [op_class.value]
    if op_class in BENCH_KERNELS:
        layouts.append(BENCH_KERNELS[op_class])
    return (*layouts, "add")


def point_op(point) -> Op:
    """The op a profile point measured, as the simulator would price it (for checks and validation)."""
    kind = Kind(point.op)
    phase = {"fprop": Phase.F, "dgrad": Phase.B, "wgrad": Phase.W}[point.gemm_pass]
    if kind is Kind.ATTENTION:
        phase = Phase.B if point.layout == "causal_bwd" else Phase.F
    if kind is Kind.ELEMENTWISE:
        kernel = OpClass(point.layout) if point.layout in {c.value for c in OpClass} else None
        return Op(f"bench.{point.layout}", kind, phase, "BENCH", point.dtype, 0.0, point_work(point),
                  tuple(point.shape), kernel=kernel)
    shape = (point.groups, *point.shape[-3:]) if kind is Kind.GROUPED_GEMM else tuple(point.shape)
    return Op(f"bench.{point.op}", kind, phase, "BENCH", point.dtype, point.flops_executed(), point_bytes(point),
              shape)


@dataclass(frozen=True)
class OutsideOp:
    """An op priced outside every curve's measured domain, by the shape model: what, why and at what rate."""

    op: str  # the op's name, e.g. ``head.F``
    label: str  # its class and dtype, e.g. ``gemm.fprop bf16``
    shape: str  # e.g. ``4096×129280×7168``
    why: str  # e.g. ``n=129280 > 7168 measured (NVIDIA H800 in-situ trace, gemm)``
    tflops: float  # the rate it was priced at
    sms: int
    note: str  # all of it, in one sentence


class CostModel:
    """Prices compute ops for one GPU spec (a :class:`moesim.workloads.scenario.GpuSpec`) from one or more profiles.

    ``kernels`` names the GEMM generation (``deepgemm`` or ``cutlass``): GEMM points of other generations are
    ignored. ``references``: more profiles whose points only set the classes' ceilings (default: the shipped
    profiles of GPUs of the same SM design, :func:`moesim.calibration.profile.same_design_profiles`). The last profile is the base: its stated efficiencies price classes no profile measured.
    """

    def __init__(self, profile: Profile | list[Profile], gpu, kernels: str = "deepgemm", references=None):
        self.profiles = list(profile) if isinstance(profile, (list, tuple)) else [profile]
        self.profile = self.profiles[-1]
        self.gpu = gpu
        self.kernels = kernels
        self.fallbacks: dict[str, str] = {}
        self.sources: dict[str, str] = {}  # op class (and dtype) → what priced it
        # Per class, each profile's curve in pricing order: the first whose measured domain covers an op prices it.
        self.models: dict[tuple[str, str, str, str], list[ClassModel]] = {}
        for prof in self.profiles:
            for key, model in class_models(prof, kernels).items():
                self.models.setdefault(key, []).append(model)
        # The fastest measured point per class, here and in ``references``: by default the shipped profiles of
        # GPUs with the same SMs and peak (validation passes them with its held-out point removed).
        references = same_design_profiles(gpu) if references is None else references
        self.ceilings = class_ceilings([*self.profiles, *references], kernels)
        self._outside: dict[tuple, str] = {}  # priced ops (cache key) → why the shape model priced them
        self.outside: dict[str, OutsideOp] = {}  # op name → what the shape model priced (first SM count asked)
        gap = next((p.launch_gap for p in self.profiles if p.launch_gap is not None), None)
        self.launch_gap_s = gap.value_us * 1e-6 if gap is not None else 0.0
        self.launch_gap_source = gap.source if gap is not None else ""
        self._cache: dict[tuple, float] = {}
        # Op class (and dtype) → how a measurement on a GPU of another design (other peaks) was carried to this
        # one: the same fraction of the tensor peak (compute-bound curves) or of HBM bandwidth (memory-bound ones).
        self.projected: dict[str, str] = {}

    def _projection(self, label: str, peaks: dict, basis: str, where: str) -> str:
        """Record and return (as a suffix for the source) how ``label``, measured on a device with ``peaks``, is
        carried to this GPU; "" when that device has this GPU's peak of the class's basis (tensor peak of its dtype,
        or HBM bandwidth): the same rate, nothing to project."""
        dtype = label.split()[-1]
        mine = {"bf16_tflops": self.gpu.bf16_tflops, "fp8_tflops": self.gpu.fp8_tflops or self.gpu.bf16_tflops,
                "hbm_tbps": self.gpu.hbm_tbps}
        ratio = peak_per_s(mine, basis, dtype) / peak_per_s(peaks, basis, dtype)
        if ratio == 1.0:
            return ""
        what = "HBM bandwidth" if basis == "bytes" else f"{dtype.upper()} tensor peak"
        self.projected.setdefault(label, f"{where}, ×{ratio:.3f} by {what}")
        return f"; projected ×{ratio:.3f} by {what}"

    def _stated(self, name: str):
        return next((p.efficiency[name] for p in self.profiles if name in p.efficiency), None)

    def _curves(self, kind: str, dtype: str | None, layouts, gemm_pass: str = "fprop"):
        """Every profile's curve of the class, most preferred layout first, profiles in pricing order."""
        for layout in layouts:
            for (k, d, lay, pas), models in self.models.items():
                if k == kind and lay == layout and pas == gemm_pass and (dtype is None or d == dtype):
                    yield from models

    def _lookup(self, kind: str, dtype: str | None, layouts, gemm_pass: str = "fprop") -> ClassModel | None:
        return next(self._curves(kind, dtype, layouts, gemm_pass), None)

    def _candidates(self, op: Op, layout: str | None):
        """(curve, note when it prices) in order of preference: the op's own layout, pass and dtype first."""
        kind = op.kind.value
        if layout is not None:
            yield from ((m, None) for m in self._curves(kind, op.dtype, (layout,), op.gemm_pass
                                                        if op.kind is not Kind.ATTENTION else "fprop"))
        if op.kind is Kind.ATTENTION:
            yield from ((m, None) for m in self._curves(kind, op.dtype, ("causal_bwd",) if op.op_class is
                                                        OpClass.ATTN_BWD else ("causal_fwd",)))
            return
        layouts = LAYOUTS[op.kind]
        yield from ((m, None) for m in self._curves(kind, op.dtype, layouts, op.gemm_pass))
        if op.gemm_pass == "dgrad":
            # DeepGEMM and the CUTLASS kernels before it run input-gradient GEMMs with the forward kernel (the
            # weight pre-transposed, see fp8.weight_t); DeepSeek's trace shows the same kernel in both.
            yield from ((m, None) for m in self._curves(kind, op.dtype, layouts))
        if op.gemm_pass == "wgrad":
            label = f"{op.op_class.value} {op.dtype}"
            yield from ((m, (f"{label}/wgrad", f"{kind} wgrad in {op.dtype}: no weight-gradient points; priced "
                                               f"with the forward curve")) for m in self._curves(kind, op.dtype, layouts))

    def _model(self, op: Op, layout: str | None = None, sms: int | None = None) -> ClassModel | str | None:
        """The curve that prices ``op`` (None: no curve, the stated roofline prices it), or, when curves of its
        class exist but none was measured where the op lies, why (the shape model prices it)."""
        kind, op_class = op.kind.value, op.op_class
        label = f"{op_class.value} {op.dtype}"
        if op.kind is Kind.ELEMENTWISE:
            # Streaming kernels: overhead + bytes / rate holds at any size, so their curves price everywhere.
            model = self._lookup(kind, op.dtype, (layout,), op.gemm_pass) if layout is not None else None
            model = model or self._lookup(kind, None, elementwise_layouts(op_class))
            if model is not None:
                self._source(label, model)
            return model
        outside = None
        for model, note in self._candidates(op, layout):
            shape, groups = (op.shape[-3:], op.shape[0]) if op.kind is Kind.GROUPED_GEMM else (op.shape, 1)
            why = model.domain.outside(shape, groups, op.flops, sms or self.gpu.sms)
            if why is None:
                if note is not None:
                    self.fallbacks[note[0]] = note[1]
                self._source(label, model)
                return model
            outside = outside or f"{why} ({model.source}, {class_label(model.op, model.layout, model.gemm_pass)})"
        if outside is not None:
            return outside
        if self.kernels == PER_TENSOR_LIBRARY and op.dtype == "fp8" and self.ceilings.get(
                ceiling_key(kind, op.dtype, op.gemm_pass, "", self.kernels)) is not None:
            return f"no per-tensor-scaled fp8 {kind} points; cuBLAS's dense FP8 ceiling"
        if self._stated(kind) is not None:
            return None  # the stated efficiency of this class is a closer measurement than another dtype's curve
        layouts = LAYOUTS.get(op.kind, ())
        other = [m for (k, _, lay, pas), ms in self.models.items() if k == kind and lay in layouts and pas == "fprop"
                 for m in ms]
        if other:
            m = other[0]
            self.fallbacks[f"{kind}/{op.dtype}"] = (
                f"{kind} in {op.dtype}: no {op.dtype} points; the {m.dtype} curve's fraction of peak is applied "
                f"to the {op.dtype} peak")
            self._source(label, m)
            return m
        return None

    def _source(self, label: str, model: ClassModel) -> None:
        if label not in self.sources:
            gemm = model.op in ("gemm", "grouped_gemm")
            what = f"{model.op}/{model.layout} {model.gemm_pass}, {self.kernels}" if gemm else model.layout
            projected = self._projection(label, model.peaks, model.basis, model.source)
            self.sources[label] = f"{model.source} ({what}){projected}"

    def memory_efficiency(self) -> float:
        """Fraction of HBM bandwidth a large streaming kernel reaches (fitted ``add`` curve, else stated, else
        the whole bandwidth)."""
        add = self._lookup("elementwise", None, ("add",))
        if add is not None:
            return min(1.0, add.rate_fraction)
        stated = self._stated("memory")
        return stated.value if stated is not None else 1.0

    def _roofline_s(self, op: Op, sms: int) -> float:
        memory = self._stated("memory")
        memory_s = op.bytes / (memory.value * self.gpu.hbm_tbps * 1e12)
        label = f"{op.op_class.value} {op.dtype}"
        if op.kind is Kind.ELEMENTWISE:
            self.fallbacks[f"elementwise/{op.op_class.value}"] = (
                f"elementwise {op.op_class.value}: no measured points; memory roofline at "
                f"{memory.value:.3f} of HBM ({memory.source})")
            if label not in self.sources:
                projected = self._projection(label, self.profile.peaks, "bytes", f"{self.profile.label} stated")
                self.sources[label] = f"memory roofline (stated efficiency){projected}"
            return memory_s
        name = "attention_bwd" if op.op_class is OpClass.ATTN_BWD and self._stated("attention_bwd") else \
            op.kind.value
        stated = self._stated(name)
        if stated is None:
            raise ValueError(f"profile {self.profile.device} has no points or stated efficiency for {op.kind.value}"
                             f" kernels; measure them (moesim calibrate run --ops {op.kind.value}) or use another"
                             f" profile")
        what = "attention backward" if name == "attention_bwd" else op.kind.value
        self.fallbacks[f"{name}/{op.dtype}"] = (
            f"{what} in {op.dtype}: no measured points; roofline at {stated.value:.3f} of peak ({stated.source})")
        if label not in self.sources:
            projected = self._projection(label, self.profile.peaks, "flops", f"{self.profile.label} stated")
            self.sources[label] = f"roofline at {stated.value:.3f} of peak (stated efficiency){projected}"
        peak = self._peak(op.dtype)
        return max(op.flops / (stated.value * peak * sms / self.gpu.sms), memory_s)

    def _peak(self, dtype: str) -> float:
        return peak_per_s({"bf16_tflops": self.gpu.bf16_tflops, "fp8_tflops": self.gpu.fp8_tflops,
                           "hbm_tbps": self.gpu.hbm_tbps}, "flops", dtype)

    def op_time_s(self, op: Op, sms: int | None = None, layout: str | None = None) -> float:
        """Seconds for ``op`` on ``sms`` streaming multiprocessors (default: all of the GPU's), kernel only
        (the stream's launch gap is :attr:`launch_gap_s`, added per op by the pricer).

        ``layout`` picks the measured layout to price with (e.g. ``masked`` grouped GEMMs) when it has points.
        """
        sms = sms or self.gpu.sms
        key = (op.kind, op.op_class, op.gemm_pass, op.dtype, op.shape, op.flops, op.bytes, sms, layout)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        model = self._model(op, layout, sms)
        if op.kind is Kind.ELEMENTWISE and not op.bytes:
            seconds = model.overhead_s if model is not None else 0.0  # a kernel that moves nothing: its floor
        elif isinstance(model, str):
            seconds = self._shape_model_s(op, sms, layout, model)
            self._outside[key] = model
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
        seconds = max(seconds, self.fastest_s(op, sms, layout))
        self._cache[key] = seconds
        return seconds

    def fastest_s(self, op: Op, sms: int, layout: str | None = None) -> float:
        """The least time any price of ``op`` may take (0 for elementwise ops): its FLOPs at its class's fastest
        measured rate (the ceiling, :func:`moesim.calibration.shape_model.class_ceilings`), else at the peak of the SMs it
        runs on. The one clamp every priced rate passes. A GPU profile's points are never above its peak (the
        profile refuses them when loaded); a CPU's peak is an estimate its measurements may beat."""
        if op.kind is Kind.ELEMENTWISE or not op.flops:
            return 0.0
        ceiling = self.ceilings.get(ceiling_key(op.kind.value, op.dtype, op.gemm_pass, _attention_layout(op, layout),
                                                self.kernels))
        fraction = ceiling.fraction if ceiling is not None else 1.0
        return op.flops / (fraction * self._peak(op.dtype) * sms / self.gpu.sms)

    def outside_reason(self, op: Op, sms: int | None = None, layout: str | None = None) -> str | None:
        """Why ``op`` was priced by the shape model (outside every curve's measured domain), or None."""
        sms = sms or self.gpu.sms
        self.op_time_s(op, sms, layout)
        return self._outside.get((op.kind, op.op_class, op.gemm_pass, op.dtype, op.shape, op.flops, op.bytes, sms,
                                  layout))

    def _shape_model_s(self, op: Op, sms: int, layout: str | None, why: str) -> float:
        """Seconds from the shape model (:mod:`moesim.calibration.shape_model`) at the class's full-wave efficiency; the
        note and source say so."""
        label = f"{op.op_class.value} {op.dtype}"
        ceiling = self.ceilings.get(ceiling_key(op.kind.value, op.dtype, op.gemm_pass, _attention_layout(op, layout),
                                                self.kernels))
        if ceiling is None:  # the curves that exist are of this kind only in another pass: the stated efficiency
            stated = self._stated("attention_bwd" if op.op_class is OpClass.ATTN_BWD and
                                  self._stated("attention_bwd") else op.kind.value)
            efficiency, source = (stated.value, stated.source) if stated else (1.0, "the peak (nothing measured)")
        else:
            efficiency, source = ceiling.efficiency, ceiling.source
        shape, groups = (op.shape[-3:], op.shape[0]) if op.kind is Kind.GROUPED_GEMM else (op.shape, 1)
        curve = self._lookup(op.kind.value, op.dtype, LAYOUTS.get(op.kind, ("causal_bwd", "causal_fwd")))
        minimum_s = curve.overhead_s if curve is not None else 0.0
        seconds = shape_model_s(op.kind.value, shape, groups, op.flops, op.bytes, sms, self._peak(op.dtype),
                                self.gpu.sms, self.memory_efficiency() * self.gpu.hbm_tbps * 1e12, efficiency,
                                minimum_s)
        seconds = max(seconds, self.fastest_s(op, sms, layout))
        _, tiles = tile_use(op.kind.value, shape, groups, sms)
        if label not in self.sources:
            projected = self._projection(label, self.profile.peaks, "flops", f"shape model, {source}")
            self.sources[label] = f"shape model (efficiency {efficiency:.3f}){projected}"
        if op.name not in self.outside:
            tflops = op.flops / seconds / 1e12
            shape_text = "×".join(map(str, op.shape))
            self.outside[op.name] = OutsideOp(
                op.name, label, shape_text, why, tflops, sms,
                f"{label} ({op.name} {shape_text}): outside measured range: {why}; priced by the shape model at "
                f"{tflops:.0f} TFLOPS on {sms} SMs ({tiles}; full-wave efficiency {efficiency:.3f} from {source})")
        return seconds

    def notes(self) -> list[str]:
        """What a run should be told about its pricing, one line per kind: the fallbacks (elementwise classes priced
        by the memory roofline in one line), then the ops priced outside their measured range."""
        roofline = sorted(k.split("/", 1)[1] for k in self.fallbacks if k.startswith("elementwise/"))
        notes = sorted(v for k, v in self.fallbacks.items() if not k.startswith("elementwise/"))
        if roofline:
            how = self.fallbacks[f"elementwise/{roofline[0]}"].split(": ", 1)[1]
            notes.insert(0, f"elementwise {', '.join(roofline)}: {how}")
        summary = self.outside_summary()
        return notes + ([summary] if summary else []) + ([self.projected_summary()] if self.projected else [])

    def projected_summary(self) -> str:
        """One line naming the classes priced from measurements on another GPU design, and by which scaling."""
        by_scaling: dict[str, list[str]] = {}
        for label, how in sorted(self.projected.items()):
            by_scaling.setdefault(how.rsplit(", ", 1)[1], []).append(label)
        parts = "; ".join(f"{', '.join(labels)} ({scaling})" for scaling, labels in by_scaling.items())
        count = len(self.projected)
        return (f"{count} class{'es' if count != 1 else ''} projected, not measured on {self.gpu.name}: {parts}; "
                f"`moesim calibrate project` shows the scaling class by class")

    def outside_summary(self) -> str | None:
        """One line naming the ops priced outside their measured range (by class and dtype), or None."""
        if not self.outside:
            return None
        groups: dict[str, dict[str, list[str]]] = {}
        rates: dict[str, list[float]] = {}
        for o in self.outside.values():
            kind = o.label.split(".")[0] + " " + o.label.split()[-1]  # "gemm bf16"
            base, _, phase = o.op.rpartition(".")
            phases = groups.setdefault(kind, {}).setdefault(base or o.op, [])
            if phase and phase not in phases:
                phases.append(phase)
            rates.setdefault(kind, []).append(o.tflops)
        parts = []
        for kind, ops in groups.items():
            low, high = min(rates[kind]), max(rates[kind])
            rate = f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}–{high:.0f}"
            names = ", ".join(f"{base}.{'/'.join(sorted(ph, key='FBW'.find))}" if ph else base
                              for base, ph in ops.items())
            parts.append(f"{names} ({kind}, {rate} TFLOPS)")
        return (f"{len(self.outside)} ops priced outside their measured range by the shape model: "
                f"{'; '.join(parts)}; --op-classes lists each and why")


def _attention_layout(op: Op, layout: str | None) -> str:
    if op.kind is Kind.ATTENTION:
        return "causal_bwd" if op.op_class is OpClass.ATTN_BWD else "causal_fwd"
    return layout or ""
