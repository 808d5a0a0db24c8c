"""HTML report -> PDF with its charts, through Debian's chromium driven by playwright.

The page is laid out at the printable width of an A4 page, every chart is drawn (and checked to
be drawn) before printing, and nothing may be requested from the network."""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analytics_lib.reporting.html import RenderError

#: flags that work on this kind of machine (no GPU, no sandbox for root, no background network)
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
#: A4 (210 mm) minus the 12 mm side margins of the stylesheet, in CSS pixels at 96 dpi
PRINT_WIDTH_PX = 703
CHART_SELECTOR = ".pa-chart"


def chromium_path() -> str:
    """The system chromium (Debian's package); PAYMENT_ANALYTICS_CHROMIUM overrides."""
    for candidate in (os.environ.get("PAYMENT_ANALYTICS_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    raise RenderError("PDF needs chromium: install it with `apt-get install -y chromium` (make system-deps), "
                      "or set PAYMENT_ANALYTICS_CHROMIUM to a Chrome/Chromium binary")


@dataclass
class PageCheck:
    """What a browser saw when it opened a report offline."""

    charts: int = 0
    charts_drawn: int = 0
    external_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


@contextmanager
def browser() -> Iterator[object]:
    """A headless chromium with a fresh profile, closed (and its profile removed) afterwards."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise RenderError("PDF needs the playwright package (pip install playwright)") from exc
    profile = tempfile.mkdtemp(prefix="pa-chromium-")
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                profile, executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS, offline=True)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _open(context: object, html_path: Path, width: int, timeout_s: float) -> tuple[object, PageCheck]:
    check = PageCheck()
    page = context.new_page()  # type: ignore[attr-defined]
    page.set_viewport_size({"width": width, "height": 1100})

    def route(r: object) -> None:
        url = r.request.url  # type: ignore[attr-defined]
        if url.startswith(("file:", "data:", "blob:", "about:")):
            r.continue_()  # type: ignore[attr-defined]
        else:
            check.external_requests.append(url)
            r.abort()  # type: ignore[attr-defined]

    page.route("**/*", route)
    page.on("requestfailed", lambda req: check.failed_requests.append(req.url))
    page.on("console", lambda msg: check.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: check.console_errors.append(str(exc)))
    page.goto(Path(html_path).resolve().as_uri(), wait_until="load", timeout=timeout_s * 1000)
    check.charts = page.locator(CHART_SELECTOR).count()
    if check.charts:
        with suppress(Exception):  # a timeout is reported as charts not drawn below
            page.wait_for_function(
                f"document.querySelectorAll('{CHART_SELECTOR} .main-svg').length > 0 && "
                f"[...document.querySelectorAll('{CHART_SELECTOR}')].every(d => d.querySelector('.main-svg'))",
                timeout=timeout_s * 1000)
    check.charts_drawn = page.locator(f"{CHART_SELECTOR} .main-svg >> nth=0").count() and page.evaluate(
        f"[...document.querySelectorAll('{CHART_SELECTOR}')].filter(d => d.querySelector('.main-svg')).length")
    return page, check


def inspect_page(html_path: Path, screenshot: Path | None = None, width: int = 1280,
                 timeout_s: float = 60) -> PageCheck:
    """Open a report offline and report what happened (requests, errors, charts drawn)."""
    with browser() as context:
        page, check = _open(context, html_path, width, timeout_s)
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        page.close()
    return check


def _print(context: object, html_path: Path, pdf_path: Path, timeout_s: float) -> PageCheck:
    page, check = _open(context, html_path, PRINT_WIDTH_PX, timeout_s)
    if check.charts != check.charts_drawn:
        page.close()  # type: ignore[attr-defined]
        raise RenderError(f"{check.charts - check.charts_drawn} of {check.charts} charts were not drawn in "
                          f"{html_path.name}: {'; '.join(check.console_errors[:3]) or 'no console error'}")
    page.emulate_media(media="print")  # type: ignore[attr-defined]
    page.evaluate("document.querySelectorAll('.pa-chart').forEach(d => window.Plotly && Plotly.Plots.resize(d))")  # type: ignore[attr-defined]
    tmp = pdf_path.with_suffix(".pdf.part")
    page.pdf(path=str(tmp), format="A4", print_background=True, prefer_css_page_size=True,  # type: ignore[attr-defined]
             margin={"top": "14mm", "bottom": "14mm", "left": "12mm", "right": "12mm"},
             display_header_footer=True, header_template="<span></span>",
             footer_template='<div style="font-size:8px;width:100%;text-align:center;color:#616e7c">'
                             '<span class="title"></span> · page <span class="pageNumber"></span> of '
                             '<span class="totalPages"></span></div>')
    page.close()  # type: ignore[attr-defined]
    os.replace(tmp, pdf_path)
    return check


def render_pdf(html_path: Path, pdf_path: Path, timeout_s: float = 120) -> PageCheck:
    """Print the report to an A4 PDF with every chart drawn at the printable width."""
    with browser() as context:
        return _print(context, Path(html_path), Path(pdf_path), timeout_s)


class Printer:
    """A chromium launched ahead of time, so that a run starts the browser while its notebook
    executes and prints the moment the HTML is written (launching took 1-2 s of the PDF's time).

    Playwright's sync API belongs to the thread that started it, so the browser lives in its own
    thread and :meth:`print` hands it the page. A browser that failed to start raises from
    :meth:`print`; :meth:`close` (or leaving the ``with`` block) stops it."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Path, Path, float] | None] = queue.Queue()
        self._results: queue.Queue[tuple[bool, Any]] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="pdf-printer", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            with browser() as context:
                while (job := self._jobs.get()) is not None:
                    try:
                        self._results.put((True, _print(context, *job)))
                    except Exception as exc:  # noqa: BLE001 - handed to the caller of print()
                        self._results.put((False, exc))
        except Exception as exc:  # noqa: BLE001 - the browser did not start (or died): every job gets the error
            while (job := self._jobs.get()) is not None:
                self._results.put((False, exc))

    def print(self, html_path: Path, pdf_path: Path, timeout_s: float = 120) -> PageCheck:
        """Print ``html_path`` to ``pdf_path`` (as :func:`render_pdf`)."""
        if not self._thread.is_alive():
            raise RenderError("the PDF printer is closed")
        self._jobs.put((Path(html_path), Path(pdf_path), timeout_s))
        try:
            ok, value = self._results.get(timeout=timeout_s + 60)  # + the browser's own start
        except queue.Empty:
            raise RenderError(f"the PDF was not printed within {timeout_s:.0f} s") from None
        if not ok:
            raise value
        return value

    def close(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout=30)

    def __enter__(self) -> Printer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
