"""Host costs measured in a profiler trace: launch cost per kernel, host syncs, GPU time waiting on the host.

A Kineto trace records the host side of a step beside its kernels: framework ops (``cpu_op``), CUDA runtime and
driver calls (``cuda_runtime``, ``cuda_driver``), and the ``ac2g`` flow linking each launch call to the kernel,
memcpy or memset it enqueued (they share a correlation id). What is measured, exactly (times in µs):

- **Host timeline.** The launch calls of all the process's threads, merged in time order: a training step's host
  work is one chain (the main thread blocks in ``backward()`` while autograd's device thread launches the
  backward kernels; in DeepSeek's trace the two threads are busy at the same time for 0.5 % of their busy time).
- **Host syncs.** (1) *Blocking calls*: ``cudaDeviceSynchronize``, ``cudaStreamSynchronize``,
  ``cudaEventSynchronize``, a plain ``cudaMemcpy`` and a ``cudaMemcpyAsync`` device-to-host (and their driver
  forms). The CPU blocked for the call's duration; the GPU *reached* the sync when its last activity to finish
  before the call returned finished. (2) *Waits*: a stretch of at least ``WAIT_MIN_US`` in which no thread of the
  process records a CPU op or runtime call while the host is ahead of the GPU (the last kernel launched before
  it has not started yet) — a thread spinning on host-mapped memory, as DeepEP's dispatch does for the token
  counts its notify kernel writes; the GPU reached it when that last-launched kernel finished. A sync's *own
  cost* is the host time from the GPU reaching it to the end of the call (blocking calls) or to the start of the
  thread's next launch (waits): the copy, the return, the allocation sized by what was read.
- **Launch cost per kernel.** For each launch, the host time since the previous launch returned until this one
  returned: the framework's dispatch of the op (Python, autograd, allocator, ``cpu_op`` time), other runtime calls
  (stream waits, attribute queries) and the launch call itself. Intervals that contain a sync or a wait are left
  out (their time is the sync's). Per op class (the kernel's name, ``workloads/traces/classify.op_class_name``; a
  GEMM family counts for every pass its kernel runs) and over all kernels (``default``): the median.
- **GPU waiting on the host.** Over the compute streams (those that are not mostly communication kernels), each
  stretch where no compute kernel runs before the next one starts: the part before that kernel's launch returned
  is time the GPU waited on the host (after it, the kernel was queued: launch latency); the part of that which
  overlaps a host sync or wait is reported apart.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moesim.calibration.host import DEFAULT, HostCosts
from moesim.workloads.traces.classify import op_class_name, short_name
from moesim.workloads.traces.kineto import HostEvent, Kernel, KinetoTrace
from moesim.workloads.traces.phases import busy_intervals

BLOCKING_CALLS = frozenset({"cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize", "cudaMemcpy",
                            "cudaMemcpy2D", "cuCtxSynchronize", "cuStreamSynchronize", "cuEventSynchronize",
                            "cuMemcpyDtoH", "cuMemcpyDtoH_v2"})
ASYNC_COPIES = frozenset({"cudaMemcpyAsync", "cudaMemcpy2DAsync", "cuMemcpyDtoHAsync", "cuMemcpyDtoHAsync_v2"})
# A host thread idle for a millisecond while ahead of the GPU is waiting: per-kernel host times in DeepSeek's trace
# are tens of µs (median 28, 99th percentile 270 µs between launches).
WAIT_MIN_US = 1000.0
# The op classes a GEMM kernel family (op_class_name's "family:" names) runs as: one family serves every pass
# its kernel runs (the FP8 forward kernel also runs input gradients; the MLP's are grouped).
GEMM_FAMILY_CLASSES = {"gemm:fwd": ("gemm.fprop", "gemm.dgrad"),
                       "grouped_gemm:fwd": ("grouped_gemm.fprop", "grouped_gemm.dgrad"),
                       "gemm:wgrad": ("gemm.wgrad", "grouped_gemm.wgrad")}


@dataclass(frozen=True)
class HostSync:
    """One host synchronisation: ``blocked_us`` the CPU waited, ``own_us`` it took after the GPU reached it."""

    name: str  # the runtime call, or "wait (<last kernel>)" for a spin on host memory
    start_us: float
    blocked_us: float
    own_us: float


@dataclass
class HostReport:
    """What a trace's host side shows (µs); ``costs`` is what a profile keeps (:class:`HostCosts`)."""

    cpu_ops: int
    runtime_calls: int
    launches: int  # launch calls linked to a GPU activity
    flow_links: int
    measured: int  # launch intervals measured (not containing a sync)
    launch_us: dict[str, list[float]]  # per op class: the measured intervals
    all_launch_us: list[float]
    syncs: list[HostSync]
    compute_idle_us: float  # compute streams: nothing running, between the first kernel and the last
    host_wait_us: float  # ... of which the next kernel had not been launched yet
    host_wait_in_sync_us: float  # ... of which the host was in a sync or wait
    span_us: float  # first kernel start to last kernel end
    costs: HostCosts | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        per_class = {cls: {"kernels": len(v), "median_us": float(np.median(v)), "mean_us": float(np.mean(v))}
                     for cls, v in sorted(self.launch_us.items())}
        return {"cpu_ops": self.cpu_ops, "runtime_calls": self.runtime_calls, "launches": self.launches,
                "flow_links": self.flow_links, "measured_launches": self.measured,
                "launch_median_us": float(np.median(self.all_launch_us)) if self.all_launch_us else None,
                "launch_mean_us": float(np.mean(self.all_launch_us)) if self.all_launch_us else None,
                "launch_per_class": per_class,
                "syncs": [{"name": s.name, "start_us": s.start_us, "blocked_us": s.blocked_us, "own_us": s.own_us}
                          for s in self.syncs],
                "sync_blocked_us": sum(s.blocked_us for s in self.syncs),
                "gpu_compute_idle_us": self.compute_idle_us, "gpu_waiting_on_host_us": self.host_wait_us,
                "gpu_waiting_on_host_in_sync_us": self.host_wait_in_sync_us, "span_us": self.span_us,
                "costs": self.costs.model_dump() if self.costs else None, "notes": self.notes}


