"""In-situ calibration: a profile fitted from the kernels of a real profiler trace (``calibrate from-trace``).

A profiler trace's kernels ran where the simulated ones run: beside DeepEP's communication kernels, on the SMs
those leave, at the clocks a loaded GPU holds. They are kernel-level measurements, so a profile can be fitted
from them as from microbenchmarks (DESIGN.md, Calibration), with the trace as provenance:

1. Every kernel is classified by name into an op class (``workloads/traces/classify.op_class_name``); GEMMs
   by kernel family (the forward kernel, which also runs recomputed forwards and input gradients; the
   weight-gradient kernel; cuBLAS BF16 by its transpose letters) and by the component whose phase annotation
   launched them. Kernels no rule knows are counted as ``add`` (plain memory-bound) and named in a warning.
2. Each kernel is credited with its *attributed* time: at every instant the time is shared equally among the
   compute kernels running then (the trace runs weight-gradient GEMMs on two compute streams at once), so
   concurrent kernels on different streams are never summed; communication-stream kernels run on their own
   SMs and keep their durations.
3. Per layer pair (the k-th occurrence of every phase annotation) and op class, the trace's attributed time is
   matched with the ops of one MoE layer of the scenario the trace ran (``traced_as``): the point carries
   their FLOPs or bytes and their number of kernels (``launches``), so the fitted curve
   ``launches · overhead + work / rate`` prices each simulated op. FP8 GEMMs of the forward kernel family
   (forward, recomputed forward, input-gradient: one kernel) are pooled per component, as are the
   weight-gradient family's.

Communication kernels (DeepEP, NCCL) are priced by the network model, not by profiles: they are reported, not
fitted. The trace's host side (launch cost per kernel, host syncs) is measured by :mod:`moesim.calibration.host_trace`
and kept in the profile's ``host`` field.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from moesim.calibration.builtin import EFFICIENCY, LAUNCH_GAP
from moesim.calibration.host_trace import host_report
from moesim.calibration.profile import KernelPoint, LaunchGap, Profile
from moesim.workloads.model import moe_layer
from moesim.workloads.ops import Kind, Op, OpClass
from moesim.workloads.scenario import Scenario
from moesim.workloads.traces.classify import COMM_CLASSES, classify, op_class_name, short_name
from moesim.workloads.traces.kineto import Kernel, KinetoTrace
from moesim.workloads.traces.phases import phase_instances

COMPONENTS = {"attn": "ATTN", "mlp": "MLP", "dispatch": "DISPATCH", "combine": "COMBINE"}
# The FP8 GEMMs of DeepSeek's traces are the internal CUTLASS-based kernels (cutlass::device_kernel<dpsk::
# grouped_gemm::...>) that preceded DeepGEMM: in-situ GEMM points are of that generation.
TRACE_KERNELS = "cutlass"
COMM_OP_CLASSES = {"ep.notify", "ep.dispatch", "ep.combine", "collective"}


class FromTraceError(ValueError):
    """A trace that cannot calibrate a profile; ``str(err)`` is one line naming the problem."""


@dataclass
class ClassSample:
    """One op class in one layer pair: the trace's attributed time and the scenario's matching ops."""

    op_class: str  # e.g. "fp8.quant", "gemm.fprop@ATTN"
    layer: int
    trace_us: float
    kernels: int
    ops: list[Op]


def attributed_us(kernels: list[Kernel], comm_streams: set[int]) -> dict[int, float]:
    """Per kernel (by index), its duration with overlapping compute kernels sharing each instant equally."""
    events = []
    for i, k in enumerate(kernels):
        if k.stream not in comm_streams and k.dur_us > 0:  # an instant kernel would end before it starts
            events += [(k.start_us, 1, i), (k.end_us, -1, i)]
    events.sort(key=lambda e: (e[0], e[1]))
    share: dict[int, float] = defaultdict(float)
    running: set[int] = set()
    last = None
    for ts, kind, i in events:
        if running and last is not None and ts > last:
            for j in running:
                share[j] += (ts - last) / len(running)
        last = ts
        (running.add if kind == 1 else running.discard)(i)
    return {i: (k.dur_us if k.stream in comm_streams else share[i]) for i, k in enumerate(kernels)}


def comm_streams_of(trace: KinetoTrace) -> set[int]:
    """Streams most of whose kernel time is communication kernels (DeepEP, NCCL)."""
    time: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for k in trace.kernels:
        time[k.stream][classify(k.name) in COMM_CLASSES] += k.dur_us
    return {s for s, (other, comm) in time.items() if comm > other}


def trace_class(name: str, component: str) -> str | None:
    """The op class a trace kernel feeds (GEMM families: pass and pooling component), None if unknown."""
    cls = op_class_name(name)
    if cls is None or ":" not in cls:
        return cls
    family = cls.split(":")[1]
    kind = "grouped_gemm" if component == "MLP" and family != "bf16" else "gemm"
    if family == "bf16":
        letters = short_name(name)
        gemm_pass = "wgrad" if "_nt_" in letters else "dgrad" if "_nn_" in letters else "fprop"
        return f"gemm.{gemm_pass}.bf16"
    return f"{kind}.{'wgrad' if family == 'wgrad' else 'fprop'}.fp8@{component}"


def model_class(op: Op) -> str:
    """The same key for a scenario op (FP8 forward-family GEMMs pooled per component)."""
    if op.kind in (Kind.GEMM, Kind.GROUPED_GEMM):
        if op.dtype != "fp8":
            return f"gemm.{op.gemm_pass}.bf16"
        kind = "grouped_gemm" if op.component == "MLP" else "gemm"
        return f"{kind}.{'wgrad' if op.gemm_pass == 'wgrad' else 'fprop'}.fp8@{op.component}"
    return op.op_class.value


def moe_layer_ops(scenario: Scenario) -> list[Op]:
    """Every op (F, B and W) of one MoE layer of ``scenario``: attention block and MoE block."""
    ops = moe_layer(scenario, "calibrate from-trace --traced-as")
    return [op for part in (ops.forward, ops.backward, ops.weight) for c in part for op in c.ops]


def class_samples(trace: KinetoTrace, scenario: Scenario) -> tuple[list[ClassSample], dict[str, set[str]],
                                                                     list[str]]:
    """Per layer pair and op class: trace time and matching ops; the kernel names per class; unknown names."""
    instances, _ = phase_instances(trace)
    layered = [i for i in instances if i.component in COMPONENTS]
    if not layered:
        raise FromTraceError(f"{trace.path}: no phase annotations named attn/mlp/dispatch/combine with (F), (B) or "
                             f"(W); from-trace needs DualPipe-style record_function ranges")
    comm = comm_streams_of(trace)
    kernels = [k for inst in layered for k in inst.kernels]
    attributed = attributed_us(kernels, comm)
    per_layer: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0.0, 0])
    names: dict[str, set[str]] = defaultdict(set)
    unknown: set[str] = set()
    index = 0
    for inst in layered:
        component = COMPONENTS[inst.component]
        for k in inst.kernels:
            cls = trace_class(k.name, component)
            if cls is None:
                unknown.add(short_name(k.name))
                cls = OpClass.ADD.value
            names[cls].add(short_name(k.name))
            entry = per_layer[(inst.layer, cls)]
            entry[0] += attributed[index]
            entry[1] += 1
            index += 1
    ops_by_class: dict[str, list[Op]] = defaultdict(list)
    for op in moe_layer_ops(scenario):
        ops_by_class[model_class(op)].append(op)
    samples = [ClassSample(cls, layer, us, n, ops_by_class.get(cls, []))
               for (layer, cls), (us, n) in sorted(per_layer.items())]
    return samples, names, sorted(unknown)


def sample_point(sample: ClassSample, source: str, sms: int) -> KernelPoint | None:
    """A profile point for one class sample (None for communication and classes the scenario has no op of);
    ``sms``: the SMs the trace's compute kernels had (those its communication kernels left)."""
    if sample.op_class in COMM_OP_CLASSES or not sample.ops or sample.trace_us <= 0:
        return None  # (a class whose kernels took no measurable time gives no rate)
    ops, seconds = sample.ops, sample.trace_us * 1e-6
    flops, nbytes = sum(o.flops for o in ops), sum(o.bytes for o in ops)
    big = max(ops, key=lambda o: o.flops or o.bytes)
    base = dict(time_us=sample.trace_us, launches=len(ops), source=source, sms=sms,
                kernel=f"{sample.op_class} ({sample.kernels} trace kernels, layer pair {sample.layer})")
    if big.kind is Kind.ELEMENTWISE:
        return KernelPoint(op="elementwise", dtype="bf16", layout=sample.op_class, shape=[], tflops=0.0,
                           memory_gbps=nbytes / seconds / 1e9, bytes=nbytes, **base)
    if big.kind is Kind.ATTENTION:
        return KernelPoint(op="attention", dtype=big.dtype, shape=list(big.shape), tflops=flops / seconds / 1e12,
                           flops=flops, bytes=nbytes, layout="causal_bwd" if big.op_class is OpClass.ATTN_BWD
                           else "causal_fwd", **base)
    grouped = big.kind is Kind.GROUPED_GEMM
    shape = list(big.shape[-3:])
    return KernelPoint(op=big.kind.value, dtype=big.dtype, shape=shape, groups=big.shape[0] if grouped else 1,
                       layout="contiguous" if grouped else "normal", gemm_pass="wgrad" if big.gemm_pass == "wgrad"
                       else "fprop", library=TRACE_KERNELS if big.dtype == "fp8" else "", tflops=flops / seconds / 1e12,
                       flops=flops, bytes=nbytes, **base)


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def profile_from_trace(trace: KinetoTrace, scenario: Scenario, peaks: dict[str, float],
                       command: str = "") -> tuple[Profile, list[ClassSample], list[str]]:
    """The in-situ profile of ``trace`` (recorded running ``scenario``'s MoE layers on a GPU with ``peaks``),
    its class samples and the names of kernels no rule classified."""
    samples, names, unknown = class_samples(trace, scenario)
    digest = sha256(trace.path)
    source = f"in-situ: {Path(trace.path).name} (sha256 {digest[:12]}…), {trace.device_name}"
    # The compute kernels ran on the SMs DeepEP's kernels left (the trace's GEMM grids are 112 blocks: 132 − 20).
    sms = int(peaks["sms"]) - scenario.training.comm_sms
    host = host_report(trace, comm_streams_of(trace), f"{Path(trace.path).name} (sha256 {digest[:12]}…)")
    try:
        points = [p for p in (sample_point(s, source, sms) for s in samples) if p is not None]
        if not points:
            raise FromTraceError(f"{trace.path}: no compute kernel matched an op of {scenario.name}'s MoE layer")
        profile = Profile(
            device=trace.device_name or "unknown GPU", origin="in-situ", name=f"{trace.device_name} in-situ trace",
            peaks=peaks, points=points, efficiency={"memory": EFFICIENCY["memory"]},
            launch_gap=launch_gap(trace) or LAUNCH_GAP, host=host.costs if host else None,
            class_kernels={cls: sorted(n) for cls, n in sorted(names.items())},
            provenance={"trace": str(trace.path), "sha256": digest, "device": trace.device_name,
                        "traced_as": scenario.name, "command": command,
                        "method": "calibration/from_trace.py: attributed kernel time per op class and layer pair"})
    except ValidationError as err:  # kernel times no GPU reaches: a trace of another model, or a doctored one
        why = err.errors()[0]["msg"].removeprefix("Value error, ").rsplit("; ", 1)[0]
        raise FromTraceError(f"{trace.path}: its kernel times make an impossible profile: {why}; check that "
                             "--traced-as names the model and layout the trace ran") from None
    return profile, samples, unknown


