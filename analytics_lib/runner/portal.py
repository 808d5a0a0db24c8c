"""``outputs/index.html``: the report portal. One static page, readable from the file system with
no server and no network: the latest good run of every report with its files, then each report's
history with status, duration and error."""

from __future__ import annotations

import html
import os
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from analytics_lib.reporting.theme import stylesheet
from analytics_lib.runner.runs import RunRecord, all_runs, latest

HISTORY_ROWS = 30


def _link(outputs: Path, record: RunRecord, name: str, label: str) -> str:
    rel = os.path.relpath(record.path / name, outputs)
    return f'<a href="{html.escape(rel)}">{html.escape(label)}</a>'


def _files(outputs: Path, record: RunRecord) -> str:
    links = []
    for fmt in ("html", "pdf", "xlsx", "json", "csv", "ipynb"):
        names = record.artefacts.get(fmt)
        if not names:
            continue
        first = names.split(",")[0]
        links.append(_link(outputs, record, first, fmt.upper() if fmt != "ipynb" else "notebook"))
    return " · ".join(links)


def _when(text: str | None) -> str:
    if not text:
        return "–"
    try:
        return datetime.fromisoformat(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return text


def render_portal(outputs: Path) -> str:
    runs = all_runs(outputs)
    by_report: dict[str, list[RunRecord]] = defaultdict(list)
    for r in runs:
        by_report[r.report].append(r)
    cards, histories = [], []
    for report in sorted(by_report):
        good = latest(outputs, report)
        last = by_report[report][0]
        status = last.status
        tone = {"succeeded": "good", "failed": "bad"}.get(status, "info")
        headline = ""
        if good is not None:
            summary = good.summary() or {}
            title = summary.get("title") or report
            first = (summary.get("summary") or [""])[0]
            headline = (f'<div class="pa-label">{html.escape(report.replace("_", " "))}</div>'
                        f'<div class="pa-value" style="font-size:18px">{_link(outputs, good, good.artefacts.get("html", ""), title)}</div>'
                        f'<div class="pa-note">{html.escape(good.period_label)} · {_when(good.finished_at)}</div>'
                        f'<p style="font-size:13px">{html.escape(first)}</p><div>{_files(outputs, good)}</div>')
        else:
            headline = (f'<div class="pa-label">{html.escape(report.replace("_", " "))}</div>'
                        f'<div class="pa-value" style="font-size:18px">no good run yet</div>')
        if status != "succeeded":
            headline += (f'<div class="pa-callout {tone}" style="font-size:12px">last run {html.escape(status)}'
                         f'{": " + html.escape(last.error or "") if last.error else ""}</div>')
        cards.append(f'<div class="pa-kpi">{headline}</div>')
        rows = []
        for r in by_report[report][:HISTORY_ROWS]:
            rows.append(
                f"<tr><td>{html.escape(r.run_id)}</td><td>{html.escape(r.period_label)}</td>"
                f"<td>{_when(r.started_at)}</td><td class=\"num\">{'' if r.duration_s is None else f'{r.duration_s:,.1f} s'}</td>"
                f"<td>{html.escape(r.status)}{' (rerun of ' + html.escape(r.rerun_of) + ')' if r.rerun_of else ''}</td>"
                f"<td>{_files(outputs, r) if r.status == 'succeeded' else html.escape(r.error or '')}</td></tr>")
        histories.append(
            f'<h2 class="pa-section" id="{html.escape(report)}">{html.escape(report.replace("_", " ").capitalize())}</h2>'
            '<table class="pa-table"><thead><tr><th>Run</th><th>Period</th><th>Started</th><th class="num">Duration</th>'
            f'<th>Status</th><th>Files or error</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    body = ('<div class="pa-kpis" style="grid-template-columns:repeat(auto-fill,minmax(300px,1fr))">' + "".join(cards) + "</div>"
            if cards else '<p class="pa-lead">No report has run yet: try <code>payment-analytics run daily_operations</code>.</p>')
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Payment analytics reports</title><style>{stylesheet()}</style></head>"
        '<body class="jp-Notebook"><main><header class="pa-header"><h1>Payment analytics reports</h1>'
        f'<div class="pa-sub">Latest good run of every report, then each report\'s history</div>'
        f'<div class="pa-meta">updated {generated} · {len(runs)} runs</div></header>'
        f'{body}{"".join(histories)}</main></body></html>')


def write_portal(outputs: Path) -> Path:
    outputs.mkdir(parents=True, exist_ok=True)
    target = outputs / "index.html"
    tmp = outputs / f".index.html.{os.getpid()}.part"
    tmp.write_text(render_portal(outputs), encoding="utf-8")
    os.replace(tmp, target)
    return target
