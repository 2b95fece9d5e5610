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

import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from moesim.workloads.documents import check_values, parse_document
from moesim.workloads.errors import ScenarioError, one_line
from moesim.workloads.files import check_input

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
    ignored: dict[str, str] = field(default_factory=dict)  # optional field → what was wrong (see ``warning``)

    @property
    def warning(self) -> str | None:
        """One line naming the optional fields of the wrong type that were ignored, or None."""
        if not self.ignored:
            return None
        return f"{self.path}: ignored optional fields of the wrong type: {'; '.join(self.ignored.values())}"

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
            with gzip.open(path, "rb") as fh:
                raw = fh.read(max_bytes + 1)
            if len(raw) > max_bytes:
                raise TraceError(f"trace file {str(path)!r} decompresses to more than {max_bytes:,} bytes, the "
                                 "limit (MAX_TRACE_BYTES); cut the trace to a few layers")
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise TraceError(f"{path}: cannot read: {one_line(str(err))[:200]}") from None
    return parse_trace(parse_document(raw, str(path), "json", TraceError), str(path), checked=True)


def parse_trace(data, source: str = "<trace>", checked: bool = False) -> KinetoTrace:
    """Build a :class:`KinetoTrace` from already-parsed Chrome-trace JSON (a dict or a bare event list).

    Required fields of the wrong type (an event's ``ts``, ``dur``, a kernel's stream) are refused; optional ones
    (``args.grid``, ``deviceProperties``, ``numSms``, ``distributedInfo.rank``…) are ignored and named in
    :attr:`KinetoTrace.warning`. ``checked``: the document reader has already refused non-finite numbers and
    deep nesting (:func:`moesim.workloads.documents.check_values`)."""
    if not checked:
        check_values(data, source, TraceError)
    if isinstance(data, list):
        data = {"traceEvents": data}
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise TraceError(f"{source}: not a Chrome trace: expected an object with a 'traceEvents' list")
    ignored = _Ignored()
    kernels, annotations, launches, host = [], [], {}, []
    flow_start: dict = {}
    flow_end: dict = {}
    for index, ev in enumerate(data["traceEvents"]):
        if not isinstance(ev, dict):
            raise TraceError(f"{source}: traceEvents[{index}] is not an object")
        cat, ph = ev.get("cat"), ev.get("ph")
        if ph not in ("X", "s", "f") or not isinstance(cat, str):
            continue
        if ph == "X" and cat in GPU_CATEGORIES:
            kernels.append(_kernel(ev, index, source, cat, ignored))
            continue
        if ph == "X" and cat not in ("user_annotation", "cuda_runtime", "cuda_driver", "cpu_op"):
            continue
        pid, tid = ignored.ident(ev, "pid", index), ignored.ident(ev, "tid", index)
        name = ev.get("name", "")
        name = name if isinstance(name, str) else ignored.note(f"traceEvents[{index}].name", name, "", "text")
        if ph == "X" and cat == "user_annotation":
            ts, dur = _times(ev, index, source)
            annotations.append(Annotation(name, pid, tid, ts, dur))
        elif ph == "X" and cat in ("cuda_runtime", "cuda_driver"):
            args = ev.get("args")
            corr = args.get("correlation") if isinstance(args, dict) else None
            corr = corr if isinstance(corr, int) and not isinstance(corr, bool) else -1
            ts, dur = _times(ev, index, source)
            if corr != -1:
                launches[corr] = (ts, pid, tid)
            host.append(HostEvent(name, cat, pid, tid, ts, dur, corr))
        elif ph == "X":
            ts, dur = _times(ev, index, source)
            host.append(HostEvent(name, cat, pid, tid, ts, dur))
        elif cat == "ac2g" and isinstance(ev.get("id"), (int, str)) and not isinstance(ev.get("id"), bool):
            ts = _number(ev.get("ts"), f"traceEvents[{index}].ts", source, MAX_TS_US)
            (flow_start if ph == "s" else flow_end)[ev["id"]] = (ts, pid, tid)
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
    device_name, sms = _device(data, ignored)
    rank, world_size = _distributed(data, ignored)
    name = data.get("traceName", "")
    meta = {k: v for k, v in data.items() if k not in ("traceEvents", "deviceProperties")}
    return KinetoTrace(
        path=source, name=name if isinstance(name, str) else ignored.note("traceName", name, "", "text"),
        device_name=device_name, sms=sms, rank=rank, world_size=world_size, kernels=kernels,
        annotations=annotations, launches=launches, flow_links=linked, metadata=meta, host_events=host,
        ignored=ignored.fields)


# Bounds on event times: a timestamp is microseconds on some clock (Unix epoch: ~1.7e15 in 2025), inside the range
# a float holds exactly (2^53 µs, ~285 years); no profiled event lasts a day (a whole profiled step is seconds).
MAX_TS_US = 2.0 ** 53
MAX_DUR_US = 86_400e6
MAX_SMS = 10_000  # SMs on one GPU (an H100 has 132, a B200 148)


