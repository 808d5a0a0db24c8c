"""Dashboard charts: the report charts (``analytics_lib.reporting.charts``) sized for a
dashboard tile, the few shapes reports do not need (grouped and share bars), and the two ways a
figure leaves the kernel: a plotly mime bundle for an ``Output`` widget, and an HTML fragment
for the PDF export. Nothing here needs the network (no geo maps: regions are bars)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from analytics_lib.reporting import charts as report_charts
from analytics_lib.reporting.theme import PALETTE, register_plotly_template

PLOTLY_MIME = "application/vnd.plotly.v1+json"
TILE_HEIGHT = 300
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True,
                 "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"]}


def tile(fig: go.Figure, height: int = TILE_HEIGHT) -> go.Figure:
    """A figure at the dashboard's tile height: title on the first line, legend (if any) on the
    second, tight margins; ``uirevision`` keeps a viewer's zoom across refreshes."""
    legend = fig.layout.showlegend is not False and len(fig.data) > 1
    fig.update_layout(height=height, margin={"l": 48, "r": 16, "t": 84 if legend else 44, "b": 36},
                      title={"y": 0.985, "yanchor": "top", "yref": "container"},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0},
                      uirevision="keep")
    return fig


def duration(ms: object) -> str:
    """Milliseconds as people read them: 850 ms, 2.4 s, 12 min, 4.5 h."""
    if ms is None or not isinstance(ms, (int, float)) or ms != ms:
        return "–"
    value = float(ms)
    if value < 1000:
        return f"{value:,.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.1f} s"
    if value < 3_600_000:
        return f"{value / 60_000:.0f} min"
    return f"{value / 3_600_000:.1f} h"


def empty(title: str, text: str = "No data for these filters.") -> go.Figure:
    """A blank tile that says why it is blank."""
    register_plotly_template()
    fig = go.Figure()
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False},
                      annotations=[{"text": text, "showarrow": False, "font": {"size": 14}}])
    return tile(fig)


def volume(hourly: pd.DataFrame, title: str) -> go.Figure:
    """Attempts per hour: successful and failed stacked."""
    if hourly.empty:
        return empty(title)
    frame = hourly.assign(other=hourly["transactions"] - hourly["successful"] - hourly["failed"])
    ys = ["successful", "failed"] + (["other"] if (frame["other"] > 0).any() else [])
    return tile(report_charts.time_series(frame, "hour", ys, title, bars=True,
                                          labels={"other": "pending / other"}))


def revenue_per_hour(hourly: pd.DataFrame, title: str, currency: str) -> go.Figure:
    if hourly.empty:
        return empty(title)
    return tile(report_charts.time_series(hourly, "hour", ["revenue"], title, kind="money", currency=currency,
                                          bars=True))


def bars(frame: pd.DataFrame, label: str, value: str, title: str, kind: str = "number",
         currency: str = "USD", top: int = 10) -> go.Figure:
    """Horizontal bars, largest first (the report breakdown at tile size)."""
    if frame is None or frame.empty or value not in frame:
        return empty(title)
    fig = report_charts.breakdown(frame, label, value, title, kind=kind, currency=currency, top=top)
    return tile(fig, max(TILE_HEIGHT, int(fig.layout.height or 0)))


def latency(frame: pd.DataFrame, label: str, values: Sequence[str], title: str,
            names: Mapping[str, str] | None = None) -> go.Figure:
    """Latency percentiles side by side per ``label``, in seconds on a log axis: card payments
    take milliseconds, bank transfers hours, and both must stay readable."""
    frame = frame.dropna(subset=list(values), how="all") if frame is not None else frame
    if frame is None or frame.empty:
        return empty(title)
    register_plotly_template()
    fig = go.Figure()
    for i, column in enumerate(values):
        fig.add_trace(go.Bar(x=frame[label].astype(str), y=frame[column] / 1000, name=(names or {}).get(column, column),
                             marker_color=PALETTE[i % len(PALETTE)],
                             hovertext=[duration(v) for v in frame[column]], hoverinfo="x+name+text"))
    fig.update_layout(title=title, barmode="group", hovermode="x unified",
                      yaxis={"type": "log", "title": {"text": "seconds (log scale)"}}, xaxis={"tickangle": -30})
    return tile(fig)


