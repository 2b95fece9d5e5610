"""Sweep charts: step time against GPUs (and cost) with the Pareto front, and a parallel-coordinates view.

A sweep is a list of flat rows (dicts), one per simulated layout, as ``moesim sweep`` writes them to CSV or
Parquet. The charts need a step-time column; GPUs and cost columns are used when present. Every other column
(the layout: dp, tp, pp, ep, schedule, ...) shows on hover.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import plotly.graph_objects as go

from workloads.errors import ScenarioError

STEP = "step_time_s"
GPUS = "gpus"
COST_CANDIDATES = ("cost_usd", "cost", "gpu_hours_per_trillion_tokens", "gpu_hours")
LAYOUT_HINTS = ("schedule", "dp", "tp", "pp", "ep", "cp", "virtual_stages", "micro_batch_size", "gpu", "topology")


def _number(text: str | None):
    if text is None:  # a row shorter than the header
        return ""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def read_sweep(path: str | Path) -> list[dict]:
    """Rows of a sweep CSV or Parquet file; numbers parsed, one-line errors for unreadable files."""
    path = Path(path)
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ScenarioError(f"{path}: reading Parquet needs pyarrow (pip install 'moesim[report]')") from None
        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as err:  # pyarrow raises several unrelated types for a corrupt file
            raise ScenarioError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0]})") from None
    else:
        with path.open(newline="") as handle:
            rows = [{k: _number(v) for k, v in row.items() if k is not None} for row in csv.DictReader(handle)]
    check_rows(rows, str(path))
    return rows


def check_rows(rows: list[dict], source: str) -> None:
    if not rows:
        raise ScenarioError(f"{source}: the sweep has no rows")
    if not all(isinstance(r, dict) for r in rows):
        raise ScenarioError(f"{source}: a sweep is a list of rows (objects of column: value)")
    if not any(STEP in r for r in rows):
        raise ScenarioError(f"{source}: a sweep needs a {STEP!r} column; it has {', '.join(list(rows[0])[:12])}")
    # The charted columns hold numbers or nothing (a failed layout's row leaves them empty); anything else is a
    # damaged file, named by row and column rather than drawn as nonsense.
    for column in (STEP, GPUS, cost_column(rows)):
        for i, row in enumerate(rows):
            value = row.get(column) if column else None
            if value not in ("", None) and not _valid(value):
                raise ScenarioError(f"{source}: row {i + 1}: {column}={value!r} is not a finite number; "
                                    "fix the cell or leave it empty")
    if not any(_valid(r.get(STEP)) for r in rows):
        why = next((f" (first reason: {r['reason']})" for r in rows if r.get("reason")), "")
        raise ScenarioError(f"{source}: none of its {len(rows)} rows has a {STEP}: every layout failed{why}; "
                            "nothing to chart")


def cost_column(rows: list[dict]) -> str | None:
    return next((c for c in COST_CANDIDATES if any(c in r for r in rows)), None)


def _valid(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pareto_front(rows: list[dict], objectives: list[str]) -> list[int]:
    """Indices of rows no other row beats: <= on every objective and < on one (all minimised)."""
    points = [(i, [r.get(o) for o in objectives]) for i, r in enumerate(rows)]
    points = [(i, p) for i, p in points if all(_valid(v) for v in p)]
    front = []
    for i, p in points:
        dominated = any(all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p))
                        for j, q in points if j != i)
        if not dominated:
            front.append(i)
    return front


def layout_text(row: dict) -> str:
    """Hover text: the layout columns first, then every other column."""
    keys = [k for k in LAYOUT_HINTS if k in row] + [k for k in row if k not in LAYOUT_HINTS]
    parts = []
    for k in keys:
        v = row[k]
        parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    lines = [", ".join(parts[i:i + 4]) for i in range(0, len(parts), 4)]
    return "<br>".join(lines)


def scatter_figure(rows: list[dict]) -> go.Figure:
    """Step time vs GPUs (or row index), coloured by cost when there is one; the Pareto front drawn as a line."""
    cost = cost_column(rows)
    usable = [i for i, r in enumerate(rows) if _valid(r.get(STEP))]
    x_key = GPUS if all(_valid(rows[i].get(GPUS)) for i in usable) else None
    cost = cost if cost and all(_valid(rows[i].get(cost)) for i in usable) else None
    xs = [rows[i][x_key] if x_key else i for i in usable]
    objectives = [STEP] + ([x_key] if x_key else []) + ([cost] if cost else [])
    front = set(pareto_front(rows, objectives))
    marker = dict(size=[13 if i in front else 8 for i in usable],
                  line=dict(width=[2 if i in front else 0 for i in usable], color="#222"))
    if cost:
        marker.update(color=[rows[i].get(cost) for i in usable], colorscale="Viridis", showscale=True,
                      colorbar_title=cost)
    fig = go.Figure(go.Scatter(
        x=xs, y=[rows[i][STEP] for i in usable], mode="markers", marker=marker, name="layouts",
        customdata=[layout_text(rows[i]) for i in usable],
        hovertemplate="step %{y:.3f} s<br>%{customdata}<extra></extra>"))
    # The 2-D front (step time vs GPUs) as a staircase through the non-dominated points.
    front_2d = sorted(pareto_front(rows, objectives[:2]), key=lambda i: (xs[usable.index(i)], rows[i][STEP]))
    if front_2d:
        fig.add_trace(go.Scatter(
            x=[xs[usable.index(i)] for i in front_2d], y=[rows[i][STEP] for i in front_2d],
            mode="lines", line_shape="hv", line=dict(color="#E45756", width=2), name="Pareto front",
            hoverinfo="skip"))
    fig.update_layout(
        title=f"sweep: {len(usable)} layouts, Pareto front over {', '.join(objectives)} (larger markers)",
        xaxis_title=x_key or "layout #", yaxis_title="step time (s)", legend_orientation="h", legend_y=-0.2)
    return fig


def parallel_figure(rows: list[dict]) -> go.Figure:
    """Parallel coordinates over every numeric column, plus categorical columns (e.g. schedule) as codes."""
    dims = []
    for key in rows[0]:
        values = [r.get(key) for r in rows]
        if all(_valid(v) for v in values):
            if len(set(values)) > 1 or key == STEP:
                dims.append(dict(label=key, values=values))
        elif all(isinstance(v, str) for v in values) and 1 < len(set(values)) <= 24:
            names = sorted(set(values))
            dims.append(dict(label=key, values=[names.index(v) for v in values],
                             tickvals=list(range(len(names))), ticktext=names))
    step = [r[STEP] if _valid(r.get(STEP)) else 0.0 for r in rows]
    fig = go.Figure(go.Parcoords(line=dict(color=step, colorscale="Viridis_r", showscale=True,
                                           colorbar_title="step (s)"), dimensions=dims))
    fig.update_layout(title="parallel coordinates (drag on an axis to filter)", margin=dict(l=70, r=140))
    return fig