def host_classes(kernel: Kernel) -> tuple[str, ...]:
    """The op classes (``moesim.workloads.ops.OpClass`` values) a kernel's launch cost counts for; () if unknown."""
    cls = op_class_name(kernel.name)
    if cls is None:
        return ()
    if cls == "gemm:bf16":  # cuBLAS: the transpose letters give the pass (as calibration/from_trace.trace_class)
        letters = short_name(kernel.name)
        return ("gemm.wgrad",) if "_nt_" in letters else ("gemm.dgrad",) if "_nn_" in letters else ("gemm.fprop",)
    return GEMM_FAMILY_CLASSES.get(cls, (cls,))


def _blocking(call: HostEvent, gpu_by_corr: dict[int, Kernel]) -> bool:
    if call.name in BLOCKING_CALLS:
        return True
    target = gpu_by_corr.get(call.correlation)
    return call.name in ASYNC_COPIES and target is not None and "dtoh" in target.name.lower().replace(" ", "")


def host_report(trace: KinetoTrace, comm_streams: set[int], label: str = "") -> HostReport | None:
    """The host side of ``trace`` (None when it has no launch calls linked to GPU activities);
    ``comm_streams``: the streams whose kernels are mostly communication (not counted as compute); ``label``:
    how the costs' source names the trace (default: its file name)."""
    gpu_by_corr = {k.correlation: k for k in trace.kernels if k.correlation >= 0}
    runtime = [h for h in trace.host_events if h.category != "cpu_op"]
    launches = sorted((h for h in runtime if h.correlation in gpu_by_corr and not _blocking(h, gpu_by_corr)),
                      key=lambda h: h.start_us)
    cpu_ops = sum(1 for h in trace.host_events if h.category == "cpu_op")
    if not launches:
        return None
    ends = sorted(k.end_us for k in trace.kernels)
    syncs: list[HostSync] = []
    blocked: list[tuple[float, float]] = []
    for call in runtime:
        if _blocking(call, gpu_by_corr):
            i = bisect.bisect_right(ends, call.end_us) - 1
            reached = max(call.start_us, ends[i]) if i >= 0 else call.start_us
            syncs.append(HostSync(call.name, call.start_us, call.dur_us, call.end_us - reached))
            blocked.append((call.start_us, call.end_us))
    # Waits: idle stretches of the merged host timeline while the host was ahead of the GPU.
    launch_starts = [h.start_us for h in launches]
    busy = busy_intervals(trace.host_events)
    for (_, idle_from), (idle_to, _) in zip(busy, busy[1:]):
        if idle_to - idle_from < WAIT_MIN_US:
            continue
        i = bisect.bisect_right(launch_starts, idle_from) - 1
        if i < 0 or i + 1 >= len(launches):
            continue
        last = gpu_by_corr[launches[i].correlation]
        if last.start_us <= idle_from:  # the GPU was already on the host's last kernel: host-bound, not a wait
            continue
        resumed = launches[i + 1].start_us
        syncs.append(HostSync(f"wait ({short_name(last.name)})", idle_from, idle_to - idle_from,
                              max(0.0, resumed - last.end_us)))
        blocked.append((idle_from, resumed))
    syncs.sort(key=lambda s: s.start_us)
    blocked.sort()
    # Launch cost: return to return, intervals containing a sync or wait left out.
    per_class: dict[str, list[float]] = defaultdict(list)
    all_us: list[float] = []
    block_starts = [a for a, _ in blocked]
    for prev, call in zip(launches, launches[1:]):
        j = bisect.bisect_left(block_starts, call.end_us) - 1
        if j >= 0 and blocked[j][1] > prev.end_us:
            continue
        interval = call.end_us - prev.end_us
        all_us.append(interval)
        for cls in host_classes(gpu_by_corr[call.correlation]):
            per_class[cls].append(interval)
    idle, wait, wait_sync = _gpu_waiting(trace, comm_streams, gpu_by_corr, launches, blocked)
    span = trace.span_us
    report = HostReport(cpu_ops, len(runtime), len(launches), trace.flow_links, len(all_us), dict(per_class), all_us,
                        syncs, idle, wait, wait_sync, span)
    report.costs = _costs(trace, report, label or Path(trace.path).name)
    return report


