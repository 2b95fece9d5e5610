"""Sweep charts: step time against GPUs (and cost) with the Pareto front, and a parallel-coordinates view.

A sweep is a list of flat rows (dicts), one per simulated layout, as ``moesim sweep`` writes them to CSV or
Parquet. The charts need a step-time column; GPUs and cost columns are used when present. Every other column
(the layout: dp, tp, pp, ep, schedule, ...) shows on hover.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import plotly.graph_objects as go

from moesim.workloads.documents import decode
from moesim.workloads.errors import ScenarioError

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
        text = decode(path.read_bytes(), str(path), fix="give a sweep results file moesim wrote")
        rows = [{k: _number(v) for k, v in row.items() if k is not None}
                for row in csv.DictReader(io.StringIO(text, newline=""))]
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


# The metrics hover and parallel coordinates show (when a sweep has them), with their labels.
METRICS = {STEP: "step s", "mfu_causal": "MFU", "gpu_hours": "GPU-hours",
           "gpu_hours_per_trillion_tokens": "GPU-h / T tokens", "training_days": "days",
           "max_peak_memory_gb": "peak GB"}
NOT_LAYOUT = {"key", "status", "reason", "hbm_gb", "fits_in_memory", "cost_usd", "cost"}


def fits(row: dict) -> bool:
    """Simulated, valid and within HBM (rows without status or fit columns count as fitting)."""
    return (_valid(row.get(STEP)) and row.get("status", "ok") == "ok" and row.get("fits_in_memory", True) is not False)


def layout_keys(rows: list[dict]) -> list[str]:
    """The layout knobs of a sweep: its columns that are not metrics (the sweep's axes)."""
    from moesim.simulator.sweep.row import METRIC_COLUMNS
    skip = set(METRIC_COLUMNS) | set(METRICS) | NOT_LAYOUT
    keys = [k for k in LAYOUT_HINTS if k in rows[0]]
    for row in rows:
        keys += [k for k in row if k not in skip and k not in keys]
    return keys


def layout_text(row: dict, keys: list[str] | None = None) -> str:
    """Hover text: the layout (the sweep's knobs), then the metrics that matter — not every column."""
    keys = keys if keys is not None else layout_keys([row])
    knobs = [f"{k.split('.')[-1]}={row[k]}" for k in keys if k in row]
    lines = [", ".join(knobs[i:i + 5]) for i in range(0, len(knobs), 5)]
    metrics = []
    for key, label in METRICS.items():
        value = row.get(key)
        if _valid(value):
            metrics.append(f"{label} {value:.1%}" if key == "mfu_causal" else f"{label} {value:,.4g}")
    if _valid(row.get("max_peak_memory_gb")) and _valid(row.get("hbm_gb")):
        metrics[-1] += f" of {row['hbm_gb']:g}"
    if not fits(row):
        metrics.append("DOES NOT FIT in memory" if row.get("fits_in_memory") is False else "invalid")
    return "<br>".join(lines + [", ".join(metrics)])


def scatter_figure(rows: list[dict]) -> go.Figure:
    """Step time vs GPUs (or row index), coloured by cost when there is one. The Pareto front is drawn through
    the layouts that fit; those that do not fit in memory are drawn apart (grey crosses) and never on it."""
    cost = cost_column(rows)
    keys = layout_keys(rows)
    usable = [i for i, r in enumerate(rows) if _valid(r.get(STEP))]
    # A column with a non-numeric cell cannot be an axis or an objective.
    x_key = GPUS if all(_valid(rows[i].get(GPUS)) for i in usable) else None
    cost = cost if cost and all(_valid(rows[i].get(cost)) for i in usable) else None
    good = [i for i in usable if fits(rows[i])]
    bad = [i for i in usable if not fits(rows[i])]
    x_of = {i: (rows[i][x_key] if x_key else i) for i in usable}
    fitting = [rows[i] for i in good]
    objectives = [STEP] + ([x_key] if x_key else []) + ([cost] if cost else [])
    front = {good[j] for j in pareto_front(fitting, objectives)}
    marker = dict(size=[13 if i in front else 8 for i in good],
                  line=dict(width=[2 if i in front else 0 for i in good], color="#222"))
    if cost:
        marker.update(color=[rows[i].get(cost) for i in good], colorscale="Viridis", showscale=True,
                      colorbar_title=cost)
    fig = go.Figure(go.Scatter(
        x=[x_of[i] for i in good], y=[rows[i][STEP] for i in good], mode="markers", marker=marker,
        name="fits in memory", customdata=[layout_text(rows[i], keys) for i in good],
        hovertemplate="%{customdata}<extra></extra>"))
    if bad:
        fig.add_trace(go.Scatter(
            x=[x_of[i] for i in bad], y=[rows[i][STEP] for i in bad], mode="markers", name="does not fit",
            marker=dict(symbol="x", size=8, color="#aaaaaa"), customdata=[layout_text(rows[i], keys) for i in bad],
            hovertemplate="%{customdata}<extra></extra>"))
    # The 2-D front (step time vs GPUs) of the fitting layouts as a staircase.
    front_2d = sorted((good[j] for j in pareto_front(fitting, objectives[:2])), key=lambda i: (x_of[i], rows[i][STEP]))
    if front_2d:
        fig.add_trace(go.Scatter(
            x=[x_of[i] for i in front_2d], y=[rows[i][STEP] for i in front_2d],
            mode="lines", line_shape="hv", line=dict(color="#E45756", width=2), name="Pareto front",
            hoverinfo="skip"))
    fig.update_layout(
        title=f"sweep: {len(good)} layouts that fit" + (f", {len(bad)} that do not (grey ×)" if bad else "")
        + f"; Pareto front over {', '.join(objectives)} (larger markers)",
        xaxis_title=x_key or "layout #", yaxis_title="step time (s)", legend_orientation="h", legend_y=-0.2)
    return fig


def parallel_figure(rows: list[dict]) -> go.Figure:
    """Parallel coordinates over the layout knobs and the metrics (step time, MFU, GPU-hours, memory); a last
    axis says whether a layout fits when some do not. Categorical knobs (e.g. schedule) show as named ticks."""
    rows = [r for r in rows if _valid(r.get(STEP))]
    dims = []
    columns = layout_keys(rows) + [k for k in METRICS if k in rows[0]]
    for key in columns:
        values = [r.get(key) for r in rows]
        label = METRICS.get(key, key.split(".")[-1])
        if all(_valid(v) for v in values):
            if len(set(values)) > 1 or key == STEP:
                dims.append(dict(label=label, values=values))
        elif all(v is not None for v in values) and 1 < len({str(v) for v in values}) <= 24:
            names = sorted({str(v) for v in values})
            dims.append(dict(label=label, values=[names.index(str(v)) for v in values],
                             tickvals=list(range(len(names))), ticktext=names))
    fit = [fits(r) for r in rows]
    if not all(fit):
        dims.append(dict(label="fits in memory", values=[int(f) for f in fit], tickvals=[0, 1],
                         ticktext=["no", "yes"]))
    step = [r[STEP] for r in rows]
    fig = go.Figure(go.Parcoords(line=dict(color=step, colorscale="Viridis_r", showscale=True,
                                           colorbar_title="step (s)"), dimensions=dims))
    fig.update_layout(title="parallel coordinates over layout knobs and metrics (drag on an axis to filter)",
                      margin=dict(l=70, r=140))
    return fig
