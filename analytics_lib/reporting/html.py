"""Executed notebook -> one self-contained HTML file: no code, no prompts, no stderr, plotly.js
inlined once, nothing loaded from the network, and a table of contents from the report's sections."""

from __future__ import annotations

import html
import re
from pathlib import Path

import nbformat

from analytics_lib.reporting.theme import TEMPLATE_DIR, plotly_js, stylesheet

SECTION = re.compile(r'<h2 class="pa-section" id="([^"]+)">(.*?)</h2>', re.S)
#: anything that would make the browser fetch from the network
EXTERNAL = re.compile(r'''(?:src|href)\s*=\s*["'](?:https?:)?//''', re.I)


class RenderError(RuntimeError):
    """A report could not be rendered."""


def _clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop what readers must not see: cells for notebook users only (tag ``notebook-only``),
    stderr streams, errors, the parameters cells' outputs."""
    nb.cells = [c for c in nb.cells if "notebook-only" not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = set(cell.metadata.get("tags", []))
        if tags & {"parameters", "injected-parameters", "remove-output", "hide"}:
            cell.outputs = []
            continue
        cell.outputs = [o for o in cell.get("outputs", [])
                        if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
                        and o.get("output_type") != "error"]
    return nb


def render_html(notebook: Path | nbformat.NotebookNode, title: str | None = None) -> str:
    """The report page for an executed notebook."""
    nb = nbformat.read(str(notebook), as_version=4) if isinstance(notebook, (str, Path)) else notebook
    nb = _clean(nb)
    if title:
        nb.metadata["title"] = title
    exporter = _exporter()
    body, _ = exporter.from_notebook_node(nb, resources={"pa_css": stylesheet(), "pa_plotly_js": plotly_js()})
    body = add_table_of_contents(body)
    return body


def _exporter():  # type: ignore[no-untyped-def]
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="report", extra_template_basedirs=[str(TEMPLATE_DIR)],
                        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True,
                        embed_images=True)


def warm_up() -> None:
    """Load what rendering needs (nbconvert, the report template, plotly.js) ahead of time: the
    runner calls it in a thread while the notebook executes, so writing the HTML afterwards does
    not start with half a second of imports."""
    _ = _exporter().template
    plotly_js()
    stylesheet()


def add_table_of_contents(page: str) -> str:
    sections = SECTION.findall(page)
    if len(sections) < 2:
        return page
    links = "".join(f'<a href="#{anchor}">{title}</a>' for anchor, title in sections)
    toc = f'<nav class="pa-toc" aria-label="Contents"><strong>Contents</strong>{links}</nav>'
    marker = "</header>"
    at = page.find(marker)
    if at < 0:
        main = page.find("<main>")
        at, marker = (main, "<main>") if main >= 0 else (-1, "")
    if at < 0:
        return page
    cut = at + len(marker)
    return page[:cut] + toc + page[cut:]


def external_references(page: str) -> list[str]:
    """src/href attributes that point at the network (a rendered report must have none)."""
    markup = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", "", page, flags=re.S | re.I)
    return [html.unescape(m.group(0)) for m in EXTERNAL.finditer(markup)]


def write_html(notebook: Path, target: Path, title: str | None = None) -> Path:
    page = render_html(notebook, title)
    target.write_text(page, encoding="utf-8")
    return target
