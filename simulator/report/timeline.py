"""The pipeline timeline's data: what the browser draws, at two levels of detail, from the engine's records.

A DeepSeek-V3 step has about 75,000 records; no browser draws that many SVG bars quickly. So the page does not
receive a plotly figure but this compact, columnar data, and ``moesim.js`` (next to this module) draws it:
when the visible time window holds more than ``max_bars`` records it draws an overview (a heat-map image,
one cell per rank row and pixel column, coloured by what occupies most of that column, hover naming the op),
and when zoomed in far enough the ops themselves as bars with full hover. Either way micro-batch numbers sit
on chunks wide enough to hold them. The same data feeds the static report and the Dash dashboard.

Rows are (rank, stream): one ``compute`` and one ``comm`` row per rank (pipeline sends drawn on the comm row,
the GPU's waits for its host thread, "host-bound", on the compute row). On compute rows the gaps are marked:
time the rank's communication stream is busy is *exposed communication*, the rest is *bubble*, exactly as
:mod:`moesim.simulator.metrics` counts them, so the marks on a row add up to its stage's ``exposed_comm_s`` and
``bubble_s``. When micro-batches travel the pipeline in two directions (DualPipe feeds both ends, DualPipeV
comes back up its V) forward and backward chunks are coloured by direction: *down* (rank rising with the
stage) or *up*.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from moesim.simulator.engine.ledger import merge as _merge

SCRIPT = Path(__file__).with_name("assets") / "moesim.js"
MAX_BARS = 800  # ops drawn as SVG bars at most; above this the window is drawn as an overview image
PHASE_NAMES = {"F": "forward", "B": "backward (input)", "W": "backward (weight)"}
# Colour pairs per phase: (one direction only or down, up). Tableau-like hues, the up one darker.
PHASE_COLOURS = {"F": ("#4C78A8", "#1B3A66"), "B": ("#F58518", "#9C4A00"), "W": ("#54A24B", "#1F6B2A")}
OTHER_STYLES = {  # style key -> (legend name, colour, kind)
    "opt": ("optimizer", "#B279A2", "task"),
    "comm-F": ("communication (forward)", "#9ECAE9", "task"),
    "comm-B": ("communication (backward)", "#FFBF79", "task"),
    "comm-W": ("communication (weight)", "#8CD17D", "task"),
    "send": ("pipeline send / recv", "#BAB0AC", "task"),
    "dp": ("gradient / parameter sync", "#9D755D", "task"),
    "host": ("host-bound (GPU waits for the CPU to launch)", "#F2CF5B", "task"),
    "exposed": ("exposed communication (compute idle, comm busy)", "#E45756", "mark"),
    "bubble": ("bubble (both streams idle)", "#D9D9D9", "mark"),
}
STREAMS = ("compute", "comm")
COMM_STREAMS = ("comm", "pp")  # drawn on a rank's comm row: collectives and pipeline send/recv


def row_name(rank: int, stream: str) -> str:
    return f"rank {rank} · {stream}"


def directions(records: list[tuple], pipeline_rank: dict[int, int] | None = None) -> dict[tuple[int, int], int]:
    """(micro_batch, stage) -> +1 (the next stage sits on a higher rank: "down") or -1 ("up").

    Read from where the forward chunks ran, so it holds for any schedule; stages with no neighbour on another
    rank get no entry.
    """
    where: dict[tuple[int, int], int] = {}
    for rank, stream, _, _, label, phase, mb, stage in records:
        if stream == "compute" and phase == "F" and mb >= 0:
            where[(mb, stage)] = pipeline_rank.get(rank, rank) if pipeline_rank else rank
    result = {}
    for (mb, stage), rank in where.items():
        nxt, prev = where.get((mb, stage + 1)), where.get((mb, stage - 1))
        if nxt is not None and nxt != rank:
            result[(mb, stage)] = 1 if nxt > rank else -1
        elif prev is not None and prev != rank:
            result[(mb, stage)] = 1 if rank > prev else -1
    return result


def style_key(stream: str, label: str, phase: str, direction: int, two_way: bool) -> str:
    if stream == "host":
        return "host"
    if label.startswith("send"):
        return "send"
    if stream in COMM_STREAMS:
        return f"comm-{phase}" if phase in PHASE_NAMES else phase
    if phase in PHASE_NAMES:
        return f"{phase}{'-up' if two_way and direction < 0 else ('-down' if two_way else '')}"
    return phase


def style_table(two_way: bool) -> dict[str, tuple[str, str, str]]:
    """Every style key -> (legend name, colour, kind), in legend order."""
    table = {}
    for phase, name in PHASE_NAMES.items():
        down, up = PHASE_COLOURS[phase]
        if two_way:
            table[f"{phase}-down"] = (f"{name} ↓ down (rank rising)", down, "task")
            table[f"{phase}-up"] = (f"{name} ↑ up (rank falling)", up, "task")
        else:
            table[phase] = (name, down, "task")
    table.update(OTHER_STYLES)
    return table


def gap_marks(compute: list[tuple[float, float]], comm: list[tuple[float, float]],
              makespan_s: float) -> list[tuple[float, float, str]]:
    """Idle stretches of a compute stream over [0, makespan]: (start, end, "exposed" | "bubble")."""
    busy = _merge(compute)
    comm_busy = _merge(comm)
    gaps, cursor = [], 0.0
    for start, end in busy + [(makespan_s, makespan_s)]:
        if start > cursor:
            gaps.append((cursor, start))
        cursor = max(cursor, end)
    marks, j = [], 0
    for start, end in gaps:
        while j < len(comm_busy) and comm_busy[j][1] <= start:
            j += 1
        cursor, k = start, j
        while k < len(comm_busy) and comm_busy[k][0] < end:
            a, b = max(comm_busy[k][0], start), min(comm_busy[k][1], end)
            if a > cursor:
                marks.append((cursor, a, "bubble"))
            if b > a:
                marks.append((a, b, "exposed"))
            cursor = max(cursor, b)
            k += 1
        if cursor < end:
            marks.append((cursor, end, "bubble"))
    return marks


def chunk_labels(chunks: dict[tuple, list[float]]) -> list[tuple]:
    """(row, middle, micro_batch, forward?, start, end) per chunk that carries a micro-batch number.

    A W computed in place with its B (overlapping or touching it) shares the B's number; a deferred W gets its
    own. Pairs overlapped on one stream (DualPipe's F&B) share a row: the forward's number sits in the upper
    half, the backward's in the lower.
    """
    labels = []
    for (row, mb, phase, stage), (a, b) in chunks.items():
        if phase == "W":
            with_b = chunks.get((row, mb, "B", stage))
            if with_b is not None and a <= with_b[1] and with_b[0] <= b:
                continue
        if phase == "B":
            w = chunks.get((row, mb, "W", stage))
            if w is not None and w[0] <= b and a <= w[1]:
                a, b = min(a, w[0]), max(b, w[1])
        labels.append((row, (a + b) / 2, mb, phase == "F", a, b))
    return sorted(labels)


def timeline_data(records: list[tuple], ranks: int, makespan_s: float, title: str = "",
                  pipeline_rank: dict[int, int] | None = None, max_bars: int = MAX_BARS) -> dict:
    """JSON-ready data for ``moesim.timeline`` in the browser; times in seconds.

    ``records`` are the engine's (rank, stream, start_s, end_s, label, phase, micro_batch, stage). Returns
    ``rows`` (row names, top to bottom), ``styles`` (name, colour, kind: ``task`` or ``mark``), ``labels``,
    ``ops`` (columns ``row``, ``start``, ``end``, ``style``, ``label``, ``mb``, ``stage``; records and gap
    marks together, sorted by start), ``chunks`` (one per micro-batch, phase and stage on a compute row: the
    extent that carries the micro-batch number), ``tasks`` (how many ops are records), and ``max_dur_s``.
    """
    way = directions(records, pipeline_rank)
    two_way = len(set(way.values())) == 2
    present = sorted({rec[0] for rec in records})
    shown = present if present and (present[-1] >= ranks or len(present) < ranks) else list(range(ranks))
    row_index = {(r, s): i for i, (r, s) in enumerate((r, s) for r in shown for s in STREAMS)}
    table = style_table(two_way)
    style_index = {key: i for i, key in enumerate(table)}
    labels: dict[str, int] = {}
    ops: list[tuple] = []
    busy: dict[int, dict[str, list]] = defaultdict(lambda: {"compute": [], "comm": []})
    chunks: dict[tuple, list[float]] = {}
    for rank, stream, start, end, label, phase, mb, stage in records:
        if end <= start:
            continue
        key = style_key(stream, label, phase, way.get((mb, stage), 1), two_way)
        if key not in style_index:  # a phase this table does not know still gets drawn, in grey
            table[key] = (key, "#888888", "task")
            style_index[key] = len(style_index)
        comm = stream in COMM_STREAMS
        row = row_index[(rank, "comm" if comm else "compute")]
        ops.append((start, row, end, style_index[key], labels.setdefault(label, len(labels)), mb, stage))
        busy[rank]["comm" if comm else "compute"].append((start, end))
        if not comm and stream != "host" and mb >= 0 and phase in PHASE_NAMES:
            extent = chunks.setdefault((row, mb, phase, stage), [start, end])
            extent[0], extent[1] = min(extent[0], start), max(extent[1], end)
    tasks = len(ops)
    marks = []
    for rank in shown:
        for start, end, kind in gap_marks(busy[rank]["compute"], busy[rank]["comm"], makespan_s):
            marks.append((start, row_index[(rank, "compute")], end, style_index[kind],
                          labels.setdefault(OTHER_STYLES[kind][0], len(labels)), -1, -1))
    every = sorted(ops + marks)
    chunk_rows = chunk_labels(chunks)
    return {
        "title": title or f"pipeline timeline — step {makespan_s:.3f} s",
        "makespan_s": makespan_s, "max_bars": max_bars, "tasks": tasks, "two_way": two_way,
        "rows": [row_name(r, s) for r, s in row_index],
        "styles": [{"key": k, "name": v[0], "colour": v[1], "kind": v[2]} for k, v in table.items()],
        "labels": list(labels),
        "max_dur_s": max((e[2] - e[0] for e in every), default=0.0),
        "ops": {"start": [e[0] for e in every], "row": [e[1] for e in every], "end": [e[2] for e in every],
                "style": [e[3] for e in every], "label": [e[4] for e in every], "mb": [e[5] for e in every],
                "stage": [e[6] for e in every]},
        "chunks": {"row": [c[0] for c in chunk_rows], "mid": [c[1] for c in chunk_rows],
                   "mb": [c[2] for c in chunk_rows], "upper": [c[3] for c in chunk_rows],
                   "start": [c[4] for c in chunk_rows], "end": [c[5] for c in chunk_rows]},
    }


def timeline_of(timeline, title: str = "", max_bars: int = MAX_BARS) -> dict:
    """:func:`timeline_data` of an engine :class:`~moesim.simulator.engine.Timeline`."""
    return timeline_data(timeline.records, timeline.ranks, timeline.makespan_s, title,
                         timeline.pipeline_rank, max_bars)


def script() -> str:
    """The browser side (``moesim.js``): timeline drawing, chart downloads."""
    return SCRIPT.read_text()
