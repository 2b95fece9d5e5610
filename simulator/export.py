"""Write a simulated :class:`moesim.simulator.engine.Timeline` as Chrome-trace JSON (Perfetto, chrome://tracing).

The layout follows the PyTorch profiler's, so ``moesim trace summarize`` reads it back: one named process per
simulated rank (``pid`` = pipeline rank; in full fidelity, one per recorded GPU with ``pid`` = its global index),
one thread per stream (its ``tid`` is also the kernel's
``args.stream``), every record a ``kernel`` event, and every record's phase a ``user_annotation`` named like
DeepSeek's (``ATTN3+MLP3(F)``) on a per-stream annotation thread of the same process, linked to its kernel by
an ``ac2g`` flow. Times are microseconds from the start of the step.

Perfetto shows every rank from the one file. HolisticTraceAnalysis reads a folder with one file per rank (each
naming its rank in ``distributedInfo``, as each rank's profiler writes it): ``--trace FOLDER/`` (an existing
folder, or a new one named with a final /) writes ``rank_<pid>.json`` there, one per process.
"""

from __future__ import annotations

import json
from pathlib import Path

from moesim.simulator.engine import Timeline
from moesim.workloads.errors import ScenarioError
from moesim.workloads.files import check_target, write_atomic

# The CUDA stream numbers of DeepSeek's trace, for familiarity; pipeline send/recv gets one of its own.
STREAM_TIDS = {"compute": 7, "comm": 27, "pp": 29}
ANNOTATION_TID_OFFSET = 1000
HOST = "host"  # host-bound records (moesim.simulator.engine.runner): a category of their own, which the importer skips
HOST_TIDS = {"host-bound": 1, "host-bound (comm)": 2, "host-bound (pp)": 3}
US_PER_S = 1e6


def record_class(stream: str, label: str) -> str:
    """The kernel class (moesim.workloads.traces.classify) a record declares, so the importer need not guess."""
    if stream not in ("comm", "pp"):
        return "other"
    if label.startswith("DISPATCH"):
        return "dispatch"
    if label.startswith("COMBINE"):
        return "combine"
    return "collective"  # pipeline send/recv, data-parallel gradient and parameter collectives


