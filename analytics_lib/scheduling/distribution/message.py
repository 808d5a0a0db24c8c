"""The e-mails: a report's summary message and a failure notice.

A report message reads in any mail client with scripts and remote images off: inline styles, a
table layout, no scripts, no external resources. It carries the headline KPIs and the top
insights from the run's ``summary.json`` (formatted by :mod:`analytics_lib.reporting.format`,
the same definitions as the report), the first sentences of the executive summary, the PDF
attached and the HTML attached or linked. When attachments would make the message larger than
the audience's limit, the largest are left out and linked instead, down to a link-only message,
and the message says so. Text taken from a report is passed through
:func:`~analytics_lib.scheduling.distribution.base.redact`; the only addresses in a message are
the audience's recipients from audiences.yaml.
"""

from __future__ import annotations

import html
import mimetypes
import socket
from collections.abc import Sequence
from datetime import date
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from analytics_lib.reporting import format as fmt
from analytics_lib.scheduling.distribution.base import FailureNotice, ReportDelivery, redact

#: (kpi key in summary.json, label, key of its change vs the previous period or None)
HEADLINE_KPIS: tuple[tuple[str, str, str | None], ...] = (
    ("gross_revenue", "Gross revenue", "revenue_growth_vs_previous"),
    ("net_revenue", "Net revenue", None),
    ("mrr", "Monthly recurring revenue", None),
    ("transactions", "Transactions", None),
    ("success_rate", "Payment success rate", None),
    ("customers", "Paying customers", None),
    ("new_customers", "New customers", None),
    ("refund_rate", "Refund rate", None),
    ("chargeback_rate", "Chargeback rate", None),
)
TOP_INSIGHTS = 3
SUMMARY_SENTENCES = 3
ATTACHABLE = ("pdf", "html")
FONT = "font-family:Arial,Helvetica,sans-serif"
MUTED = "color:#5f6b7a"


def format_kpi(key: str, value: Any, currency: str) -> str:
    """A KPI as the report shows it: money in the reporting currency, rates as percentages."""
    kind = fmt.kind_of(key)
    if kind == "money":
        return fmt.money(value, currency)
    if kind == "percent":
        return fmt.percent(value)
    if kind == "count":
        return fmt.count(value)
    return fmt.number(value)


