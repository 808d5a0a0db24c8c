"""Dashboard charts, and the two ways a chart leaves the kernel: a plotly mime bundle for an
``Output`` widget, and an HTML fragment for the PDF export. Nothing here needs the network (no
geo maps: regions are bars).

Two kinds of chart, for a measured reason: building a ``plotly.graph_objects.Figure`` in the
report theme costs about 0.1-0.2 s (plotly merges and validates the theme's template for every
figure), which alone would blow a live dashboard's refresh budget. So the charts a live refresh
redraws (bars, stacked bars, latency, shares, heat maps) are built here as plain plotly JSON
carrying the report theme's template, computed once per kernel (:func:`theme_template`). The
period dashboards' richer charts (trend, gross-to-net bridge, MRR movements, forecast band),
redrawn every few minutes, are the report charts of ``analytics_lib.reporting.charts`` at tile
size.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from analytics_lib.reporting import charts as report_charts
from analytics_lib.reporting import format as fmt
from analytics_lib.reporting.theme import BAD, PALETTE, SEQUENTIAL, register_plotly_template

PLOTLY_MIME = "application/vnd.plotly.v1+json"
TILE_HEIGHT = 300
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True,
                 "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"]}
#: the parts of the theme's template a dashboard chart uses (the rest is 3D, maps, polar, ...)
_TEMPLATE_LAYOUT = ("font", "colorway", "paper_bgcolor", "plot_bgcolor", "xaxis", "yaxis", "title", "legend",
                    "hoverlabel", "hovermode", "colorscale", "margin", "autotypenumbers")
_TEMPLATE_DATA = ("bar", "scatter", "heatmap")

Figure: TypeAlias = go.Figure | dict[str, Any]


@cache
def theme_template() -> dict[str, Any]:
    """The report theme's plotly template as JSON (``analytics_lib.reporting.theme``), trimmed
    to what 2-D charts use: computed once, then shared by every chart."""
    register_plotly_template()
    full = pio.templates[pio.templates.default].to_plotly_json()
    return {"layout": {k: v for k, v in full.get("layout", {}).items() if k in _TEMPLATE_LAYOUT},
            "data": {k: v for k, v in full.get("data", {}).items() if k in _TEMPLATE_DATA}}


def _values(series: pd.Series) -> list[Any]:
    """A column as JSON values (times as ISO text, NaN as null)."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return [None if pd.isna(v) else v.isoformat() for v in series]
    out: list[Any] = []
    for v in series.tolist():
        if isinstance(v, float) and not math.isfinite(v):
            out.append(None)
        elif isinstance(v, np.generic):
            out.append(v.item())
        else:
            out.append(v)
    return out


def _layout(title: str, traces: int, height: int = TILE_HEIGHT, **extra: Any) -> dict[str, Any]:
    legend = traces > 1
    layout: dict[str, Any] = {
        "template": theme_template(),
        "title": {"text": title, "x": 0, "xanchor": "left", "y": 0.985, "yanchor": "top", "yref": "container"},
        "height": height,
        "margin": {"l": 48, "r": 16, "t": 84 if legend else 44, "b": 36},
        "showlegend": legend,
        "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0},
        "uirevision": "keep",  # a viewer's zoom survives refreshes
    }
    for key, value in extra.items():
        current = layout.get(key)
        layout[key] = {**current, **value} if isinstance(value, dict) and isinstance(current, dict) else value
    return layout


def _money_axis(currency: str) -> dict[str, Any]:
    return {"tickprefix": fmt.CURRENCY_SYMBOLS.get(currency.upper(), ""), "tickformat": ",.0f", "title": None}


def figure_height(fig: Figure) -> int:
    height = fig.get("layout", {}).get("height") if isinstance(fig, dict) else fig.layout.height
    return int(height or TILE_HEIGHT)


def tile(fig: go.Figure, height: int = TILE_HEIGHT) -> go.Figure:
    """A report chart at the dashboard's tile height: title on the first line, legend (if any)
    on the second, tight margins; ``uirevision`` keeps a viewer's zoom across refreshes."""
    legend = fig.layout.showlegend is not False and len(fig.data) > 1
    fig.update_layout(height=height, margin={"l": 48, "r": 16, "t": 84 if legend else 44, "b": 36},
                      title={"y": 0.985, "yanchor": "top", "yref": "container"},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0},
                      uirevision="keep")
    return fig