def timeline_events(timeline: Timeline, name: str = "moesim", gpu=None) -> dict:
    """The Chrome-trace dict of ``timeline`` (records: rank, stream, start_s, end_s, label, phase, mb, stage);
    ``gpu`` (a scenario's GpuSpec) names the simulated device."""
    events: list[dict] = []
    streams: dict[str, int] = dict(STREAM_TIDS)
    processes = process_names(timeline)
    for rank, (process, label) in processes.items():
        events.append({"name": "process_name", "ph": "M", "pid": rank, "tid": 0, "args": {"name": process}})
        events.append({"name": "process_labels", "ph": "M", "pid": rank, "tid": 0, "args": {"labels": label}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": rank, "tid": 0, "args": {"sort_index": rank}})
    seen_threads: set[tuple[int, int]] = set()
    for corr, (rank, stream, start_s, end_s, label, phase, mb, stage) in enumerate(timeline.records):
        if stream == HOST:  # a stream waiting for its host thread: no kernel, a slice of its own category
            htid = HOST_TIDS.setdefault(label, 1 + len(HOST_TIDS))  # a thread per waiting stream: they overlap
            if (rank, htid) not in seen_threads:
                seen_threads.add((rank, htid))
                events.append({"name": "thread_name", "ph": "M", "pid": rank, "tid": htid,
                               "args": {"name": f"{label} (waits for the CPU)"}})
            ts = round(start_s * US_PER_S, 3)
            events.append({"ph": "X", "cat": "host_wait", "name": label, "pid": rank, "tid": htid, "ts": ts,
                           "dur": max(0.0, round(round(end_s * US_PER_S, 3) - ts, 3)),
                           "args": {"phase": phase, "micro_batch": mb, "stage": stage}})
            continue
        tid = streams.setdefault(stream, 100 + len(streams))
        for t, thread in ((tid, f"stream {tid} ({stream})"), (tid + ANNOTATION_TID_OFFSET, f"{stream} phases")):
            if (rank, t) not in seen_threads:
                seen_threads.add((rank, t))
                events.append({"name": "thread_name", "ph": "M", "pid": rank, "tid": t, "args": {"name": thread}})
        # Whole nanoseconds, end minus start after rounding: back-to-back events on a thread then touch exactly,
        # never overlap by a rounding error (Perfetto drops slices that do not nest).
        ts = round(start_s * US_PER_S, 3)
        dur = max(0.0, round(round(end_s * US_PER_S, 3) - ts, 3))
        args = {"stream": tid, "device": rank, "correlation": corr, "phase": phase, "micro_batch": mb,
                "stage": stage, "stream_name": stream, "class": record_class(stream, label)}
        events.append({"ph": "X", "cat": "kernel", "name": label, "pid": rank, "tid": tid, "ts": ts, "dur": dur,
                       "args": args})
        atid = tid + ANNOTATION_TID_OFFSET
        events.append({"ph": "X", "cat": "user_annotation", "name": f"{label}({phase})", "pid": rank, "tid": atid,
                       "ts": ts, "dur": dur, "args": {"micro_batch": mb, "stage": stage}})
        events.append({"ph": "s", "cat": "ac2g", "name": "ac2g", "id": corr, "pid": rank, "tid": atid, "ts": ts})
        events.append({"ph": "f", "cat": "ac2g", "name": "ac2g", "id": corr, "pid": rank, "tid": tid, "ts": ts,
                       "bp": "e"})
    return {"schemaVersion": 1, "traceName": name, "displayTimeUnit": "ms",
            "deviceProperties": [{"id": r, "name": gpu.name if gpu else "simulated GPU",
                                  "numSms": gpu.sms if gpu else 0} for r in processes],
            "distributedInfo": {"backend": "moesim", "rank": 0, "world_size": len(processes)},
            "makespan_s": timeline.makespan_s, "traceEvents": events}


def process_names(timeline: Timeline) -> dict[int, tuple[str, str]]:
    """Each process's (name, label) by pid: a pipeline rank, or (full fidelity) a recorded GPU and the pipeline
    rank it is on, with how many GPUs behave exactly like it."""
    if timeline.pipeline_rank is None:
        return {r: (f"pipeline rank {r}", f"rank {r}") for r in range(timeline.ranks)}
    members = timeline.members or {}
    return {g: (f"GPU {g} (pipeline rank {p}; {members.get(g, 1)} GPUs alike)", f"GPU {g}")
            for g, p in sorted(timeline.pipeline_rank.items())}


def per_rank(data: dict) -> dict[int, dict]:
    """Split a trace dict into one trace per process, each naming its own rank (``distributedInfo.rank``)."""
    by_pid: dict[int, list[dict]] = {}
    for event in data["traceEvents"]:
        by_pid.setdefault(event["pid"], []).append(event)
    return {pid: {**data, "traceEvents": events,
                  "deviceProperties": [d for d in data["deviceProperties"] if d["id"] == pid],
                  "distributedInfo": {**data["distributedInfo"], "rank": pid}}
            for pid, events in sorted(by_pid.items())}


def write_chrome_trace(timeline: Timeline, path: str | Path, force: bool = False, name: str = "moesim",
                       gpu=None) -> Path:
    """Write ``timeline`` to ``path``; an existing file is kept unless ``force``. Returns the path. An existing
    folder gets one file per process, ``rank_<pid>.json`` (HolisticTraceAnalysis reads such a folder)."""
    path = check_trace_target(path, force)
    data = timeline_events(timeline, name, gpu)
    if not path.is_dir():
        return write_atomic(path, json.dumps(data, separators=(",", ":")), force=True, flag="--trace")
    ranks = per_rank(data)
    for pid in ranks:  # refuse before writing any: a folder is all rewritten or left as it was
        check_target(path / f"rank_{pid}.json", force, "--trace")
    for pid, one in ranks.items():  # spaced as the profiler writes it: HTA finds the rank by '"rank": N'
        write_atomic(path / f"rank_{pid}.json", json.dumps(one), force=True, flag="--trace")
    return path


def check_trace_target(path: str | Path, force: bool) -> Path:
    """Refuse to overwrite an existing file without ``force`` or to write into a missing directory; a folder (an
    existing one, or a new one named with a final /) is a target for per-rank files."""
    if Path(path).is_dir():
        # The rank count is known only after the run; any rank file already there is refused before it starts.
        written = sorted(p.name for p in Path(path).glob("rank_*.json"))
        if written and not force:
            raise ScenarioError(f"--trace {path}: the folder holds {len(written)} rank trace(s) ({written[0]}, ...); "
                                f"pass --force to overwrite them or name another folder")
        return Path(path)
    if str(path).endswith("/"):  # a new folder for per-rank files, in a folder that exists
        if not Path(path).parent.is_dir():
            raise ScenarioError(f"--trace {path}: folder {str(Path(path).parent)!r} does not exist; create it first")
        Path(path).mkdir()
        return Path(path)
    return check_target(path, force, "--trace")
