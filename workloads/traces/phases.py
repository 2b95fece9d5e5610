"""Per-layer phase costs of a Kineto trace: which kernels each ``attn(F)``-style annotation launched.

A kernel belongs to the innermost phase annotation (``name(F|B|W)``) that encloses its launch on the CPU;
the launch is found through the trace's launch→kernel links (ac2g flows, else the ``correlation`` ids of
``cuda_runtime`` events). The k-th occurrence of a phase name is layer k of that phase (the DeepSeek trace
repeats ``combine(B) attn(F) mlp(B) dispatch(F) dispatch(B) mlp(W) mlp(F) attn(B) attn(W) combine(F)`` once
per layer pair). Times are microseconds.

Communication kernels' durations include time spent waiting for peers. Where a phase repeats over layers
with the same traffic (balanced routing), a data kernel's least duration over the layers bounds its transfer
time from above; the rest of each instance is counted as waiting. DeepEP's notify kernels (token counts,
barriers) are split the same way into synchronisation and waiting.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from dataclasses import dataclass, field

from moesim.workloads.traces.classify import COMM_CLASSES, KernelClass, is_notify, kernel_class, short_name
from moesim.workloads.traces.kineto import Kernel, KinetoTrace

PHASE_NAME = re.compile(r"^\s*([A-Za-z_][\w.+\-]*)\s*\(\s*([FBW])\s*\)\s*$")
UNATTRIBUTED = "(none)"
EPS_US = 1e-6  # start + duration in float µs may land a hair past the next range's start


@dataclass
class PhaseInstance:
    """One occurrence of a phase annotation and the kernels it launched."""

    name: str  # e.g. "attn(F)"
    component: str  # "attn"
    phase: str  # "F", "B" or "W"
    layer: int  # occurrence index of this name
    cpu_start_us: float
    cpu_dur_us: float
    kernels: list[Kernel] = field(default_factory=list)

    def gpu_us(self, stream: int | None = None) -> float:
        """Summed kernel time (per stream if given)."""
        return sum(k.dur_us for k in self.kernels if stream is None or k.stream == stream)


@dataclass
class CommSplit:
    """A phase's communication-kernel time (µs, summed over layers): transfer, synchronisation, waiting."""

    transfer_us: float = 0.0
    waiting_us: float = 0.0
    sync_us: float = 0.0

    @property
    def total_us(self) -> float:
        return self.transfer_us + self.waiting_us + self.sync_us


def phase_instances(trace: KinetoTrace) -> tuple[list[PhaseInstance], list[Kernel]]:
    """Each phase annotation with its kernels, and the kernels no phase annotation launched."""
    counts: dict[str, int] = defaultdict(int)
    instances = []
    threads: dict[tuple, list[PhaseInstance]] = defaultdict(list)
    for a in trace.annotations:
        m = PHASE_NAME.match(a.name)
        if not m:
            continue
        name = f"{m.group(1)}({m.group(2)})"
        inst = PhaseInstance(name, m.group(1), m.group(2), counts[name], a.start_us, a.dur_us)
        counts[name] += 1
        instances.append(inst)
        threads[(a.pid, a.tid)].append(inst)
    starts = {thread: [i.cpu_start_us for i in insts] for thread, insts in threads.items()}
    covered = _annotated_spans(trace)
    loose = []
    for k in trace.kernels:
        ts, pid, tid = trace.launches.get(k.correlation, (k.start_us, None, None))
        owner = None
        if pid is None:  # no known launch: match on GPU time against every thread's phases
            candidates = list(threads)
        elif _inside(covered.get((pid, tid), ()), ts):
            candidates = [(pid, tid)]  # the launching thread was inside a range: its phase or none
        else:
            # Launched from an unannotated thread (autograd runs backward on its own thread while the phase
            # range sits on the main thread): the phases of the same process.
            candidates = [t for t in threads if t[0] == pid]
        for thread in candidates:
            if thread in threads:
                owner = _innermost(threads[thread], starts[thread], ts)
            if owner:
                break
        (owner.kernels if owner else loose).append(k)
    return instances, loose


def _annotated_spans(trace: KinetoTrace) -> dict[tuple, list[tuple[float, float]]]:
    """Per CPU thread, the union of all its annotation ranges (merged, sorted)."""
    spans: dict[tuple, list[list[float]]] = defaultdict(list)
    for a in trace.annotations:  # sorted by start
        merged = spans[(a.pid, a.tid)]
        if merged and a.start_us < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], a.end_us)
        else:
            merged.append([a.start_us, a.end_us])
    return {t: [tuple(x) for x in m] for t, m in spans.items()}


def _inside(spans, ts: float) -> bool:
    i = bisect.bisect_right(spans, (ts, float("inf"))) - 1
    return i >= 0 and (spans[i][0] <= ts < spans[i][1] - EPS_US or ts == spans[i][0] == spans[i][1])