def duration(ms: object) -> str:
    """Milliseconds as people read them: 850 ms, 2.4 s, 12 min, 4.5 h."""
    if ms is None or not isinstance(ms, int | float) or ms != ms:
        return "–"
    value = float(ms)
    if value < 1000:
        return f"{value:,.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.1f} s"
    if value < 3_600_000:
        return f"{value / 60_000:.0f} min"
    return f"{value / 3_600_000:.1f} h"


# -- live charts (plain plotly JSON) --------------------------------------------------------------------


def empty(title: str, text: str = "No data for these filters.") -> dict[str, Any]:
    """A blank tile that says why it is blank."""
    return {"data": [], "layout": _layout(title, 0, xaxis={"visible": False}, yaxis={"visible": False},
                                          annotations=[{"text": text, "showarrow": False, "font": {"size": 14}}])}


def volume(hourly: pd.DataFrame, title: str) -> dict[str, Any]:
    """Attempts per hour: successful and failed (and pending/other) stacked."""
    if hourly.empty:
        return empty(title)
    other = hourly["transactions"] - hourly["successful"] - hourly["failed"]
    parts = [("successful", hourly["successful"], PALETTE[0]), ("failed", hourly["failed"], BAD)]
    if (other > 0).any():
        parts.append(("pending / other", other, PALETTE[4]))
    x = _values(hourly["hour"])
    traces = [{"type": "bar", "x": x, "y": _values(y), "name": name, "marker": {"color": colour}}
              for name, y, colour in parts]
    return {"data": traces, "layout": _layout(title, len(traces), barmode="stack", hovermode="x unified")}


def revenue_per_hour(hourly: pd.DataFrame, title: str, currency: str) -> dict[str, Any]:
    if hourly.empty:
        return empty(title)
    trace = {"type": "bar", "x": _values(hourly["hour"]), "y": _values(hourly["revenue"]), "name": "revenue",
             "marker": {"color": PALETTE[0]}}
    return {"data": [trace], "layout": _layout(title, 1, yaxis=_money_axis(currency), hovermode="x unified")}


def bars(frame: pd.DataFrame, label: str, value: str, title: str, kind: str = "number",
         currency: str = "USD", top: int = 10) -> dict[str, Any]:
    """Horizontal bars, largest first (the top ``top``), labelled with their formatted values."""
    if frame is None or frame.empty or value not in frame:
        return empty(title)
    data = frame.nlargest(top, value) if len(frame) > top else frame.sort_values(value, ascending=False)
    data = data.iloc[::-1]
    trace = {"type": "bar", "orientation": "h", "x": _values(data[value]), "y": [str(v) for v in data[label]],
             "text": [fmt.value(v, kind, currency, compact=True) for v in data[value]], "textposition": "auto",
             "marker": {"color": PALETTE[0]}, "cliponaxis": False}
    axis: dict[str, Any] = _money_axis(currency) if kind == "money" else (
        {"tickformat": ".0%"} if kind == "percent" else {})
    height = max(TILE_HEIGHT, 60 + 28 * len(data))
    return {"data": [trace], "layout": _layout(title, 1, height=height, xaxis=axis, yaxis={"automargin": True})}


