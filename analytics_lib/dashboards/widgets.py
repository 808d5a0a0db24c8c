"""The dashboard page: filters, status line, one tile per widget id, export controls, and the
clock that keeps it live. Built with ipywidgets; every number comes from
:mod:`analytics_lib.dashboards.data`.

What reaches the browser, and how (DESIGN.md, measured with Voila 0.5):

* KPI cards and tables are ``HTML`` widgets whose value is replaced on refresh;
* charts are ``Output`` widgets whose ``outputs`` are replaced by a plotly mime bundle (no
  ``FigureWidget``: it needs anywidget and ships ~5 MB per viewer), and only when the figure
  changed;
* nothing is captured with ``with output:`` (it can hang a first render with live viewers);
* every value a browser sends (filters, refresh interval, export format, the clock's interval)
  is validated here before use: a browser can set any trait of a widget it is shown.
"""

from __future__ import annotations

import html
import logging
import threading
from dataclasses import replace
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from typing import Any

import ipywidgets as w
from IPython.display import display

from analytics_lib.config import Settings, get_settings
from analytics_lib.dashboards import charts
from analytics_lib.dashboards.catalogue import DashboardSpec
from analytics_lib.dashboards.data import LoadContext, Panel, View, load_view, short_error
from analytics_lib.dashboards.export import ExportRefused, download_link, export
from analytics_lib.dashboards.refresh import MIN_GAP_S, Refresher
from analytics_lib.dashboards.state import (
    FilterError,
    FilterOptions,
    FilterState,
    default_state,
    validate,
)
from analytics_lib.metrics import MetricSession
from analytics_lib.reporting import blocks
from analytics_lib.warehouse import Warehouse
from analytics_lib.warehouse.countries import country_name

log = logging.getLogger(__name__)

#: refresh intervals a viewer may pick (seconds); the dashboard's own default is added
REFRESH_CHOICES = (2, 5, 10, 30, 60, 300, 600)
ALL = "all"
#: widget ids shown as full-width rows above the chart grid (KPI cards) and below it (alert tables)
KPI_TILES = ("kpis", "revenue_overview", "kpi_grid", "net_revenue", "api_kpis")
WIDE_TILES = ("fraud_alerts", "anomalies")
#: seconds after the page's widgets exist before the charts are sent anyway
CHART_RELEASE_FALLBACK_S = 4.0
#: seconds after the page's widgets exist before a preheated kernel's old data is refreshed
VIEW_REFRESH_DELAY_S = 1.0


@cache
def stylesheet() -> str:
    return resources.files("analytics_lib.dashboards").joinpath("dashboard.css").read_text("utf-8")


def _message(text: str, level: str = "bad") -> str:
    return f'<div class="pa-message {level}">{html.escape(text)}</div>'


def kpi_html(panel: Panel, currency: str) -> str:
    cards = "".join(f'<div class="pa-kpi-slot" data-kpi="{html.escape(key)}">{card.html(currency)}</div>'
                    for key, card in panel.kpis)
    return f'<div class="pa-dash"><div class="pa-kpis">{cards}</div></div>'


def table_html(panel: Panel, currency: str) -> str:
    markup = blocks.table_html(panel.table, currency=currency, max_rows=25) if panel.table is not None else ""
    for state in ("ok", "degraded", "failing"):  # provider status: the words come from data.provider_status
        markup = markup.replace(f"<td>{state}</td>", f'<td class="pa-state-{state}">{state}</td>')
    note = f'<p class="pa-note">{html.escape(panel.note)}</p>' if panel.note else ""
    return f'<div class="pa-dash"><div class="pa-table-wrap">{markup}</div>{note}</div>'