def _innermost(instances: list[PhaseInstance], starts: list[float], ts: float) -> PhaseInstance | None:
    """The latest-starting instance that still encloses ``ts`` (annotations nest or follow each other)."""
    i = bisect.bisect_right(starts, ts) - 1
    while i >= 0:
        inst = instances[i]
        end = inst.cpu_start_us + inst.cpu_dur_us
        # Half-open, so a launch at the instant one range ends and the next begins belongs to the next.
        if inst.cpu_start_us <= ts < end - EPS_US or ts == inst.cpu_start_us == end:
            return inst
        if starts[i] < ts - 10_000_000:  # nothing starts more than 10 s before a launch it still encloses
            break
        i -= 1
    return None


def comm_split(instances: list[PhaseInstance]) -> dict[str, CommSplit]:
    """Per phase name, its communication kernels' time split into transfer, synchronisation and waiting.

    For each communication kernel (by short name) the least duration over the phase's layers is its own
    cost: ``transfer_us`` for data kernels, ``sync_us`` for notify kernels; the excess of every instance over
    that least duration is ``waiting_us``.
    """
    least: dict[tuple[str, str], float] = {}
    for inst in instances:
        for k in inst.kernels:
            if kernel_class(k.name, k.args) in COMM_CLASSES:
                key = (inst.name, short_name(k.name))
                least[key] = min(least.get(key, k.dur_us), k.dur_us)
    out: dict[str, CommSplit] = defaultdict(CommSplit)
    for inst in instances:
        split = out[inst.name]
        for k in inst.kernels:
            if kernel_class(k.name, k.args) not in COMM_CLASSES:
                continue
            own = least[(inst.name, short_name(k.name))]
            if is_notify(k.name):
                split.sync_us += own
            else:
                split.transfer_us += own
            split.waiting_us += k.dur_us - own
    return dict(out)


def busy_intervals(kernels) -> list[tuple[float, float]]:
    """The union of the [start, end) intervals of ``kernels`` (or of any events with ``start_us`` and ``end_us``,
    e.g. the host's CPU ops and runtime calls), merged and sorted."""
    merged: list[list[float]] = []
    for k in sorted(kernels, key=lambda k: k.start_us):
        if merged and k.start_us <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], k.end_us)
        else:
            merged.append([k.start_us, k.end_us])
    return [(a, b) for a, b in merged]


def intersection_us(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Total length of the overlap of two sorted, merged interval lists."""
    i = j = 0
    total = 0.0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def is_comm(kernel: Kernel) -> bool:
    return kernel_class(kernel.name, kernel.args) in COMM_CLASSES


def wall_us(kernels: list[Kernel]) -> float:
    """Time (µs) the kernels keep their GPU busy: on each GPU the length of the union of their intervals, so
    kernels that ran at once on different streams (a weight-gradient GEMM on a side stream beside the main
    compute stream) count once, as the step's wall clock sees them."""
    by_device: dict[int, list[Kernel]] = defaultdict(list)
    for k in kernels:
        by_device[k.device].append(k)
    return sum(b - a for ks in by_device.values() for a, b in busy_intervals(ks))


def component_costs_us(instances: list[PhaseInstance]) -> dict[tuple[str, str], dict[str, float]]:
    """Per (component, phase), per-layer means: ``compute_us`` (the wall time of all non-communication kernels,
    on any stream, with concurrent kernels counted once: see :func:`wall_us`), ``compute_kernel_sum_us`` (the
    same kernels' durations summed, for comparison), ``comm_us`` (communication kernels as recorded),
    ``comm_transfer_us`` and ``comm_sync_us`` (their data and notify parts with waiting removed, see
    :func:`comm_split`), and ``layers`` (how many instances were averaged)."""
    splits = comm_split(instances)
    grouped: dict[tuple[str, str], list[PhaseInstance]] = defaultdict(list)
    for inst in instances:
        grouped[(inst.component, inst.phase)].append(inst)
    out = {}
    for key, insts in grouped.items():
        n = len(insts)
        compute = sum(wall_us([k for k in i.kernels if not is_comm(k)]) for i in insts) / n
        compute_sum = sum(k.dur_us for i in insts for k in i.kernels if not is_comm(k)) / n
        comm = sum(k.dur_us for i in insts for k in i.kernels if is_comm(k)) / n
        split = splits.get(insts[0].name, CommSplit())
        out[key] = {"compute_us": compute, "compute_kernel_sum_us": compute_sum, "comm_us": comm,
                    "comm_transfer_us": split.transfer_us / n,
                    "comm_sync_us": split.sync_us / n, "layers": float(n)}
    return out


def kernel_class_totals(kernels: list[Kernel]) -> dict[KernelClass, tuple[int, float]]:
    totals: dict[KernelClass, list] = defaultdict(lambda: [0, 0.0])
    for k in kernels:
        entry = totals[kernel_class(k.name, k.args)]
        entry[0] += 1
        entry[1] += k.dur_us
    return {cls: (n, us) for cls, (n, us) in totals.items()}