def launch_gap(trace: KinetoTrace) -> LaunchGap | None:
    """Median idle time between kernels queued back to back on the busiest compute stream."""
    comm = comm_streams_of(trace)
    busy: dict[int, float] = defaultdict(float)
    for k in trace.kernels:
        busy[k.stream] += k.dur_us
    compute = [s for s in sorted(busy, key=busy.get, reverse=True) if s not in comm]
    if not compute:
        return None
    stream = sorted((k for k in trace.kernels if k.stream == compute[0]), key=lambda k: k.start_us)
    gaps = []
    for a, b in zip(stream, stream[1:]):
        launched = trace.launches.get(b.correlation)
        if launched is not None and launched[0] < a.end_us:  # queued before the previous one ended
            gaps.append(max(0.0, b.start_us - a.end_us))
    if len(gaps) < 10:
        return None
    return LaunchGap(value_us=float(np.median(gaps)), source=f"{Path(trace.path).name}, stream {compute[0]}: median "
                     f"of {len(gaps)} gaps between kernels queued back to back")


@dataclass
class ClassCheck:
    """One op class: the trace's mean time per layer pair, what the fitted profile prices, and the error of a
    profile fitted without each layer pair in turn predicting it (µs)."""

    op_class: str
    trace_us: float
    model_us: float
    loo_errors: list[float]

    @property
    def error(self) -> float:
        return self.model_us / self.trace_us - 1.0 if self.trace_us else 0.0