def headline_kpis(summary: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    """(key, label, formatted value, formatted change or None) for the KPIs the summary has."""
    kpis = summary.get("kpis") or {}
    currency = str(summary.get("currency") or "USD")
    out = []
    for key, label, change_key in HEADLINE_KPIS:
        if kpis.get(key) is None:
            continue
        change = kpis.get(change_key) if change_key else None
        out.append((key, label, format_kpi(key, kpis[key], currency),
                    None if change is None else fmt.change(change)))
    return out


def period_text(summary: dict[str, Any]) -> str:
    period = summary.get("period") or {}
    label = str(period.get("label") or "")
    try:
        start, end = date.fromisoformat(period["start"]), date.fromisoformat(period["end"])
    except (KeyError, TypeError, ValueError):
        return label
    days = f"{start:%-d %b %Y}" if start == end else (
        f"{start:%-d %b} – {end:%-d %b %Y}" if start.year == end.year else f"{start:%-d %b %Y} – {end:%-d %b %Y}")
    return days if label in ("", start.isoformat()) else f"{label} ({days})"


def subject(delivery: ReportDelivery, prefix: str) -> str:
    when = period_text(delivery.summary) or delivery.record.period_label
    return " ".join(p for p in (prefix.strip(), f"{delivery.title} — {when}") if p)


def _size(n: int) -> str:
    return f"{n / 1_048_576:.1f} MB" if n >= 1_048_576 else f"{max(1, round(n / 1024))} KB"


def _insights(summary: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in (summary.get("insights") or []) if isinstance(i, dict)][:TOP_INSIGHTS]


def _esc(text: Any) -> str:
    return html.escape(redact(text))


def _html_body(delivery: ReportDelivery, attached: Sequence[str], omitted: Sequence[str], limit: int,
               sizes: dict[str, int]) -> str:
    s = delivery.summary
    currency = str(s.get("currency") or "USD")
    tz = (s.get("period") or {}).get("timezone")
    rows = []
    for key, label, value, change in headline_kpis(s):
        change_html = (f' <span style="{MUTED};font-size:13px">({html.escape(change)} vs previous period)</span>'
                       if change else "")
        rows.append(f'<tr data-kpi="{key}"><td style="padding:6px 12px 6px 0;border-bottom:1px solid #e5e7eb;'
                    f'{MUTED}">{html.escape(label)}</td><td style="padding:6px 0;border-bottom:1px solid #e5e7eb;'
                    f'font-weight:bold;text-align:right;white-space:nowrap" class="kpi-value">{html.escape(value)}</td>'
                    f'<td style="padding:6px 0 6px 8px;border-bottom:1px solid #e5e7eb">{change_html}</td></tr>')
    kpi_table = (f'<table role="presentation" cellpadding="0" cellspacing="0" style="border-collapse:collapse;'
                 f'width:100%;font-size:15px">{"".join(rows)}</table>') if rows else \
        f'<p style="{MUTED}">This report has no headline figures.</p>'
    sentences = [x for x in (s.get("summary") or []) if isinstance(x, str)][:SUMMARY_SENTENCES]
    summary_html = "".join(f'<li style="margin:0 0 6px">{_esc(x)}</li>' for x in sentences)
    insight_html = []
    for ins in _insights(s):
        impact = str(ins.get("business_impact") or "").lower()
        colour = {"high": "#b42318", "medium": "#b54708"}.get(impact, "#475467")
        estimated = ins.get("estimated_revenue")
        estimate = (f'<div style="font-size:13px;margin-top:4px">Estimated value: about '
                    f'<strong>{html.escape(fmt.money(estimated, currency))}</strong> a month</div>') if estimated else ""
        actions = [a for a in (ins.get("recommended_actions") or []) if isinstance(a, str)][:2]
        actions_html = ("<div style=\"font-size:13px;margin-top:4px\">Recommended: "
                        + "; ".join(_esc(a) for a in actions) + "</div>") if actions else ""
        badge = (f'<span style="font-size:11px;font-weight:bold;color:{colour};text-transform:uppercase">'
                 f'{html.escape(impact)} impact</span><br>') if impact else ""
        insight_html.append(f'<div style="margin:0 0 14px;padding:10px 12px;border-left:3px solid {colour};'
                            f'background:#f8fafc">{badge}<strong>{_esc(ins.get("title", ""))}</strong>'
                            f'<div style="font-size:14px;margin-top:4px">{_esc(ins.get("text", ""))}</div>'
                            f'{estimate}{actions_html}</div>')
    names = {"pdf": "PDF", "html": "HTML"}
    files = []
    if attached:
        files.append("Attached: " + " and ".join(f"the {names[k]} report ({_size(sizes[k])})" for k in attached) + ".")
    for kind in omitted:
        link = delivery.link(kind)
        files.append(f'The {names[kind]} report ({_size(sizes[kind])}) is too large to attach (limit '
                     f'{_size(limit)} per message): <a href="{html.escape(link or "")}">open the {names[kind]} report</a>.')
    html_link = delivery.link("html")
    if "html" in attached and html_link and html_link.startswith("http"):
        files.append(f'Online: <a href="{html.escape(html_link)}">open the report</a>.')
    portal = delivery.portal_link
    portal_html = (f' Earlier reports: <a href="{html.escape(portal)}">the report portal</a>.'
                   if portal.startswith("http") else "")
    meta = " · ".join(p for p in (period_text(s), tz, f"figures in {currency}") if p)
    sections = [
        f'<div style="font-size:12px;{MUTED};text-transform:uppercase;letter-spacing:.05em">Payment analytics</div>',
        f'<h1 style="font-size:22px;margin:4px 0 2px">{_esc(delivery.title)}</h1>',
        f'<div style="font-size:14px;{MUTED};margin-bottom:16px">{html.escape(meta)}</div>',
        '<h2 style="font-size:16px;margin:16px 0 6px">Headline figures</h2>', kpi_table,
    ]
    if summary_html:
        sections += ['<h2 style="font-size:16px;margin:20px 0 6px">In brief</h2>',
                     f'<ul style="padding-left:18px;margin:0;font-size:14px">{summary_html}</ul>']
    if insight_html:
        sections += ['<h2 style="font-size:16px;margin:20px 0 8px">Top insights</h2>', *insight_html]
    sections += [f'<p style="font-size:14px;margin:18px 0 0">{"<br>".join(files)}{portal_html}</p>',
                 f'<p style="font-size:12px;{MUTED};margin:20px 0 0">Sent by the payment analytics scheduler '
                 f'(job {html.escape(delivery.job)}, run {html.escape(delivery.record.run_id)}) to '
                 f'{html.escape(delivery.audience)}.</p>']
    return ('<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" '
            'content="width=device-width"></head>'
            f'<body style="margin:0;padding:0;background:#f3f4f6">'
            '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background:#f3f4f6">'
            '<tr><td align="center" style="padding:16px">'
            f'<table role="presentation" cellpadding="0" cellspacing="0" style="max-width:640px;width:100%;'
            f'background:#ffffff;{FONT};color:#1f2933"><tr><td style="padding:24px">'
            + "".join(sections) + "</td></tr></table></td></tr></table></body></html>")


def _text_body(delivery: ReportDelivery, attached: Sequence[str], omitted: Sequence[str], limit: int,
               sizes: dict[str, int]) -> str:
    s = delivery.summary
    lines = [delivery.title, period_text(s), ""]
    for _key, label, value, change in headline_kpis(s):
        lines.append(f"  {label:<28} {value:>14}" + (f"  ({change} vs previous period)" if change else ""))
    sentences = [x for x in (s.get("summary") or []) if isinstance(x, str)][:SUMMARY_SENTENCES]
    if sentences:
        lines += ["", "In brief:"] + [f"- {redact(x)}" for x in sentences]
    insights = _insights(s)
    if insights:
        lines += ["", "Top insights:"]
        for ins in insights:
            lines.append(f"- {redact(ins.get('title', ''))} [{ins.get('business_impact', '')} impact]")
            lines.append(f"  {redact(ins.get('text', ''))}")
    lines.append("")
    if attached:
        lines.append("Attached: " + ", ".join(k.upper() for k in attached) + " report.")
    for kind in omitted:
        lines.append(f"The {kind.upper()} report ({_size(sizes[kind])}) is too large to attach (limit {_size(limit)}): "
                     f"{delivery.link(kind)}")
    lines += ["", f"Sent by the payment analytics scheduler (job {delivery.job}, run {delivery.record.run_id})."]
    return "\n".join(lines) + "\n"


def _headers(msg: EmailMessage, sender: str, to: Sequence[str], cc: Sequence[str], subject_text: str) -> None:
    msg["Subject"] = subject_text
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Date"] = formatdate(localtime=True)
    domain = sender.rpartition("@")[2] or socket.getfqdn()
    msg["Message-ID"] = make_msgid(domain=domain)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    msg["X-Auto-Response-Suppress"] = "All"


def report_message(delivery: ReportDelivery, *, sender: str, to: Sequence[str], cc: Sequence[str] = (),
                   attach: Sequence[str] = ATTACHABLE, max_bytes: int = 10 * 1_048_576,
                   prefix: str = "[Payment analytics]") -> tuple[EmailMessage, dict[str, Any]]:
    """The report message and what it carries (``attached``, ``linked``, ``bytes``)."""
    files = {k: p for k in attach if (p := delivery.artefact(k)) is not None}
    sizes = {k: p.stat().st_size for k, p in files.items()}
    wanted = [k for k in attach if k in files]
    # try everything, then drop the largest attachment until the message fits (or nothing is left)
    candidates = [wanted]
    remaining = list(wanted)
    while remaining:
        remaining.remove(max(remaining, key=lambda k: sizes[k]))
        candidates.append(list(remaining))
    for chosen in candidates:
        omitted = [k for k in wanted if k not in chosen]
        msg = EmailMessage()
        _headers(msg, sender, to, cc, subject(delivery, prefix))
        msg["X-Payment-Analytics-Job"] = delivery.job
        msg["X-Payment-Analytics-Run"] = delivery.record.run_id
        msg.set_content(_text_body(delivery, chosen, omitted, max_bytes, sizes))
        msg.add_alternative(_html_body(delivery, chosen, omitted, max_bytes, sizes), subtype="html")
        for kind in chosen:
            path = files[kind]
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            maintype, subtype = ctype.split("/", 1)
            msg.add_attachment(path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name)
        size = len(msg.as_bytes())
        if size <= max_bytes or not chosen:
            return msg, {"attached": chosen, "linked": omitted, "bytes": size,
                         "fallback": "link-only" if wanted and not chosen else ("partial" if omitted else None)}
    raise AssertionError("unreachable")  # pragma: no cover - the last candidate attaches nothing


def failure_message(notice: FailureNotice, *, sender: str, to: Sequence[str], cc: Sequence[str] = (),
                    prefix: str = "[Payment analytics]") -> EmailMessage:
    word = {"delivery_failed": "NOT DELIVERED", "interrupted": "INTERRUPTED"}.get(notice.status, "FAILED")
    msg = EmailMessage()
    _headers(msg, sender, to, cc, f"{prefix} {word}: {notice.job} ({notice.fire_local})".strip())
    msg["X-Payment-Analytics-Job"] = notice.job
    msg["X-Priority"] = "1"
    lines = notice.lines()
    msg.set_content("\n".join(lines) + "\n")
    body = "".join(f"<div>{html.escape(line) or '&nbsp;'}</div>" for line in lines)
    msg.add_alternative(f'<!DOCTYPE html><html><body style="{FONT};font-size:14px;color:#1f2933">'
                        f'<div style="font-weight:bold;color:#b42318;margin-bottom:8px">{html.escape(word)}</div>'
                        f'<div style="font-family:Menlo,Consolas,monospace;font-size:13px">{body}</div>'
                        "</body></html>", subtype="html")
    return msg