class Tile:
    """One widget id on the page: an HTML part (title, KPI cards, table, note) and an ``Output``
    for its chart. Two widgets per tile keep the page's widget count, and so its first render,
    small.

    Charts are held back until the page exists (:meth:`release_charts`): measured here, a page
    whose widget state already holds six plotly figures shows nothing for about 4 s more on a busy
    2-core machine, because the browser draws the charts before the KPI row appears; sent right
    after the page is up, they are drawn while the KPIs are already on screen."""

    def __init__(self, widget_id: str, spec_title: str):
        self.widget_id = widget_id
        self.html = w.HTML(f'<div class="pa-dash pa-panel-title">{html.escape(spec_title)}</div>')
        self.chart = w.Output(layout=w.Layout(display="none", height=f"{charts.TILE_HEIGHT}px"))
        self.chart.add_class("pa-chart-out")
        self.box = w.VBox([self.html, self.chart], layout=w.Layout(padding="0 6px", overflow="hidden"))
        self.box.add_class(f"pa-tile-{widget_id}")
        self._digest: str | None = None
        self._pending: tuple[dict[str, Any], str, int] | None = None
        self.charts_released = False

    def show(self, panel: Panel, currency: str) -> None:
        parts = []
        if panel.figure is None:  # a chart carries its own title
            parts.append(f'<div class="pa-dash pa-panel-title">{html.escape(panel.title)}</div>')
        if panel.kpis:
            parts.append(kpi_html(panel, currency))
        if (panel.figure is None or panel.table_below) and (panel.table is not None or panel.note):
            parts.append(table_html(panel, currency))
        elif panel.note:
            parts.append(f'<div class="pa-dash"><p class="pa-note">{html.escape(panel.note)}</p></div>')
        _set(self.html, "".join(parts))
        if panel.figure is not None:
            output, digest = charts.bundle(panel.figure)
            height = charts.figure_height(panel.figure)
            # the chart's frame is there at once (the page does not jump when the chart arrives)
            self.chart.layout.height = f"{height}px"
            self.chart.layout.display = None
            if digest != self._digest:
                self._pending = (output, digest, height)
                if self.charts_released:
                    self._send()

    def release_charts(self) -> None:
        """Send the chart (and every later change of it) to the browser."""
        self.charts_released = True
        if self._pending is not None:
            self._send()

    def _send(self) -> None:
        output, digest, _ = self._pending  # type: ignore[misc]
        self.chart.outputs = (output,)  # only a changed chart is sent to the browser again
        self._digest, self._pending = digest, None


def _set(widget: w.HTML, value: str) -> None:
    if widget.value != value:
        widget.value = value
    widget.layout.display = None