def check_profile(profile: Profile, samples: list[ClassSample], gpu, kernels: str = "cutlass",
                  sms: int | None = None) -> list[ClassCheck]:
    """Per class: trace vs the profile's price of the matching ops (kernel time only), and leave-one-out."""
    from moesim.calibration.cost_model import CostModel

    model = CostModel(profile, gpu, kernels)
    layers = sorted({s.layer for s in samples})
    by_class: dict[str, list[ClassSample]] = defaultdict(list)
    for s in samples:
        if s.ops and s.op_class not in COMM_OP_CLASSES:
            by_class[s.op_class].append(s)
    checks = []
    for cls, group in sorted(by_class.items()):
        priced = sum(model.op_time_s(op, sms) for op in group[0].ops) * 1e6
        loo = []
        for held in layers:
            if len(layers) < 2 or not any(s.layer == held for s in group):
                continue
            kept = [p for p in profile.points if not p.kernel.endswith(f"layer pair {held})")]
            rest = CostModel(profile.model_copy(update={"points": kept}), gpu, kernels)
            measured = next(s.trace_us for s in group if s.layer == held)
            loo.append(sum(rest.op_time_s(op, sms) for op in group[0].ops) * 1e6 / measured - 1.0)
        checks.append(ClassCheck(cls, float(np.mean([s.trace_us for s in group])), priced, loo))
    return checks
