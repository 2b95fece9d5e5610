"""Read a PyTorch-profiler (Kineto) Chrome trace into kernels, phase annotations and launch links.

A Kineto trace is Chrome-trace JSON: ``traceEvents`` holds complete events (``ph: "X"``, ``ts``/``dur`` in
microseconds) of categories ``kernel`` (a GPU kernel; ``args.stream`` its CUDA stream, ``args.correlation``
the id of the launch that enqueued it), ``cuda_runtime`` and ``cuda_driver`` (the CPU-side launch
call and the other runtime calls, synchronisations included), ``cpu_op`` (a framework op on the host),
``user_annotation`` (``record_function`` ranges such as ``attn(F)``) and flow events of category
``ac2g`` (``ph: "s"`` at the launch, ``ph: "f"`` at the kernel, sharing an ``id``). Only what moesim uses
is kept; everything is checked and a malformed file raises :class:`TraceError` with one line naming the
problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from workloads.errors import ScenarioError
from workloads.files import check_input

# DeepSeek's published trace of one DualPipe chunk pair is 3.1 MB; a whole profiled step of a large job is
# tens of MB. Beyond this the file is refused before parsing (json.load holds it all in memory).
MAX_TRACE_BYTES = 256_000_000
GPU_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")


class TraceError(ScenarioError):
    """A trace file that cannot be read; ``str(err)`` is one line naming the file and the problem."""


@dataclass(frozen=True, slots=True)
class Kernel:
    """One GPU activity (a kernel, memcpy or memset). Times in microseconds on the trace's clock."""

    name: str
    device: int
    stream: int
    start_us: float
    dur_us: float
    correlation: int
    category: str = "kernel"
    grid: tuple = ()
    args: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def end_us(self) -> float:
        return self.start_us + self.dur_us


@dataclass(frozen=True, slots=True)
class Annotation:
    """A CPU ``user_annotation`` range (``record_function``), e.g. ``attn(F)``; microseconds."""

    name: str
    pid: int | str
    tid: int | str
    start_us: float
    dur_us: float

    @property
    def end_us(self) -> float:
        return self.start_us + self.dur_us

    def contains(self, ts_us: float) -> bool:
        return self.start_us <= ts_us <= self.end_us


@dataclass(frozen=True, slots=True)
class HostEvent:
    """A CPU-side event: a framework op (``cpu_op``) or a CUDA runtime or driver call (``cuda_runtime``,
    ``cuda_driver``) on thread ``tid``; microseconds. ``correlation`` is the id of the GPU activity a launch
    enqueued (the same id as the kernel's and as the ``ac2g`` flow linking the two; -1: none)."""

    name: str
    category: str
    pid: int | str
    tid: int | str
    start_us: float
    dur_us: float
    correlation: int = -1

    @property
    def end_us(self) -> float:
        return self.start_us + self.dur_us


@dataclass
class KinetoTrace:
    """The parts of a Kineto trace moesim reads; ``launches[correlation]`` is (CPU time µs, pid, tid) of the
    launch that enqueued a kernel."""

    path: str
    name: str
    device_name: str
    sms: int
    rank: int
    world_size: int
    kernels: list[Kernel]
    annotations: list[Annotation]
    launches: dict[int, tuple[float, int | str, int | str]]
    flow_links: int  # launch→kernel pairs found as ac2g flow events
    metadata: dict = field(default_factory=dict)
    host_events: list[HostEvent] = field(default_factory=list)  # cpu_op and CUDA runtime/driver calls, by start

    @property
    def streams(self) -> list[int]:
        return sorted({k.stream for k in self.kernels})

    @property
    def span_us(self) -> float:
        if not self.kernels:
            return 0.0
        return max(k.end_us for k in self.kernels) - min(k.start_us for k in self.kernels)