def latency(frame: pd.DataFrame, label: str, values: Sequence[str], title: str,
            names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Latency percentiles side by side per ``label``, in seconds on a log axis: card payments
    take milliseconds, bank transfers hours, and both must stay readable."""
    frame = frame.dropna(subset=list(values), how="all") if frame is not None and not frame.empty else frame
    if frame is None or frame.empty:
        return empty(title)
    traces = [{"type": "bar", "x": [str(v) for v in frame[label]], "y": [None if pd.isna(v) else v / 1000 for v in frame[c]],
               "name": (names or {}).get(c, c), "marker": {"color": PALETTE[i % len(PALETTE)]},
               "hovertext": [duration(v) for v in frame[c]], "hoverinfo": "x+name+text"}
              for i, c in enumerate(values)]
    return {"data": traces, "layout": _layout(title, len(traces), barmode="group", hovermode="x unified",
                                              yaxis={"type": "log", "title": {"text": "seconds (log scale)"}},
                                              xaxis={"tickangle": -30})}


def shares(frame: pd.DataFrame, group: str, part: str, value: str, title: str) -> dict[str, Any]:
    """One horizontal bar per ``group`` split into its ``part`` shares (e.g. each provider's
    failures by reason)."""
    if frame is None or frame.empty:
        return empty(title)
    traces = [{"type": "bar", "orientation": "h", "y": [str(v) for v in rows[group]], "x": _values(rows[value]),
               "name": str(name), "marker": {"color": PALETTE[i % len(PALETTE)]}}
              for i, (name, rows) in enumerate(frame.groupby(part, sort=False))]
    return {"data": traces, "layout": _layout(title, len(traces), barmode="stack", xaxis={"tickformat": ".0%"},
                                              yaxis={"automargin": True})}


def matrix(frame: pd.DataFrame, rows: str, columns: str, value: str, title: str) -> dict[str, Any]:
    """A rows x columns heat map of a rate (e.g. success by provider and method), values written in."""
    if frame is None or frame.empty:
        return empty(title)
    pivot = frame.pivot_table(index=rows, columns=columns, values=value, aggfunc="mean")
    z = [[None if pd.isna(v) else float(v) for v in row] for row in pivot.to_numpy(dtype=float)]
    text = [["" if v is None else fmt.percent(v, 0) for v in row] for row in z]
    trace = {"type": "heatmap", "z": z, "x": [str(c) for c in pivot.columns], "y": [str(i) for i in pivot.index],
             "text": text, "texttemplate": "%{text}", "colorscale": SEQUENTIAL, "showscale": False,
             "hoverongaps": False, "xgap": 1, "ygap": 1, "zmin": 0, "zmax": 1}
    return {"data": [trace], "layout": _layout(title, 1, xaxis={"type": "category", "tickangle": -20},
                                               yaxis={"type": "category", "autorange": "reversed"})}


# -- period charts (the report charts at tile size) ------------------------------------------------------


def trend(daily: pd.DataFrame, x: str, ys: Sequence[str], title: str, currency: str,
          labels: Mapping[str, str] | None = None) -> Figure:
    if daily is None or daily.empty:
        return empty(title)
    return tile(report_charts.time_series(daily, x, ys, title, kind="money", currency=currency, labels=labels))


def bridge(steps: Sequence[tuple[str, float]], title: str, currency: str) -> Figure:
    return tile(report_charts.waterfall(steps, title, currency, total_label="Net revenue"))


def movements(frame: pd.DataFrame, title: str, currency: str) -> Figure:
    if frame is None or frame.empty:
        return empty(title, "No subscription movements in this range.")
    return tile(report_charts.stacked_movements(frame, "label", title, currency))


def forecast(history: pd.DataFrame, prediction: pd.DataFrame, title: str, currency: str) -> Figure:
    return tile(report_charts.forecast(history, prediction, title, currency, lower="lower_80", upper="upper_80"))


# -- leaving the kernel -----------------------------------------------------------------------------


def figure_json(fig: Figure) -> dict[str, Any]:
    """The figure as plain JSON (what the browser's plotly renderer receives)."""
    if isinstance(fig, dict):
        return fig
    return json.loads(pio.to_json(fig, validate=False, pretty=False, remove_uids=True))


def bundle(fig: Figure) -> tuple[dict[str, Any], str]:
    """An ``Output`` widget output holding the figure as plotly's mime type, and a digest of it
    (a tile is only re-sent to the browser when its digest changes)."""
    spec = figure_json(fig) | {"config": PLOTLY_CONFIG}
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
    title = (spec.get("layout", {}).get("title") or {}).get("text") or "chart"
    output = {"output_type": "display_data", "metadata": {},
              "data": {PLOTLY_MIME: json.loads(text), "text/plain": f"<{title}>"}}
    return output, digest


def figure_html(fig: Figure, div_id: str) -> str:
    """A ``.pa-chart`` div drawn by the page's inline plotly.js (the PDF export's page)."""
    spec = json.dumps(figure_json(fig), default=str).replace("</", "<\\/")
    config = json.dumps({"displaylogo": False, "staticPlot": True})
    return (f'<div class="pa-chart" id="{div_id}" style="height:{figure_height(fig)}px"></div>'
            f'<script>(function(){{var s={spec};Plotly.newPlot("{div_id}",s.data,s.layout,{config});}})();</script>')
