"""Exports of what a dashboard shows: CSV, Excel and JSON through the report exporters
(``analytics_lib.reporting.exports``), and a PDF of the current view.

The PDF is a page of its own, not a screenshot: the view's KPI cards, its charts (drawn by
plotly.js inlined in the page) and its tables, in the report stylesheet, printed by Debian's
chromium through :func:`analytics_lib.reporting.pdf.render_pdf` (which checks every chart was
drawn). It runs on a worker thread: playwright's sync API refuses a thread with a running
event loop, such as a kernel's main thread.
"""

from __future__ import annotations

import base64
import html
import tempfile
from datetime import datetime
from pathlib import Path

from analytics_lib.dashboards import charts
from analytics_lib.dashboards.catalogue import EXPORT_FORMATS
from analytics_lib.dashboards.data import View
from analytics_lib.reporting import blocks
from analytics_lib.reporting.exports import EXPORTERS, Download, ReportData, safe_name
from analytics_lib.reporting.theme import plotly_js, stylesheet

#: a download link carries its file in the page: refuse anything bigger
MAX_DOWNLOAD_BYTES = 25 * 1024 * 1024
PDF_MEDIA_TYPE = "application/pdf"


class ExportRefused(ValueError):
    """An export the viewer may not have, or cannot have (short message for the screen)."""


def report_data(view: View, role: str | None) -> ReportData:
    """The view's data as a :class:`ReportData`: the headline numbers and one section with the
    tables behind the widgets the role sees."""
    meta = {**view.meta, "dashboard": view.dashboard, "role": role or "workspace"}
    return ReportData(f"{view.title} dashboard", dict(view.summary),
                      {view.dashboard: {"summary": {}, "tables": dict(view.data)}}, meta)


def basename(view: View, when: datetime) -> str:
    return safe_name(f"{view.dashboard}-{when:%Y%m%d-%H%M%S}")


def export(view: View, fmt: str, allowed: tuple[str, ...], role: str | None) -> Download:
    """The export of ``view`` as ``fmt``, if the role may have it."""
    if fmt not in EXPORT_FORMATS or fmt not in allowed:
        raise ExportRefused(f"export as {str(fmt)[:20]!r} is not available to this role")
    name = basename(view, view.meta.get("generated_at") or datetime.now())
    data = report_data(view, role)
    download = pdf(view, name) if fmt == "pdf" else EXPORTERS[fmt].download(data, name)
    if len(download.content) > MAX_DOWNLOAD_BYTES:
        raise ExportRefused(f"the {fmt} export is larger than {MAX_DOWNLOAD_BYTES // 2**20} MB; narrow the filters")
    return download


def page_html(view: View) -> str:
    """The view as one self-contained HTML page (report stylesheet, inline plotly.js)."""
    meta = view.meta
    filters = meta.get("filters", {})
    parts = [f'<header class="pa-header"><h1>{html.escape(view.title)} dashboard</h1>'
             f'<div class="pa-sub">{html.escape(_describe(filters, view.currency))}</div>'
             f'<div class="pa-meta">generated {html.escape(str(meta.get("generated_at", ""))[:19])} UTC'
             f' · time zone {html.escape(str(meta.get("timezone", "")))}</div></header>']
    for i, (_, panel) in enumerate(view.panels.items()):
        parts.append(f'<h2 class="pa-section">{html.escape(panel.title)}</h2>')
        if panel.kpis:
            parts.append('<div class="pa-kpis">' + "".join(k.html(view.currency) for _, k in panel.kpis) + "</div>")
        if panel.figure is not None:
            parts.append(charts.figure_html(panel.figure, f"pa-chart-{i}"))
        if panel.table is not None and (panel.figure is None or panel.table_below):
            parts.append(blocks.table_html(panel.table, currency=view.currency, max_rows=40))
        if panel.note:
            parts.append(f'<p class="pa-table-note">{html.escape(panel.note)}</p>')
    body = "\n".join(parts)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(view.title)}</title>'
            f"<style>{stylesheet()}</style><script>{plotly_js()}</script></head>"
            f'<body class="jp-Notebook"><main>{body}</main></body></html>')


def _describe(filters: dict, currency: str) -> str:
    if not filters:
        return f"amounts in {currency}"
    window = (f"last {filters.get('hours')} hours" if "hours" in filters and filters.get("start") is None
              else f"{filters.get('start')} to {filters.get('end')}")
    return (f"{window} · currency {filters.get('currency', 'all')} · country {filters.get('country', 'all')}"
            f" · method {filters.get('payment_method', 'all')} · amounts in {currency}")


def pdf(view: View, name: str) -> Download:
    """A PDF of the current view, printed by chromium (charts checked to be drawn)."""
    from analytics_lib.reporting.pdf import render_pdf

    with tempfile.TemporaryDirectory(prefix="pa-dash-pdf-") as tmp:
        page = Path(tmp) / "view.html"
        page.write_text(page_html(view), encoding="utf-8")
        target = Path(tmp) / "view.pdf"
        render_pdf(page, target, timeout_s=90)
        return Download(f"{name}.pdf", PDF_MEDIA_TYPE, target.read_bytes())


def download_link(download: Download) -> str:
    """An anchor that saves the file from the page itself (no request back to the server)."""
    media = download.media_type.split(";")[0].strip() or "application/octet-stream"
    payload = base64.b64encode(download.content).decode("ascii")
    size = len(download.content)
    size_text = f"{size / 1024:.0f} KB" if size >= 1024 else f"{size} bytes"
    name = html.escape(download.filename, quote=True)
    return (f'<a class="pa-download" download="{name}" href="data:{media};base64,{payload}">'
            f"Download {name}</a> <span class=\"pa-note\">({size_text})</span>")
