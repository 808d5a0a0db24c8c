"""Chart builders for reports and dashboards: plotly figures in the report theme, sized for a
page. None of them needs the network (no maps that fetch map data: regions are bar charts)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go

from analytics_lib.reporting import format as fmt
from analytics_lib.reporting.theme import (
    BAD,
    GOOD,
    NEUTRAL,
    PALETTE,
    SEQUENTIAL,
    register_plotly_template,
)


def _money_axis(fig: go.Figure, currency: str, axis: str = "yaxis") -> None:
    symbol = fmt.CURRENCY_SYMBOLS.get(currency.upper(), "")
    fig.update_layout({axis: {"tickprefix": symbol, "tickformat": ",.0f", "title": None}})


def time_series(frame: pd.DataFrame, x: str, ys: Sequence[str], title: str, kind: str = "number",
                currency: str = "USD", labels: Mapping[str, str] | None = None,
                secondary: str | None = None, bars: bool = False) -> go.Figure:
    """Lines (or bars) over time; an optional ``secondary`` rate on a right-hand axis."""
    register_plotly_template()
    fig = go.Figure()
    for i, y in enumerate(ys):
        name = (labels or {}).get(y, y.replace("_", " "))
        trace = (go.Bar(x=frame[x], y=frame[y], name=name, marker_color=PALETTE[i % len(PALETTE)]) if bars
                 else go.Scatter(x=frame[x], y=frame[y], name=name, mode="lines", line={"width": 2.2}))
        fig.add_trace(trace)
    if secondary and secondary in frame:
        fig.add_trace(go.Scatter(x=frame[x], y=frame[secondary], name=(labels or {}).get(secondary, secondary.replace("_", " ")),
                                 mode="lines", line={"dash": "dot", "color": NEUTRAL}, yaxis="y2"))
        fig.update_layout(yaxis2={"overlaying": "y", "side": "right", "tickformat": ".0%", "showgrid": False,
                                  "title": None})
    fig.update_layout(title=title, barmode="stack" if bars and len(ys) > 1 else None, hovermode="x unified",
                      showlegend=len(ys) > 1 or bool(secondary))
    if kind == "money":
        _money_axis(fig, currency)
    elif kind == "percent":
        fig.update_layout(yaxis={"tickformat": ".0%"})
    return fig


def breakdown(frame: pd.DataFrame, label: str, value: str, title: str, kind: str = "number",
              currency: str = "USD", top: int = 12, color: str | None = None) -> go.Figure:
    """Horizontal bars, largest first (top ``top``)."""
    register_plotly_template()
    data = frame.nlargest(top, value) if len(frame) > top else frame.sort_values(value, ascending=False)
    data = data.iloc[::-1]
    text = [fmt.value(v, kind, currency, compact=True) for v in data[value]]
    fig = go.Figure(go.Bar(x=data[value], y=data[label].astype(str), orientation="h", text=text,
                           textposition="auto", marker_color=color or PALETTE[0], cliponaxis=False))
    height = max(220, 60 + 28 * len(data))
    fig.update_layout(title=title, height=height, showlegend=False, yaxis={"automargin": True})
    if kind == "money":
        _money_axis(fig, currency, "xaxis")
    elif kind == "percent":
        fig.update_layout(xaxis={"tickformat": ".0%"})
    return fig


def waterfall(steps: Sequence[tuple[str, float]], title: str, currency: str = "USD",
              total_label: str | None = None) -> go.Figure:
    """A bridge: the first step is the starting total, the others add or subtract, the last bar
    is the resulting total (e.g. gross -> refunds -> chargebacks -> fees -> net)."""
    register_plotly_template()
    names = [s[0] for s in steps]
    values = [s[1] for s in steps]
    measure = ["absolute"] + ["relative"] * (len(steps) - 1)
    if total_label:
        names.append(total_label)
        values.append(0)
        measure.append("total")
    text = [fmt.money(v, currency, compact=True) for v in values[:-1]] + (
        [fmt.money(sum(values), currency, compact=True)] if total_label else [fmt.money(values[-1], currency, compact=True)])
    fig = go.Figure(go.Waterfall(x=names, y=values, measure=measure, text=text, textposition="outside",
                                 increasing={"marker": {"color": GOOD}}, decreasing={"marker": {"color": BAD}},
                                 totals={"marker": {"color": PALETTE[0]}}, connector={"line": {"color": NEUTRAL}}))
    fig.update_layout(title=title, showlegend=False)
    _money_axis(fig, currency)
    return fig


def heatmap(matrix: pd.DataFrame, title: str, kind: str = "percent", x_title: str = "", y_title: str = "",
            height: int | None = None) -> go.Figure:
    """A matrix (rows x columns) with values written in the cells."""
    register_plotly_template()
    z = matrix.to_numpy(dtype=float)
    text = [[("" if pd.isna(v) else (fmt.percent(v, 0) if kind == "percent" else fmt.number(v, 0))) for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=z, x=[str(c) for c in matrix.columns], y=[str(i) for i in matrix.index], text=text,
                               texttemplate="%{text}", colorscale=SEQUENTIAL, showscale=False, hoverongaps=False,
                               xgap=1, ygap=1))
    fig.update_layout(title=title, xaxis={"title": x_title, "side": "top", "type": "category"},
                      yaxis={"title": y_title, "autorange": "reversed", "type": "category"},
                      height=height or max(260, 80 + 26 * len(matrix)))
    return fig


def stacked_movements(frame: pd.DataFrame, x: str, title: str, currency: str = "USD") -> go.Figure:
    """MRR movements per month: gains above zero, losses below, net new MRR as a line."""
    register_plotly_template()
    fig = go.Figure()
    parts = [("new_mrr", "new", 1, PALETTE[0]), ("expansion_mrr", "expansion", 1, PALETTE[2]),
             ("reactivation_mrr", "reactivation", 1, PALETTE[4]), ("contraction_mrr", "contraction", -1, PALETTE[1]),
             ("churned_mrr", "churn", -1, PALETTE[5])]
    for column, name, sign, colour in parts:
        if column in frame:
            fig.add_trace(go.Bar(x=frame[x], y=sign * frame[column].astype(float), name=name, marker_color=colour))
    if "net_new_mrr" in frame or {"new_mrr", "churned_mrr"} <= set(frame.columns):
        net = frame["net_new_mrr"] if "net_new_mrr" in frame else sum(
            sign * frame[c] for c, _, sign, _ in parts if c in frame)
        fig.add_trace(go.Scatter(x=frame[x], y=net, name="net new MRR", mode="lines+markers", line={"color": "#1f2933"}))
    fig.update_layout(title=title, barmode="relative", hovermode="x unified")
    _money_axis(fig, currency)
    return fig


def donut(frame: pd.DataFrame, label: str, value: str, title: str) -> go.Figure:
    register_plotly_template()
    fig = go.Figure(go.Pie(labels=frame[label].astype(str), values=frame[value], hole=0.55, sort=True,
                           textinfo="label+percent", textposition="outside"))
    fig.update_layout(title=title, showlegend=False)
    return fig


def forecast(history: pd.DataFrame, prediction: pd.DataFrame, title: str, currency: str = "USD",
             date: str = "ds", value: str = "y", yhat: str = "yhat", lower: str = "yhat_lower",
             upper: str = "yhat_upper") -> go.Figure:
    """History, the forecast and its prediction interval as a band."""
    register_plotly_template()
    fig = go.Figure([
        go.Scatter(x=history[date], y=history[value], name="actual", mode="lines", line={"color": PALETTE[0]}),
        go.Scatter(x=prediction[date], y=prediction[upper], mode="lines", line={"width": 0}, showlegend=False,
                   hoverinfo="skip"),
        go.Scatter(x=prediction[date], y=prediction[lower], mode="lines", line={"width": 0}, fill="tonexty",
                   fillcolor="rgba(230,159,0,0.2)", name="prediction interval"),
        go.Scatter(x=prediction[date], y=prediction[yhat], name="forecast", mode="lines",
                   line={"color": PALETTE[1], "dash": "dash"}),
    ])
    fig.update_layout(title=title, hovermode="x unified")
    _money_axis(fig, currency)
    return fig
