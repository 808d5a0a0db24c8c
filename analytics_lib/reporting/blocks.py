"""What a report notebook shows: a header, an executive summary, KPI cards, sections, charts,
tables and insights, each displayed as self-contained HTML (no code, no widgets).

Charts are displayed with two representations: plotly's own mime type (JupyterLab draws it) and
an HTML fragment that calls the page's inline plotly.js (nbconvert keeps that one; the report
template inlines plotly.js once, so a rendered report needs no network)."""

from __future__ import annotations

import html
import itertools
import json
import logging
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from IPython.display import HTML, display

from analytics_lib.reporting import format as fmt
from analytics_lib.reporting.theme import CHART_HEIGHT, register_plotly_template

PLOTLY_MIME = "application/vnd.plotly.v1+json"
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True,
                 "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"]}
_chart_ids = itertools.count(1)


def setup() -> None:
    """Quiet, consistent output for readers: no warnings or library log noise, the report theme."""
    warnings.filterwarnings("ignore")
    for name in ("prophet", "cmdstanpy", "py4j", "numexpr", "matplotlib"):
        logging.getLogger(name).setLevel(logging.ERROR)
    register_plotly_template()
    pd.set_option("display.max_columns", 50)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"


def _show(markup: str) -> None:
    display(HTML(markup))


def header(title: str, subtitle: str = "", meta: Mapping[str, Any] | None = None) -> None:
    """The report's title block; ``meta`` (period, currency, filters, generated at) reads as one line."""
    parts = []
    for key, value in (meta or {}).items():
        if value in (None, "", {}, []):
            continue
        if isinstance(value, Mapping):
            value = "; ".join(f"{k} = {', '.join(map(str, v)) if isinstance(v, (list, tuple)) else v}" for k, v in value.items())
        parts.append(f"<span>{html.escape(str(key))}: {html.escape(str(value))}</span>")
    _show(f'<header class="pa-header"><h1>{html.escape(title)}</h1>'
          f'<div class="pa-sub">{html.escape(subtitle)}</div>'
          f'<div class="pa-meta">{" · ".join(parts)}</div></header>')


def section(title: str, lead: str = "") -> None:
    """A numbered part of the report (it appears in the table of contents)."""
    lead_html = f'<p class="pa-lead">{html.escape(lead)}</p>' if lead else ""
    _show(f'<h2 class="pa-section" id="{slug(title)}">{html.escape(title)}</h2>{lead_html}')


def summary(sentences: Sequence[str], title: str = "Executive summary") -> None:
    items = "".join(f"<li>{html.escape(s)}</li>" for s in sentences if s)
    if not items:
        items = "<li>No data for this period.</li>"
    _show(f'<h2 class="pa-section" id="{slug(title)}">{html.escape(title)}</h2><div class="pa-summary"><ul>{items}</ul></div>')


def callout(text: str, level: str = "info") -> None:
    level = level if level in ("info", "good", "bad", "warning") else "info"
    _show(f'<div class="pa-callout {level}">{html.escape(text)}</div>')


def note(text: str) -> None:
    _show(f'<p class="pa-lead">{html.escape(text)}</p>')


# -- KPI cards ---------------------------------------------------------------------------------


@dataclass
class KPI:
    """One headline number, optionally with its change against a comparison period.

    ``good`` says which direction is good news ("up", "down" or None for neutral) so the arrow is
    coloured for the reader, not for the sign."""

    label: str
    value: Any
    kind: str = "number"
    change: float | None = None
    change_kind: str = "relative"  # relative (%) or points (pp, for rates)
    good: str | None = "up"
    note: str = ""
    significance: str | None = None

    def html(self, currency: str) -> str:
        value_text = fmt.value(self.value, self.kind, currency, compact=self.kind == "money")
        change_html = ""
        if self.change is not None and fmt._missing(self.change) is False:
            ch = float(self.change)
            arrow = "▲" if ch > 0 else ("▼" if ch < 0 else "▶")
            tone = "flat"
            if ch != 0 and self.good in ("up", "down") and self.significance != "low":
                tone = "good" if (ch > 0) == (self.good == "up") else "bad"
            text = fmt.points(ch) if self.change_kind == "points" else fmt.change(ch)
            sig = f" · {self.significance} significance" if self.significance else ""
            change_html = f'<div class="pa-change {tone}">{arrow} {html.escape(text)}{html.escape(sig)}</div>'
        note_html = f'<div class="pa-note">{html.escape(self.note)}</div>' if self.note else ""
        return (f'<div class="pa-kpi"><div class="pa-label">{html.escape(self.label)}</div>'
                f'<div class="pa-value">{html.escape(value_text)}</div>{change_html}{note_html}</div>')