def _gpu_waiting(trace: KinetoTrace, comm_streams: set[int], gpu_by_corr: dict[int, Kernel],
                 launches: list[HostEvent], blocked: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Compute streams idle; of it, waiting for the next kernel's launch; of that, while the host was blocked."""
    launch_end = {h.correlation: h.end_us for h in launches}
    compute = sorted((k for k in trace.kernels if k.stream not in comm_streams), key=lambda k: k.start_us)
    idle = wait = wait_sync = 0.0
    busy_until = None
    for k in compute:
        if busy_until is not None and k.start_us > busy_until:
            idle += k.start_us - busy_until
            launched = launch_end.get(k.correlation)
            if launched is not None and launched > busy_until:
                upto = min(k.start_us, launched)
                wait += upto - busy_until
                wait_sync += sum(max(0.0, min(upto, b) - max(busy_until, a)) for a, b in blocked)
        busy_until = k.end_us if busy_until is None else max(busy_until, k.end_us)
    return idle, wait, wait_sync


def _costs(trace: KinetoTrace, report: HostReport, name: str) -> HostCosts | None:
    if not report.all_launch_us:
        return None
    launch = {cls: round(float(np.median(v)), 3) for cls, v in sorted(report.launch_us.items())}
    launch[DEFAULT] = round(float(np.median(report.all_launch_us)), 3)
    own = [s.own_us for s in report.syncs]
    sync_us = round(float(np.median(own)), 3) if own else 0.0
    syncs = (f"sync: median of {len(own)} syncs' host time after the GPU reached them" if own else
             "sync: none in the trace, 0")
    source = (f"in-situ host side of {name} ({trace.device_name}): median host time per kernel launch over "
              f"{report.measured} launches (previous launch's return to this one's, syncs left out), per op class "
              f"and in all; {syncs} (calibration/host_trace.py)")
    return HostCosts(launch_us=launch, sync_us=sync_us, source=source)
