"""Link-utilisation heat map of a :class:`~moesim.simulator.report.traffic.Grid` (any rows × columns of links)."""

from __future__ import annotations

import plotly.graph_objects as go

from moesim.simulator.report.traffic import Grid


def heatmap_figure(grid: Grid) -> go.Figure:
    """Heat map, 0 to max(1, peak) for utilisation grids; hover shows the value and the grid's detail."""
    percent = grid.unit == "utilisation"
    z = [[v * 100 for v in row] for row in grid.values] if percent else grid.values
    peak = max((v for row in z for v in row), default=0.0)
    fig = go.Figure(go.Heatmap(
        z=z, x=grid.columns, y=grid.rows, customdata=grid.detail, colorscale="YlOrRd",
        zmin=0, zmax=max(100.0, peak) if percent else None,
        colorbar_title="% busy" if percent else grid.unit,
        texttemplate="%{z:.0f}%" if percent else "%{z:.3g}",
        hovertemplate="%{y}, %{x}: %{z:.1f}" + ("%" if percent else "") + "<br>%{customdata}<extra></extra>"))
    fig.update_layout(title=grid.title, height=max(280, 140 + 50 * len(grid.rows)),
                      xaxis_title=grid.column_title, yaxis_title=grid.row_title)
    return fig