def kpis(cards: Iterable[KPI], currency: str = "USD") -> None:
    _show('<div class="pa-kpis">' + "".join(c.html(currency) for c in cards) + "</div>")


#: which way is good news for a trend metric (anything not listed is neutral)
GOOD_DIRECTION = {
    "gross_revenue": "up", "net_revenue": "up", "total_volume": "up", "mrr": "up", "transactions": "up",
    "total_transactions": "up", "success_rate": "up", "authorization_rate": "up", "new_customers": "up",
    "customers": "up", "total_customers": "up", "average_transaction_value": "up", "arpu": "up",
    "failure_rate": "down", "refund_rate": "down", "chargeback_rate": "down", "customer_churn_rate": "down",
    "fees": "down", "review_share": "down", "block_share": "down", "decline_rate": "down",
}


def kpis_from_trends(trends: Sequence[Any], names: Sequence[str] | None = None, currency: str = "USD",
                     labels: Mapping[str, str] | None = None) -> list[KPI]:
    """KPI cards from :class:`analytics_lib.metrics.Trend` objects (current vs previous, with the
    test's significance)."""
    by_name = {t.metric: t for t in trends}
    chosen = [by_name[n] for n in (names or list(by_name)) if n in by_name]
    cards = []
    for t in chosen:
        kind = fmt.kind_of(t.metric)
        is_rate = kind == "percent"
        cards.append(KPI((labels or {}).get(t.metric, t.metric.replace("_", " ").capitalize()), t.current_value, kind,
                         change=t.change if is_rate else t.change_percent,
                         change_kind="points" if is_rate else "relative",
                         good=GOOD_DIRECTION.get(t.metric), significance=t.significance,
                         note=f"previous period {fmt.value(t.previous_value, kind, currency, compact=True)}"))
    return cards


# -- charts ------------------------------------------------------------------------------------


def chart(fig: go.Figure, height: int | None = None) -> None:
    """Show a plotly figure: interactive in JupyterLab and in the rendered HTML, fixed height."""
    register_plotly_template()
    fig.update_layout(height=height or fig.layout.height or CHART_HEIGHT)
    spec = pio.to_json(fig, validate=False, pretty=False, remove_uids=True)
    div_id = f"pa-chart-{next(_chart_ids)}"
    height_px = int(fig.layout.height)
    safe = spec.replace("</", "<\\/")  # data cannot close the script element
    markup = (f'<div class="pa-chart" id="{div_id}" style="height:{height_px}px"></div>'
              f'<script type="text/javascript">(function(){{var s={safe};'
              f'if(window.Plotly){{Plotly.newPlot("{div_id}",s.data,s.layout,{json.dumps(PLOTLY_CONFIG)});}}'
              f'}})();</script>')
    bundle = {PLOTLY_MIME: json.loads(spec) | {"config": PLOTLY_CONFIG}, "text/html": markup}
    display(bundle, raw=True)


# -- tables ------------------------------------------------------------------------------------


def table(frame: pd.DataFrame, kinds: Mapping[str, str] | None = None, currency: str = "USD",
          labels: Mapping[str, str] | None = None, max_rows: int = 25, note: str = "") -> None:
    """A formatted table: money, percentages and counts from column names (override with ``kinds``)."""
    _show(table_html(frame, kinds, currency, labels, max_rows, note))