class Dashboard:
    """One dashboard for one role: build it, ``show()`` it, and it keeps itself fresh.

    Parameters
    ----------
    spec : DashboardSpec
        Which dashboard (:data:`analytics_lib.dashboards.catalogue.DASHBOARDS`).
    widgets : tuple of str
        The widget ids the viewer's role sees (in page order).
    export_formats : tuple of str
        Export formats the role may download (empty: no export controls).
    role : str or None
        The role's name (shown, and written into exports).
    refresh_seconds : float
        Seconds between refreshes while a browser shows the page.
    hours : int
        Live window of the operations dashboard.
    settings : Settings
        Where the warehouse is, the time zone and the reporting currency.
    clock : callable
        "Now" (UTC); tests pass a fixed clock.
    """

    def __init__(self, spec: DashboardSpec, widgets: tuple[str, ...], export_formats: tuple[str, ...] = (),
                 role: str | None = None, refresh_seconds: float | None = None, hours: int = 24,
                 settings: Settings | None = None, clock: Any = None):
        self.spec = spec
        self.widgets = tuple(wid for wid in spec.widgets if wid in widgets)
        self.export_formats = tuple(export_formats)
        self.role = role
        self.settings = settings or get_settings()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.refresh_seconds = float(refresh_seconds or spec.refresh_seconds)
        if not MIN_GAP_S <= self.refresh_seconds <= 24 * 3600:
            raise ValueError(f"refresh_seconds must be between {MIN_GAP_S:g} and 86400")
        self.view: View | None = None
        self.error: str | None = None
        self.updated_at: datetime | None = None
        self._lock = threading.Lock()
        self._reverting = False
        now = self.clock()
        # one Warehouse for the dashboard's life: its snapshots reuse the Delta tables and the
        # DuckDB database, so a refresh pays for the log entries since the last one, not all
        self.warehouse = Warehouse(settings=self.settings)
        with MetricSession.open(self.warehouse, settings=self.settings) as session:
            self.options = FilterOptions.from_session(session, self._today(now))
        self.state: FilterState = default_state(spec.name, self.options, hours)
        self.context = LoadContext(now, self.settings.timezone, self.settings.reporting_currency, self.widgets)
        self._build()
        self.refresher = Refresher(self._refresh, self.refresh_seconds * 0.8)

    # -- building --------------------------------------------------------------------------------
    def _today(self, now: datetime) -> date:
        from zoneinfo import ZoneInfo

        return now.astimezone(ZoneInfo(self.settings.timezone)).date()

    def _build(self) -> None:
        spec, opts = self.spec, self.options
        role = f'<span class="pa-role">{html.escape(self.role)} role</span>' if self.role else ""
        self.header = w.HTML(
            f'<style>{stylesheet()}</style><div class="pa-dash pa-dash-header"><h1>{html.escape(spec.title)}{role}</h1>'
            f'<div class="pa-sub">{html.escape(spec.description)}</div></div>')
        currency_options = [(f"All currencies (in {opts.default_currency})", ALL)] + [(c, c) for c in opts.currencies]
        self.currency = w.Dropdown(options=currency_options, value=ALL, description="Currency",
                                   layout=w.Layout(width="250px"))
        self.country = w.Dropdown(options=[("All countries", ALL)] + [(f"{country_name(c)} ({c})", c) for c in opts.countries],
                                  value=ALL, description="Country", layout=w.Layout(width="260px"))
        self.method = w.Dropdown(options=[("All methods", ALL)] + [(m.replace("_", " "), m) for m in opts.methods],
                                 value=ALL, description="Method", layout=w.Layout(width="220px"))
        controls: list[w.Widget] = []
        if spec.window == "live":
            self.hours = w.Dropdown(options=[(f"last {h} h", h) for h in opts.hours_choices], value=self.state.hours,
                                    description="Window", layout=w.Layout(width="180px"))
            controls.append(self.hours)
            self.start = self.end = None
        else:
            self.hours = None
            self.start = w.DatePicker(value=self.state.start, description="From", layout=w.Layout(width="220px"))
            self.end = w.DatePicker(value=self.state.end, description="To", layout=w.Layout(width="220px"))
            controls += [self.start, self.end]
        controls += [self.currency, self.country, self.method]
        choices = sorted({*REFRESH_CHOICES, int(self.refresh_seconds)})
        self.interval = w.Dropdown(options=[(_every(s), s) for s in choices], value=int(self.refresh_seconds),
                                   description="Refresh", layout=w.Layout(width="200px"))
        self.live = w.ToggleButton(value=True, description="Live", tooltip="Pause or resume refreshing",
                                   layout=w.Layout(width="80px"))
        self.refresh_button = w.Button(description="Refresh now", layout=w.Layout(width="110px"))
        for widget in controls:
            widget.observe(self._on_filter, names="value")
        self.interval.observe(self._on_interval, names="value")
        self.live.observe(self._on_live, names="value")
        self.refresh_button.on_click(lambda _: self.refresher.request(force=True))
        self.filters = w.HBox(controls, layout=w.Layout(flex_flow="row wrap"))
        self.status = w.HTML()
        self.message = w.HTML()
        # the clock: ticks while a browser shows the page (started when a view appears)
        self.clock_widget = w.Play(value=0, min=0, max=2**31 - 1, step=1, interval=int(self.refresh_seconds * 1000),
                                   repeat=True, show_repeat=False, _view_count=0, layout=w.Layout(display="none"))
        self.clock_widget.observe(self._on_tick, names="value")
        self.clock_widget.observe(self._on_views, names="_view_count")
        self.clock_widget.observe(self._on_clock_interval, names="interval")
        self.page_shown = w.Button(description="", layout=w.Layout(display="none"))
        self.page_shown.add_class("pa-page-shown")
        self.page_shown.on_click(lambda _: self.release_charts())
        self._release_timer: threading.Timer | None = None
        toolbar = w.HBox([self.live, self.interval, self.refresh_button, self.clock_widget, self.page_shown],
                         layout=w.Layout(flex_flow="row wrap", align_items="center"))
        self.tiles = {wid: Tile(wid, wid.replace("_", " ").capitalize()) for wid in self.widgets}
        # KPI rows lead, charts share a grid, long tables (alerts) follow at full width
        top = [t.box for wid, t in self.tiles.items() if wid in KPI_TILES]
        grid = [t.box for wid, t in self.tiles.items() if wid not in KPI_TILES and wid not in WIDE_TILES]
        bottom = [t.box for wid, t in self.tiles.items() if wid in WIDE_TILES]
        # three outputs, displayed one after the other: the browser draws each as soon as its own
        # widgets exist, so the KPIs are on screen before plotly has drawn the first chart
        head: list[w.Widget] = [self.header, self.filters, toolbar, self.status, self.message, *top]
        tail: list[w.Widget] = list(bottom)
        if self.export_formats:
            self.export_format = w.Dropdown(options=[(f.upper(), f) for f in self.export_formats],
                                            value=self.export_formats[0], description="Export",
                                            layout=w.Layout(width="180px"))
            self.export_button = w.Button(description="Prepare download", layout=w.Layout(width="150px"))
            self.export_link = w.HTML()
            self.export_button.on_click(lambda _: self.request_export(self.export_format.value))
            tail.append(w.HBox([self.export_format, self.export_button, self.export_link],
                               layout=w.Layout(align_items="center", margin="12px 0 0 0")))
        self.parts = (
            w.VBox(head, layout=w.Layout(width="100%")),
            w.GridBox(grid, layout=w.Layout(grid_template_columns="repeat(auto-fit, minmax(420px, 1fr))",
                                            grid_gap="8px", width="100%")),
            w.VBox(tail, layout=w.Layout(width="100%")),
        )
        self._export_lock = threading.Lock()

    # -- showing ---------------------------------------------------------------------------------
    def show(self) -> None:
        """Load the first data, display the page and start the refresh worker.

        The first load is done here, not on the worker: Voila hands a preheated kernel to a
        viewer as soon as its notebook has run, so the data must be there by then (measured: a
        first load left to the worker thread was still running when the page opened, and the
        KPIs came seconds later). The page refreshes again as soon as someone looks at it."""
        self.refresh()
        for part in self.parts:
            display(part)
        self.refresher.start()

    def refresh(self) -> View | None:
        """One refresh now, on this thread (the first render, tests)."""
        self._refresh()
        return self.view

    # -- events (every value from the browser is checked here) ------------------------------------
    def _raw_filters(self) -> dict[str, Any]:
        return {
            "start": self.start.value if self.start is not None else self.state.start,
            "end": self.end.value if self.end is not None else self.state.end,
            "hours": self.hours.value if self.hours is not None else self.state.hours,
            "currency": self.currency.value, "country": self.country.value, "method": self.method.value,
        }

    def _on_filter(self, change: dict[str, Any]) -> None:
        if self._reverting:
            return
        try:
            state = validate(self._raw_filters(), self.options.with_today(self._today(self.clock())))
        except FilterError as exc:
            self.message.value = _message(f"Filter not applied: {exc}.")
            self._revert()
            return
        self.message.value = ""
        if state != self.state:
            self.state = state
            self.refresher.request(force=True)

    def _revert(self) -> None:
        """Put the widgets back to the state in force."""
        self._reverting = True
        try:
            if self.start is not None and self.end is not None:
                self.start.value, self.end.value = self.state.start, self.state.end
            if self.hours is not None:
                self.hours.value = self.state.hours
            self.currency.value = self.state.currency or ALL
            self.country.value = self.state.country or ALL
            self.method.value = self.state.method or ALL
        finally:
            self._reverting = False

    def _on_interval(self, change: dict[str, Any]) -> None:
        seconds = change["new"]
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds not in {o[1] for o in self.interval.options}:
            self.interval.value = int(self.refresh_seconds)
            return
        self.refresh_seconds = float(seconds)
        self.refresher.min_interval = max(self.refresh_seconds * 0.8, MIN_GAP_S)
        self.clock_widget.interval = int(seconds * 1000)
        if self.clock_widget.playing:
            # the page's next tick was scheduled at the old interval (ipywidgets' Play sets one
            # timeout per tick): pausing clears it, playing again schedules one at the new interval
            self.clock_widget.playing = False
            self.clock_widget.playing = True
        self._status()

    def _on_clock_interval(self, change: dict[str, Any]) -> None:
        expected = int(self.refresh_seconds * 1000)
        if change["new"] != expected:  # set by a browser: put it back (the refresher limits it anyway)
            self.clock_widget.interval = expected

    def _on_live(self, change: dict[str, Any]) -> None:
        live = bool(change["new"])
        self.clock_widget.playing = live and (self.clock_widget._view_count or 0) > 0
        if live:
            self.refresher.request(force=True)
        self._status()

    def _on_views(self, change: dict[str, Any]) -> None:
        # the page exists: start the clock (Play ignores playing=True until a view exists) and
        # refresh soon if the data is older than the refresh interval (a preheated kernel loaded
        # it before anyone looked). The charts
        # held back so far (see Tile) go out when the page says it is on screen (the template's
        # script clicks the hidden "page shown" button), at the latest a few seconds from now.
        if (change["new"] or 0) <= 0:
            return
        if not self._release_timer:  # in case the page never says it is shown (JupyterLab)
            self._release_timer = threading.Timer(CHART_RELEASE_FALLBACK_S, self.release_charts)
            self._release_timer.daemon = True
            self._release_timer.start()
        if self.live.value:
            self.clock_widget.playing = True
            age = (self.clock() - self.updated_at).total_seconds() if self.updated_at else float("inf")
            if age >= min(self.refresh_seconds, 60.0):
                # data from a preheated kernel that waited a while: refresh, once the browser has
                # had a moment to draw the page (a refresh competes with it for the CPU)
                timer = threading.Timer(VIEW_REFRESH_DELAY_S, lambda: self.refresher.request(force=True))
                timer.daemon = True
                timer.start()

    def release_charts(self) -> None:
        with self._lock:
            for tile in self.tiles.values():
                tile.release_charts()

    def _on_tick(self, change: dict[str, Any]) -> None:
        if self.live.value:
            self.refresher.request()

    # -- refreshing -----------------------------------------------------------------------------
    def _roll_days(self, today: date) -> None:
        """A period that ended "today" keeps ending today when the day changes."""
        if today > self.options.today:
            old = self.options.today
            self.options = self.options.with_today(today)
            if self.state.end == old:
                shift = today - old
                self.state = replace(self.state, start=self.state.start + shift, end=today)
                self._revert()

    def _refresh(self) -> None:
        now = self.clock()
        self._roll_days(self._today(now))
        state = self.state
        try:
            with MetricSession.open(self.warehouse, settings=self.settings, tables=self.spec.tables) as session:
                view = load_view(self.spec.name, session, state, replace(self.context, now=now))
        except Exception as exc:  # noqa: BLE001 - shown as one line, never a traceback
            log.warning("refresh of %s failed: %s", self.spec.name, exc)
            self.error = short_error(exc)
            self.message.value = _message(f"Could not refresh: {self.error}" + (
                f" Showing the data of {self.updated_at:%H:%M:%S} UTC." if self.updated_at else ""))
            self._status()
            return
        if state != self.state:  # the filters changed while this ran: the next refresh shows them
            return
        with self._lock:
            self.view, self.error, self.updated_at = view, None, now
            for wid, tile in self.tiles.items():
                if wid in view.panels:
                    tile.show(view.panels[wid], view.currency)
        self.message.value = ""
        self._status()

    def _status(self) -> None:
        mode = ('<span class="pa-live">LIVE</span>' if self.live.value
                else '<span class="pa-paused">PAUSED</span>')
        when = f"updated {self.updated_at:%Y-%m-%d %H:%M:%S} UTC" if self.updated_at else "loading…"
        versions = ""
        if self.view is not None:
            tx = self.view.meta.get("warehouse_versions", {}).get("transactions")
            versions = f" · transactions table v{tx}" if tx is not None else ""
        self.status.value = (f'<div class="pa-dash pa-status">{mode} · {when}{versions} · '
                             f"{html.escape(_every(self.refresh_seconds))}</div>")

    # -- exports -------------------------------------------------------------------------------------
    def request_export(self, fmt: Any) -> None:
        """Prepare a download of the current view on a worker thread (PDF printing needs one)."""
        if not self.export_formats:
            return
        if not self._export_lock.acquire(blocking=False):
            self.export_link.value = '<span class="pa-note">An export is already being prepared…</span>'
            return
        self.export_link.value = '<span class="pa-note">Preparing…</span>'
        threading.Thread(target=self._export, args=(fmt,), name="dashboard-export", daemon=True).start()

    def _export(self, fmt: Any) -> None:
        try:
            if self.view is None:
                raise ExportRefused("nothing to export yet")
            self.export_link.value = download_link(export(self.view, fmt, self.export_formats, self.role))
        except ExportRefused as exc:
            self.export_link.value = _message(str(exc))
        except Exception as exc:  # noqa: BLE001 - one line on screen, details in the server log
            log.warning("export of %s as %s failed: %s", self.spec.name, fmt, exc)
            self.export_link.value = _message(f"Export failed: {short_error(exc)}")
        finally:
            self._export_lock.release()


def _every(seconds: float) -> str:
    seconds = int(seconds)
    return f"every {seconds // 60} min" if seconds >= 120 and seconds % 60 == 0 else f"every {seconds} s"


class Unavailable:
    """What a viewer sees for a dashboard their role does not have, or one that cannot start."""

    def __init__(self, title: str, text: str):
        self.text = text
        self.root = w.HTML(f'<style>{stylesheet()}</style><div class="pa-dash pa-dash-header">'
                           f"<h1>{html.escape(title)}</h1>{_message(text, 'info')}</div>")

    def show(self) -> None:
        display(self.root)
