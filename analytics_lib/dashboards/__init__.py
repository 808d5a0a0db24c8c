"""Role-specific live dashboards served by Voila: what each shows (``data``), its page and
filters (``widgets``, ``state``), the live refresh (``refresh``), exports (``export``), roles
(``roles``, ``parameters/dashboards/roles.yaml``) and one Voila process per role (``server``,
``serve``, ``cli``).

A dashboard notebook is two lines after its parameters::

    from analytics_lib.dashboards import open_dashboard
    open_dashboard("operations", role=role, refresh_seconds=refresh_seconds).show()
"""

from __future__ import annotations

import os
from typing import Any

from analytics_lib.dashboards.catalogue import (
    DASHBOARDS,
    EXPORT_FORMATS,
    DashboardSpec,
    get_dashboard,
)

__all__ = ["DASHBOARDS", "EXPORT_FORMATS", "DashboardSpec", "get_dashboard", "open_dashboard"]


def open_dashboard(name: str, *, role: str | None = None, refresh_seconds: float | None = None, hours: int = 24,
                   warehouse: str | None = None, roles_file: str | None = None, clock: Any = None) -> Any:
    """The dashboard ``name`` as the viewer's role sees it (call ``.show()`` on the result).

    ``role`` defaults to the serving role (``PAYMENT_ANALYTICS_DASHBOARD_ROLE``, set by
    ``payment-analytics dashboards serve``). Without any role (a notebook opened in JupyterLab)
    every widget and export is available. A role without this dashboard, or a dashboard that
    cannot start (no warehouse, bad settings), gets a one-line message instead of a traceback.
    """
    from analytics_lib.config import get_settings
    from analytics_lib.dashboards.data import short_error
    from analytics_lib.dashboards.roles import ROLE_VARIABLE, load_roles
    from analytics_lib.dashboards.widgets import Dashboard, Unavailable

    spec = get_dashboard(name)
    role = role or os.environ.get(ROLE_VARIABLE) or None
    try:
        if role:
            r = load_roles(roles_file)[role]
            if name not in r.dashboards:
                return Unavailable(spec.title, f"The {role} role has no {spec.title} dashboard.")
            widgets, exports = r.widgets(name), r.export
        else:
            widgets, exports = spec.widgets, EXPORT_FORMATS
        settings = get_settings()
        if warehouse:
            settings = settings.with_warehouse(warehouse)
        return Dashboard(spec, widgets, exports, role=role, refresh_seconds=refresh_seconds, hours=hours,
                         settings=settings, clock=clock)
    except Exception as exc:  # noqa: BLE001 - a viewer gets one line; the server log has the rest
        import logging

        logging.getLogger(__name__).warning("dashboard %s cannot start: %s", name, exc, exc_info=True)
        return Unavailable(spec.title, f"This dashboard cannot start: {short_error(exc)}")