def table_html(frame: pd.DataFrame, kinds: Mapping[str, str] | None = None, currency: str = "USD",
               labels: Mapping[str, str] | None = None, max_rows: int = 25, note: str = "") -> str:
    if frame is None or frame.empty:
        return '<p class="pa-lead">No rows for this period.</p>'
    shown = frame.head(max_rows)
    columns = list(shown.columns)
    col_kind = {}
    for c in columns:
        kind = (kinds or {}).get(c)
        if kind is None:
            kind = fmt.kind_of(str(c)) if pd.api.types.is_numeric_dtype(shown[c]) and not pd.api.types.is_bool_dtype(shown[c]) else "text"
        col_kind[c] = kind
    head = "".join(
        f'<th class="{"num" if col_kind[c] != "text" else ""}">{html.escape((labels or {}).get(c, str(c).replace("_", " ")))}</th>'
        for c in columns)
    rows = []
    for record in shown.itertuples(index=False, name=None):
        cells = []
        for c, v in zip(columns, record, strict=True):
            kind = col_kind[c]
            if kind == "text":
                text = "–" if v is None or (isinstance(v, float) and pd.isna(v)) else _text(v)
                cells.append(f"<td>{html.escape(text)}</td>")
            else:
                cells.append(f'<td class="num">{html.escape(fmt.value(v, kind, currency))}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if len(frame) > max_rows:
        more = f'<p class="pa-table-note">Showing {max_rows:,} of {len(frame):,} rows; the data exports have all of them.</p>'
    note_html = f'<p class="pa-table-note">{html.escape(note)}</p>' if note else ""
    return (f'<table class="pa-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f"{more}{note_html}")


def _text(value: Any) -> str:
    if isinstance(value, (datetime, pd.Timestamp)):
        if value.hour == 0 and value.minute == 0 and value.second == 0:
            return value.strftime("%Y-%m-%d")
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


# -- insights ----------------------------------------------------------------------------------


def insights(items: Sequence[Any], currency: str = "USD", limit: int = 8,
             empty_text: str = "Nothing in this period's numbers calls for action.") -> None:
    """Insight cards (from :mod:`analytics_lib.insights`), highest impact first."""
    if not items:
        callout(empty_text, "good")
        return
    cards = []
    for item in list(items)[:limit]:
        d = item.to_dict() if hasattr(item, "to_dict") else dict(item)
        actions = "".join(f"<li>{html.escape(str(a))}</li>" for a in d.get("recommended_actions") or [])
        revenue = d.get("estimated_revenue")
        tags = [f"{d.get('category', '').replace('_', ' ')}", f"impact {d.get('business_impact', '–')}"]
        if d.get("confidence") is not None:
            tags.append(f"confidence {fmt.percent(d['confidence'], 0)}")
        if revenue is not None:
            tags.append(f"estimated {fmt.money(revenue, currency, compact=True)} per month")
        cards.append(
            f'<div class="pa-insight impact-{html.escape(str(d.get("business_impact", "low")))}">'
            f'<h4>{html.escape(str(d.get("title", "")))}</h4>'
            f'<div class="pa-tags">{html.escape(" · ".join(t for t in tags if t))}</div>'
            f'<p>{html.escape(str(d.get("text", "")))}</p>'
            + (f"<ul>{actions}</ul>" if actions else "") + "</div>")
    _show("".join(cards))


def footer(text: str) -> None:
    _show(f'<div class="pa-footer">{html.escape(text)}</div>')


def trends_frame(trends: Sequence[Any], currency: str = "USD") -> pd.DataFrame:
    """Trends as a table: current, previous, change, direction, significance and the test used."""
    rows = [{"metric": t.metric.replace("_", " "), "current": t.current_value, "previous": t.previous_value,
             "change": fmt.points(t.change) if fmt.kind_of(t.metric) == "percent" else fmt.change(t.change_percent),
             "direction": t.trend, "significance": t.significance,
             "p_value": None if t.p_value is None else round(float(t.p_value), 4), "test": t.test.replace("_", " ")}
            for t in trends]
    frame = pd.DataFrame(rows)
    if not frame.empty:
        # mixed units in one column: show each value formatted as its metric reads
        for col in ("current", "previous"):
            frame[col] = [fmt.value(v, fmt.kind_of(m.replace(" ", "_")), currency) for v, m in zip(frame[col], frame["metric"], strict=True)]
    return frame
