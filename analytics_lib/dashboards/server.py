"""One role's Voila server: Voila with the settings this workspace needs, run as
``python -m analytics_lib.dashboards.server --DashboardVoila.role=<role> ... <role folder>``
(``payment-analytics dashboards serve`` starts one per role).

What it changes in Voila 0.5, and why (DESIGN.md, measured here):

* **Token required.** The role's token comes from its environment variable and is removed from
  the environment before any kernel starts (kernels never see a token). Without one the server
  refuses to start: Voila's default is *no* authentication.
* **The page's close beacon works.** Voila's page asks the server to shut its kernel down when
  the tab closes (``POST /voila/api/shutdown/<id>``) with the ``_xsrf`` cookie's value, but never
  sets that cookie, so every beacon got 403 and every page view leaked a kernel. The dashboard
  page handler sets it.
* **Kernels are culled when no browser is connected**, not when idle: a live dashboard's clock
  keeps its kernel "active" forever (:class:`CullingKernelManager`).
* **Only the role's dashboards are reachable.** The server's folder holds only them; the file
  tree, contents API and file handler are removed, and ``/`` lists the role's dashboards.
"""

from __future__ import annotations

import html
import os
import sys
import time
from pathlib import Path
from typing import Any

import tornado.web
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from traitlets import Float, Unicode, default
from voila.app import Voila
from voila.static_file_handler import AllowListFileHandler
from voila.tornado.contentshandler import VoilaContentsHandler
from voila.tornado.handler import TornadoVoilaHandler
from voila.tornado.treehandler import TornadoVoilaTreeHandler

from analytics_lib.dashboards.catalogue import DASHBOARDS
from analytics_lib.dashboards.roles import ROLE_VARIABLE, TOKEN_PREFIX, token_variable

TEMPLATE = "pa-dashboard"
#: where the pa-dashboard Voila template lives (added to JUPYTER_PATH by the launcher)
JUPYTER_DATA = Path(__file__).parent / "jupyter"


class CullingKernelManager(AsyncMappingKernelManager):
    """Shuts down a kernel once no browser has been connected to it for
    ``cull_unconnected_after`` seconds (and it is not busy running cells).

    jupyter_server's culler looks at idleness, and a live dashboard is never idle: its clock
    and refresh messages count as activity, so without this every abandoned page kept its
    kernel (~225 MB) until the server stopped. Preheated kernels waiting in Voila's pool are
    never passed here (Voila's pool manager guards them), and a kernel that has just left the
    pool gets a fresh grace period.
    """

    cull_unconnected_after = Float(60.0, config=True,
                                   help="Seconds without any browser connection before a kernel is shut down.")

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._unconnected: dict[str, tuple[float, float]] = {}  # kernel id -> (since, last seen)

    async def cull_kernel_if_idle(self, kernel_id: str) -> None:
        kernel = self._kernels[kernel_id]
        if getattr(kernel, "execution_state", None) == "dead":
            self.log.warning("Culling dead kernel %s", kernel_id)
            await self.shutdown_kernel(kernel_id)
            return
        now = time.monotonic()
        connected = self._kernel_connections.get(kernel_id, 0) > 0
        busy = getattr(kernel, "execution_state", None) == "busy"
        since, last_seen = self._unconnected.get(kernel_id, (now, now))
        if connected or busy or now - last_seen > 2.5 * self.cull_interval:
            since = now  # connected, rendering, or just out of the preheated pool
        self._unconnected[kernel_id] = (since, now)
        if now - since >= self.cull_unconnected_after:
            self.log.info("Culling kernel %s: no browser connected for %.0f s", kernel_id, now - since)
            self._unconnected.pop(kernel_id, None)
            await self.shutdown_kernel(kernel_id)

    async def shutdown_kernel(self, kernel_id: str, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self._unconnected.pop(kernel_id, None)
        await super().shutdown_kernel(kernel_id, *args, **kwargs)


class DashboardPageHandler(TornadoVoilaHandler):
    """Voila's page handler, plus the ``_xsrf`` cookie its close beacon sends back."""

    @tornado.web.authenticated
    async def get(self, path: str | None = None) -> None:
        self.xsrf_token  # noqa: B018 - reading it sets the cookie
        await super().get(path)


class LandingHandler(JupyterHandler):
    """``/``: the signed-in role's dashboards, as links."""

    def initialize(self, role: str, root_dir: str) -> None:
        self.role = role
        self.root_dir = root_dir

    @tornado.web.authenticated
    def get(self) -> None:
        items = []
        for path in sorted(Path(self.root_dir).glob("*.ipynb")):
            spec = DASHBOARDS.get(path.stem)
            title = spec.title if spec else path.stem
            about = spec.description if spec else ""
            items.append(f'<li><a href="{self.base_url}voila/render/{html.escape(path.name, quote=True)}">'
                         f"{html.escape(title)}</a><br><small>{html.escape(about)}</small></li>")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Dashboards</title>"
            "<style>body{font-family:system-ui,sans-serif;color:#1f2933;max-width:760px;margin:40px auto;}"
            "li{margin:14px 0}a{font-size:18px;color:#0b5fa5}small{color:#616e7c}</style></head><body>"
            f"<h1>Payment analytics dashboards</h1><p>Signed in as the <b>{html.escape(self.role)}</b> role.</p>"
            f"<ul>{''.join(items)}</ul></body></html>")


class DashboardVoila(Voila):
    """Voila for one role (see the module docstring)."""

    name = "payment-analytics-dashboards"
    role = Unicode("", config=True, help="The role this server serves (its token variable and folder).")

    @default("token")
    def _token_from_environment(self) -> str | None:
        # read the role's token, then drop every dashboard token from the environment the
        # kernels inherit
        token = os.environ.get(token_variable(self.role)) if self.role else None
        for key in [k for k in os.environ if k.startswith(TOKEN_PREFIX)]:
            del os.environ[key]
        return token

    def initialize(self, argv: Any = None) -> None:
        super().initialize(argv)
        if not self.role:
            sys.exit("error: --DashboardVoila.role is required")
        if not self.token:
            sys.exit(f"error: set {token_variable(self.role)}: a dashboard server never runs without a token")
        os.environ[ROLE_VARIABLE] = self.role

    def init_handlers(self) -> list:
        handlers = []
        for handler in super().init_handlers():
            cls = handler[1]
            if cls in (TornadoVoilaTreeHandler, VoilaContentsHandler, AllowListFileHandler):
                continue  # no file tree, no contents API, no files: only the role's dashboards
            if cls is TornadoVoilaHandler:
                handler = (handler[0], DashboardPageHandler, *handler[2:])
            handlers.append(handler)
        landing = (self.server_url.rstrip("/") + "/?", LandingHandler, {"role": self.role, "root_dir": self.root_dir})
        return [landing, *handlers]


main = DashboardVoila.launch_instance

if __name__ == "__main__":  # pragma: no cover
    main()