def shares(frame: pd.DataFrame, group: str, part: str, value: str, title: str) -> go.Figure:
    """One horizontal bar per ``group`` split into its ``part`` shares (e.g. each provider's
    failures by reason)."""
    if frame is None or frame.empty:
        return empty(title)
    register_plotly_template()
    fig = go.Figure()
    for i, (name, rows) in enumerate(frame.groupby(part, sort=False)):
        fig.add_trace(go.Bar(y=rows[group].astype(str), x=rows[value], name=str(name), orientation="h",
                             marker_color=PALETTE[i % len(PALETTE)]))
    fig.update_layout(title=title, barmode="stack", xaxis={"tickformat": ".0%"}, yaxis={"automargin": True})
    return tile(fig)


def matrix(frame: pd.DataFrame, rows: str, columns: str, value: str, title: str) -> go.Figure:
    """A rows x columns heatmap of a rate (e.g. success by provider and method)."""
    if frame is None or frame.empty:
        return empty(title)
    pivot = frame.pivot_table(index=rows, columns=columns, values=value, aggfunc="mean")
    fig = report_charts.heatmap(pivot, title, kind="percent")
    fig.update_layout(xaxis={"side": "bottom", "tickangle": -20})
    return tile(fig)


def trend(daily: pd.DataFrame, x: str, ys: Sequence[str], title: str, currency: str,
          labels: Mapping[str, str] | None = None) -> go.Figure:
    if daily is None or daily.empty:
        return empty(title)
    return tile(report_charts.time_series(daily, x, ys, title, kind="money", currency=currency, labels=labels))


def bridge(steps: Sequence[tuple[str, float]], title: str, currency: str) -> go.Figure:
    return tile(report_charts.waterfall(steps, title, currency, total_label="Net revenue"))


def movements(frame: pd.DataFrame, title: str, currency: str) -> go.Figure:
    if frame is None or frame.empty:
        return empty(title, "No subscription movements in this range.")
    return tile(report_charts.stacked_movements(frame, "label", title, currency))


def forecast(history: pd.DataFrame, prediction: pd.DataFrame, title: str, currency: str) -> go.Figure:
    return tile(report_charts.forecast(history, prediction, title, currency, lower="lower_80", upper="upper_80"))


# -- leaving the kernel -----------------------------------------------------------------------------


def figure_json(fig: go.Figure) -> dict[str, Any]:
    """The figure as plain JSON (what the browser's plotly renderer receives)."""
    register_plotly_template()
    return json.loads(pio.to_json(fig, validate=False, pretty=False, remove_uids=True))


def bundle(fig: go.Figure) -> tuple[dict[str, Any], str]:
    """An ``Output`` widget output holding the figure as plotly's mime type, and a digest of it
    (a tile is only re-sent to the browser when its digest changes)."""
    spec = figure_json(fig) | {"config": PLOTLY_CONFIG}
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
    title = fig.layout.title.text if fig.layout.title and fig.layout.title.text else "chart"
    output = {"output_type": "display_data", "metadata": {},
              "data": {PLOTLY_MIME: spec, "text/plain": f"<{title}>"}}
    return output, digest


def figure_html(fig: go.Figure, div_id: str) -> str:
    """A ``.pa-chart`` div drawn by the page's inline plotly.js (the PDF export's page)."""
    spec = json.dumps(figure_json(fig)).replace("</", "<\\/")
    height = int(fig.layout.height or TILE_HEIGHT)
    config = json.dumps({"displaylogo": False, "staticPlot": True})
    return (f'<div class="pa-chart" id="{div_id}" style="height:{height}px"></div>'
            f'<script>(function(){{var s={spec};Plotly.newPlot("{div_id}",s.data,s.layout,{config});}})();</script>')