def load_trace(path: str | Path, max_bytes: int = MAX_TRACE_BYTES) -> KinetoTrace:
    """Parse and check a Kineto Chrome trace file (``.json``; ``.json.gz`` too)."""
    path = check_input(path, max_bytes, "trace file", "cut the trace to a few layers", TraceError)
    try:
        if path.suffix == ".gz":
            import gzip
            with gzip.open(path, "rt", errors="replace") as fh:
                text = fh.read(max_bytes + 1)
            if len(text) > max_bytes:
                raise TraceError(f"trace file {str(path)!r} decompresses to more than {max_bytes:,} bytes, the "
                                 "limit (MAX_TRACE_BYTES); cut the trace to a few layers")
        else:
            text = path.read_text(errors="replace")
        data = json.loads(text)
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise TraceError(f"{path}: cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise TraceError(f"{path}: malformed JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    return parse_trace(data, str(path))


def parse_trace(data, source: str = "<trace>") -> KinetoTrace:
    """Build a :class:`KinetoTrace` from already-parsed Chrome-trace JSON (a dict or a bare event list)."""
    if isinstance(data, list):
        data = {"traceEvents": data}
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise TraceError(f"{source}: not a Chrome trace: expected an object with a 'traceEvents' list")
    kernels, annotations, launches, host = [], [], {}, []
    flow_start: dict = {}
    flow_end: dict = {}
    for index, ev in enumerate(data["traceEvents"]):
        if not isinstance(ev, dict):
            raise TraceError(f"{source}: traceEvents[{index}] is not an object")
        cat, ph = ev.get("cat"), ev.get("ph")
        if ph == "X" and cat in GPU_CATEGORIES:
            kernels.append(_kernel(ev, index, source, cat))
        elif ph == "X" and cat == "user_annotation":
            ts, dur = _times(ev, index, source)
            annotations.append(Annotation(str(ev.get("name", "")), ev.get("pid", 0), ev.get("tid", 0), ts, dur))
        elif ph == "X" and cat in ("cuda_runtime", "cuda_driver"):
            args = ev.get("args")
            corr = args.get("correlation") if isinstance(args, dict) else None
            ts, dur = _times(ev, index, source)
            if isinstance(corr, int):
                launches[corr] = (ts, ev.get("pid", 0), ev.get("tid", 0))
            host.append(HostEvent(str(ev.get("name", "")), cat, ev.get("pid", 0), ev.get("tid", 0), ts, dur,
                                  corr if isinstance(corr, int) else -1))
        elif ph == "X" and cat == "cpu_op":
            ts, dur = _times(ev, index, source)
            host.append(HostEvent(str(ev.get("name", "")), cat, ev.get("pid", 0), ev.get("tid", 0), ts, dur))
        elif cat == "ac2g" and ph in ("s", "f") and isinstance(ev.get("id"), (int, str)):
            ts = _number(ev.get("ts"), f"traceEvents[{index}].ts", source)
            (flow_start if ph == "s" else flow_end)[ev["id"]] = (ts, ev.get("pid", 0), ev.get("tid", 0))
    if not kernels:
        raise TraceError(f"{source}: no GPU kernels (events with cat 'kernel'); profile with "
                         "ProfilerActivity.CUDA enabled")
    # A launch→kernel link: the flow's start is the launch on the CPU; correlation args are the fallback.
    linked = 0
    for corr, launch in flow_start.items():
        if corr in flow_end:
            launches[corr] = launch
            linked += 1
    kernels.sort(key=lambda k: k.start_us)
    annotations.sort(key=lambda a: a.start_us)
    host.sort(key=lambda h: h.start_us)
    devices = data.get("deviceProperties") or []
    device = devices[0] if devices and isinstance(devices[0], dict) else {}
    dist = data.get("distributedInfo") if isinstance(data.get("distributedInfo"), dict) else {}
    meta = {k: v for k, v in data.items() if k not in ("traceEvents", "deviceProperties")}
    return KinetoTrace(
        path=source, name=str(data.get("traceName", "")), device_name=str(device.get("name", "unknown GPU")),
        sms=int(device.get("numSms", 0) or 0), rank=int(dist.get("rank", 0) or 0),
        world_size=int(dist.get("world_size", 1) or 1), kernels=kernels, annotations=annotations,
        launches=launches, flow_links=linked, metadata=meta, host_events=host)


def _number(value, what: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise TraceError(f"{source}: {what} must be a number, got {value!r}")
    return float(value)


def _times(ev: dict, index: int, source: str) -> tuple[float, float]:
    ts = _number(ev.get("ts"), f"traceEvents[{index}].ts", source)
    dur = _number(ev.get("dur", 0), f"traceEvents[{index}].dur", source)
    if dur < 0:
        raise TraceError(f"{source}: traceEvents[{index}].dur is negative ({dur})")
    return ts, dur


def _kernel(ev: dict, index: int, source: str, cat: str) -> Kernel:
    ts, dur = _times(ev, index, source)
    args = ev.get("args") or {}
    if not isinstance(args, dict):
        raise TraceError(f"{source}: traceEvents[{index}].args is not an object")
    stream = args.get("stream", ev.get("tid"))
    if not isinstance(stream, int):
        raise TraceError(f"{source}: traceEvents[{index}] ({cat}) has no integer stream (args.stream or tid)")
    device = args.get("device", ev.get("pid", 0))
    corr = args.get("correlation", -1)
    return Kernel(str(ev.get("name", "")), device if isinstance(device, int) else 0, stream, ts, dur,
                  corr if isinstance(corr, int) else -1, cat, tuple(args.get("grid") or ()), args)