class _Ignored:
    """Optional fields of the wrong type: each ignored (a default used instead), each named once."""

    def __init__(self):
        self.first: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def note(self, where: str, value, default, wanted: str):
        """Record that ``where`` held ``value`` instead of ``wanted``; return the ``default`` used instead."""
        label = where.split("].", 1)[-1] if where.startswith("traceEvents[") else where
        self.counts[label] = self.counts.get(label, 0) + 1
        self.first.setdefault(label, f"{where} = {one_line(repr(value))[:40]} (not {wanted})")
        return default

    @property
    def fields(self) -> dict[str, str]:
        return {label: first + (f" and {self.counts[label] - 1:,} more" if self.counts[label] > 1 else "")
                for label, first in self.first.items()}

    def ident(self, ev: dict, key: str, index: int):
        value = ev.get(key, 0)
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            return value
        return self.note(f"traceEvents[{index}].{key}", value, 0, "an integer or text")


def _device(data: dict, ignored: _Ignored) -> tuple[str, int]:
    """(device name, SMs; 0: unknown) from the first entry of ``deviceProperties``."""
    devices = data.get("deviceProperties")
    if devices is None:
        return "unknown GPU", 0
    if not isinstance(devices, list) or (devices and not isinstance(devices[0], dict)):
        ignored.note("deviceProperties", devices, None, "a list of objects")
        return "unknown GPU", 0
    device = devices[0] if devices else {}
    name = device.get("name", "unknown GPU")
    if not isinstance(name, str):
        name = ignored.note("deviceProperties[0].name", name, "unknown GPU", "text")
    sms = device.get("numSms", 0)
    if sms is None or isinstance(sms, bool) or not isinstance(sms, int) or not 0 <= sms <= MAX_SMS:
        sms = ignored.note("deviceProperties[0].numSms", sms, 0, f"an integer 0-{MAX_SMS:,}") if sms is not None \
            else 0
    return name, sms


def _distributed(data: dict, ignored: _Ignored) -> tuple[int, int]:
    """(rank, world size) from ``distributedInfo``; (0, 1) where absent or of the wrong type."""
    dist = data.get("distributedInfo")
    if dist is None:
        return 0, 1
    if not isinstance(dist, dict):
        ignored.note("distributedInfo", dist, None, "an object")
        return 0, 1
    world = dist.get("world_size", 1)
    if isinstance(world, bool) or not isinstance(world, int) or world < 1:
        world = ignored.note("distributedInfo.world_size", world, 1, "an integer ≥ 1")
    rank = dist.get("rank", 0)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world:
        rank = ignored.note("distributedInfo.rank", rank, 0, f"an integer 0-{world - 1}")
    return rank, world


def _number(value, what: str, source: str, limit: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        got = one_line(repr(value))[:40]
        raise TraceError(f"{source}: {what} must be a finite number of microseconds, got {got}")
    if limit == MAX_DUR_US and value < 0:
        raise TraceError(f"{source}: {what} is negative ({value:g} µs)")
    if abs(value) > limit:
        bound = "a day" if limit == MAX_DUR_US else "2^53 µs (285 years)"
        raise TraceError(f"{source}: {what} is {value:g} µs, more than {bound} ({limit:g} µs); fix or drop "
                         "that event")
    return float(value)


def _times(ev: dict, index: int, source: str) -> tuple[float, float]:
    ts = _number(ev.get("ts"), f"traceEvents[{index}].ts", source, MAX_TS_US)
    return ts, _number(ev.get("dur", 0), f"traceEvents[{index}].dur", source, MAX_DUR_US)


def _kernel(ev: dict, index: int, source: str, cat: str, ignored: _Ignored) -> Kernel:
    ts, dur = _times(ev, index, source)
    args = ev.get("args") or {}
    if not isinstance(args, dict):
        raise TraceError(f"{source}: traceEvents[{index}].args is not an object")
    stream = args.get("stream", ev.get("tid"))
    if isinstance(stream, bool) or not isinstance(stream, int):
        raise TraceError(f"{source}: traceEvents[{index}] ({cat}) has no integer stream (args.stream or tid)")
    device = args.get("device", ev.get("pid", 0))
    corr = args.get("correlation", -1)
    grid = args.get("grid")
    grid = () if grid is None else grid
    if not (isinstance(grid, (list, tuple)) and len(grid) <= 3
            and all(isinstance(g, int) and not isinstance(g, bool) and g >= 0 for g in grid)):
        grid = ignored.note(f"traceEvents[{index}].args.grid", grid, (), "a list of up to 3 integers ≥ 0")
    name = ev.get("name", "")
    name = name if isinstance(name, str) else ignored.note(f"traceEvents[{index}].name", name, "", "text")
    return Kernel(name, device if isinstance(device, int) and not isinstance(device, bool) else 0, stream, ts, dur,
                  corr if isinstance(corr, int) and not isinstance(corr, bool) else -1, cat, tuple(grid), args)
