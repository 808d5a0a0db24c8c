"""The live refresh loop: a kernel-side clock asks, one worker thread answers.

The clock is an ``ipywidgets.Play`` shown (hidden) on the page: it ticks only while a browser
shows the dashboard, so an abandoned kernel does no work. Ticks only *request* a refresh; the
worker thread runs one refresh at a time (opening a fresh warehouse snapshot each time),
coalesces requests that arrive while it is busy and enforces a minimum gap between refreshes,
so a browser that sets the clock's interval to 1 ms cannot make the kernel spin.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: the shortest gap between two refreshes, whatever the clock or the viewer asks
MIN_GAP_S = 1.0


class Refresher:
    """Runs ``work`` on a worker thread when asked, one run at a time.

    Parameters
    ----------
    work : callable
        One refresh. It must not raise: errors are the caller's to show (it is wrapped anyway,
        and anything that escapes is logged, never shown).
    min_interval : float
        Seconds a clock tick must wait after the previous refresh started (forced requests,
        such as a filter change, wait only :data:`MIN_GAP_S`).
    """

    def __init__(self, work: Callable[[], None], min_interval: float):
        self._work = work
        self.min_interval = max(float(min_interval), MIN_GAP_S)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._force = False
        self._lock = threading.Lock()
        self._last_start = float("-inf")
        self.runs = 0
        self.running = False
        self._thread = threading.Thread(target=self._loop, name="dashboard-refresh", daemon=True)

    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def request(self, force: bool = False) -> None:
        """Ask for a refresh (``force`` for one the viewer asked for: a filter or a button)."""
        with self._lock:
            self._force = self._force or force
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            if self._stop.is_set():
                return
            with self._lock:
                force, self._force = self._force, False
                self._wake.clear()
            gap = MIN_GAP_S if force else self.min_interval
            wait = self._last_start + gap - time.monotonic()
            if wait > 0:
                if not force:
                    continue  # a tick that came too soon: the next one will do
                time.sleep(wait)
            self._last_start = time.monotonic()
            self.running = True
            try:
                self._work()
            except Exception:  # noqa: BLE001 - never let the loop die; the log is for the operator
                log.exception("dashboard refresh failed")
            finally:
                self.running = False
                self.runs += 1
