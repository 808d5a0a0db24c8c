"""Anomaly alerts for the operations dashboard.

The detector belongs to the live-data side (``analytics_lib.live.anomalies``: volume spikes and
drops against the expected volume for the hour and weekday, success-rate drops, unusual
countries, high-value payments, fraud-score spikes). The dashboard reads the alerts the detector
wrote to the warehouse when that table exists in the snapshot, else asks the detector directly
(at most once a minute), and when neither is installed it says so instead of failing: a
dashboard always renders.
"""

from __future__ import annotations

import importlib
import inspect
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from analytics_lib.metrics import Filters, MetricSession

ALERT_COLUMNS = ("alert_id", "alert_type", "severity", "value", "expected_value", "unit", "confidence",
                 "subject", "message", "detected_at", "window_start", "window_end")
#: warehouse tables the detector may write its alerts to (the first present one is read)
ALERT_TABLES = ("alerts", "anomaly_alerts")
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
DETECT_EVERY_S = 60.0
MAX_ALERTS = 50


def empty_alerts() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in ALERT_COLUMNS})


def _live_module() -> Any:
    """``analytics_lib.live.anomalies`` when installed, else None."""
    try:
        return importlib.import_module("analytics_lib.live.anomalies")
    except ImportError:
        return None


def _detector(module: Any) -> tuple[Callable[..., Any], Any] | None:
    """``(detect_anomalies, AnomalyOptions)`` of the live module, or None."""
    if module is None:
        return None
    detect = getattr(module, "detect_anomalies", None)
    if not callable(detect):
        return None
    return detect, getattr(module, "AnomalyOptions", None)


def _call_detector(detect: Callable[..., Any], options_cls: Any, session: MetricSession, now: datetime,
                   hours: int, filters: Filters, currency: str | None = None) -> pd.DataFrame:
    """Call the detector with the arguments its signature names (session or snapshot, now,
    window, filters, options), so the dashboard does not break when it gains parameters."""
    params = inspect.signature(detect).parameters
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    first = next(iter(params), None)
    if first in ("session", "metric_session"):
        args.append(session)
    elif first in ("snapshot", "snap"):
        args.append(session.snapshot)
    elif first in ("warehouse", "location"):
        args.append(session.snapshot.location)
    elif first is not None and params[first].default is inspect.Parameter.empty:
        args.append(session)
    offered = {"now": now, "hours": hours, "window_hours": hours, "filters": filters,
               "window_start": now - timedelta(hours=hours), "window_end": now, "currency": currency}
    if "options" in params and options_cls is not None:
        offered["options"] = options_cls()
    for name, value in offered.items():
        if name in params and name != first:
            kwargs[name] = value
    result = detect(*args, **kwargs)
    return result if isinstance(result, pd.DataFrame) else pd.DataFrame(result)


class AlertSource:
    """Where one dashboard gets its anomaly alerts. The detector's answer is kept for
    :data:`DETECT_EVERY_S` seconds so a live refresh every few seconds stays cheap; the alerts
    it stored earlier in the window are shown too (one row per alert id)."""

    def __init__(self) -> None:
        self._cache: tuple[float, Any, pd.DataFrame] | None = None
        self._lock = threading.Lock()

    def load(self, session: MetricSession, now: datetime, hours: int, filters: Filters,
             currency: str | None = None) -> tuple[pd.DataFrame, str]:
        """Alerts of the window, most severe and newest first, and a note on where they came from."""
        module = _live_module()
        stored = self._stored(session, module, now, hours)
        found = _detector(module)
        if found is None:
            if stored is None:
                return empty_alerts(), ("anomaly detection is not installed here (analytics_lib.live); "
                                        "the other panels are unaffected")
            return _tidy(stored), "alerts recorded in the warehouse by the live detector"
        key = (hours, filters, currency)
        with self._lock:
            cached = self._cache
        if cached and cached[1] == key and time.monotonic() - cached[0] < DETECT_EVERY_S:
            fresh = cached[2]
        else:
            fresh = _call_detector(found[0], found[1], session, now, hours, filters, currency)
            with self._lock:
                self._cache = (time.monotonic(), key, fresh)
        frames = [f for f in (fresh, stored) if f is not None and not f.empty]
        merged = pd.concat(frames, ignore_index=True) if frames else empty_alerts()
        if "alert_id" in merged and not merged.empty:
            merged = merged.drop_duplicates("alert_id", keep="first")
        return _tidy(merged), ("live detection (re-run at most once a minute) and the alerts recorded "
                               "earlier in the window")

    @staticmethod
    def _stored(session: MetricSession, module: Any, now: datetime, hours: int) -> pd.DataFrame | None:
        table = next((t for t in ALERT_TABLES if session.versions.get(t, -1) >= 0), None)
        if table is None:
            return None
        recent = getattr(module, "recent_alerts", None) if module is not None else None
        if callable(recent):
            return recent(session, now, hours)
        return session.snapshot.con.execute(
            f'SELECT * FROM "{table}" WHERE detected_at >= ? AND detected_at < ? '
            f"ORDER BY detected_at DESC LIMIT {MAX_ALERTS * 4}", [now - timedelta(hours=hours), now]).df()


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    if frame is None or frame.empty:
        return empty_alerts()
    out = frame[[c for c in ALERT_COLUMNS if c in frame.columns]].copy()
    if "severity" in out:
        out["_order"] = [SEVERITY_ORDER.get(str(s).lower(), 9) for s in out["severity"]]
        by = ["_order"] + (["detected_at"] if "detected_at" in out else [])
        out = out.sort_values(by, ascending=[True] + [False] * (len(by) - 1)).drop(columns="_order")
    return out.head(MAX_ALERTS).reset_index(drop=True)
