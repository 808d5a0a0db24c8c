"""Serving the dashboards: one Voila process per role, each on its own 127.0.0.1 port, with its
own folder holding only that role's dashboard notebooks and its own token.

Why separate processes: measured with Voila 0.5 (DESIGN.md), a single server with a custom
``Authorizer`` lets any signed-in user load any page (Voila's page, tree, files and shutdown
handlers never consult it). Separate servers share nothing: another role's token is refused on
pages (redirect to the login page), on the kernel websocket and on the kernel API (403).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from analytics_lib.config import PROJECT_ROOT
from analytics_lib.dashboards.catalogue import DASHBOARDS
from analytics_lib.dashboards.roles import (
    ROLE_VARIABLE,
    ROLES_VARIABLE,
    TOKEN_PREFIX,
    Role,
    RoleError,
    Roles,
    role_tokens,
)
from analytics_lib.dashboards.server import JUPYTER_DATA, TEMPLATE

HOST = "127.0.0.1"
FRONTEND_EXTENSIONS = ("@jupyter-widgets/jupyterlab-manager", "@voila-dashboards/widgets-manager8", "jupyterlab-plotly")
DEFAULT_PORT_BASE = 8866
NOTEBOOKS = PROJECT_ROOT / "notebooks" / "dashboards"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class ServeError(RuntimeError):
    """The dashboards could not be served (one-line message)."""


@dataclass
class ServeOptions:
    """How each role's server runs."""

    port_base: int = DEFAULT_PORT_BASE
    #: preheated kernels per dashboard (0: start a kernel when a page is opened)
    pool_size: int = 1
    #: seconds without a connected browser before a kernel is shut down
    cull_after: float = 60.0
    cull_interval: int = 10
    #: seconds a dashboard cell may run (VoilaExecutor.timeout)
    cell_timeout: int = 120
    warehouse: str | None = None
    roles_file: Path | None = None
    runtime_dir: Path | None = None
    notebooks: Path = NOTEBOOKS
    log_to_files: bool = True


@dataclass
class RoleServer:
    """One running role server."""

    role: Role
    port: int
    folder: Path
    log_path: Path | None
    process: subprocess.Popen | None = None
    dashboards: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def dashboard_url(self, name: str) -> str:
        return f"{self.url}voila/render/{name}.ipynb"


def plan(roles: Roles, names: Sequence[str] | None, port_base: int) -> list[tuple[Role, int]]:
    """The roles to serve and their ports (``port_base`` + the role's place in roles.yaml)."""
    order = roles.names()
    chosen = list(dict.fromkeys(names)) if names else order
    for name in chosen:
        roles[name]  # noqa: B018 - unknown role: one-line RoleError
    if not 1024 <= port_base <= 65535 - len(order):
        raise ServeError(f"--port-base must be between 1024 and {65535 - len(order)}")
    return [(roles[name], port_base + order.index(name)) for name in chosen]


def prepare_folder(role: Role, runtime: Path, notebooks: Path = NOTEBOOKS) -> tuple[Path, list[str]]:
    """A folder holding only ``role``'s dashboard notebooks (copies)."""
    folder = runtime / role.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    names = []
    for name in role.dashboards:
        source = notebooks / DASHBOARDS[name].notebook
        if not source.is_file():
            raise ServeError(f"dashboard notebook not found: {source}")
        shutil.copy2(source, folder / source.name)
        names.append(name)
    return folder, names


def command(role: Role, folder: Path, port: int, options: ServeOptions) -> list[str]:
    """The Voila command line of one role's server (the token is not on it: see :func:`environment`)."""
    args = [
        sys.executable, "-m", "analytics_lib.dashboards.server",
        f"--DashboardVoila.role={role.name}",
        "--no-browser",
        f"--Voila.ip={HOST}",
        f"--Voila.port={port}",
        "--Voila.port_retries=0",
        f"--VoilaConfiguration.template={TEMPLATE}",
        "--VoilaConfiguration.theme=light",
        "--VoilaConfiguration.show_tracebacks=False",
        "--VoilaConfiguration.strip_sources=True",
        # only the front-end extensions the dashboards use: fewer scripts to load, and nothing an
        # extension installed later into the environment could fetch from a CDN
        *(f"--VoilaConfiguration.extension_allowlist={name}" for name in FRONTEND_EXTENSIONS),
        f"--VoilaExecutor.timeout={int(options.cell_timeout)}",
        "--VoilaConfiguration.multi_kernel_manager_class=analytics_lib.dashboards.server.CullingKernelManager",
        f"--CullingKernelManager.cull_unconnected_after={float(options.cull_after)}",
        # jupyter_server starts its culling loop only with an idle timeout set
        f"--CullingKernelManager.cull_idle_timeout={max(1, int(options.cull_after))}",
        f"--CullingKernelManager.cull_interval={int(options.cull_interval)}",
    ]
    if options.pool_size > 0:
        args += ["--VoilaConfiguration.preheat_kernel=True",
                 f"--VoilaConfiguration.default_pool_size={int(options.pool_size)}"]
    return [*args, str(folder)]


def environment(role: Role, token: str, options: ServeOptions, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server's environment: only its own role's token, the template on JUPYTER_PATH, and
    this checkout's ``analytics_lib`` first on PYTHONPATH (so its kernels import the same code)."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith(TOKEN_PREFIX)}
    env[role.token_variable] = token
    env[ROLE_VARIABLE] = role.name
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(JUPYTER_DATA), env.get("JUPYTER_PATH", "")) if p)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    if options.warehouse:
        env["PAYMENT_ANALYTICS_WAREHOUSE"] = str(Path(options.warehouse).expanduser().resolve())
    if options.roles_file:
        env[ROLES_VARIABLE] = str(Path(options.roles_file).resolve())
    return env


def _port_free(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tornado binds: TIME_WAIT is free
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def start(roles: Roles, names: Sequence[str] | None, options: ServeOptions,
          environ: Mapping[str, str] | None = None) -> tuple[list[RoleServer], Path, bool]:
    """Start one Voila process per role; returns the servers, the runtime folder and whether
    that folder is a temporary one (removed by :func:`stop`). Refuses before starting anything
    when a token is missing, short or shared, or a port is taken."""
    chosen = plan(roles, names, options.port_base)
    tokens = role_tokens([role for role, _ in chosen], environ)
    for role, port in chosen:
        if not _port_free(port):
            raise ServeError(f"port {port} (the {role.name} role's) is in use; choose another --port-base")
    temporary = options.runtime_dir is None
    runtime = Path(tempfile.mkdtemp(prefix="pa-dashboards-")) if temporary else Path(options.runtime_dir)  # type: ignore[arg-type]
    runtime.mkdir(parents=True, exist_ok=True)
    os.chmod(runtime, 0o700)
    servers: list[RoleServer] = []
    try:
        for role, port in chosen:
            folder, dashboards = prepare_folder(role, runtime / "roles", options.notebooks)
            log_path = runtime / f"{role.name}.log" if options.log_to_files else None
            server = RoleServer(role, port, folder, log_path, dashboards=dashboards)
            out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - handed to the child
            try:
                server.process = subprocess.Popen(
                    command(role, folder, port, options), env=environment(role, tokens[role.name], options, environ),
                    cwd=str(folder), stdout=out or subprocess.DEVNULL, stderr=subprocess.STDOUT if out else None,
                    stdin=subprocess.DEVNULL)
            finally:
                if out:
                    out.close()
            servers.append(server)
    except BaseException:
        stop(servers, runtime if temporary else None)
        raise
    return servers, runtime, temporary


def wait_ready(servers: Sequence[RoleServer], timeout: float = 90.0) -> None:
    """Wait until every server answers on its port; a server that exits is an error."""
    deadline = time.monotonic() + timeout
    pending = list(servers)
    while pending:
        for server in list(pending):
            code = server.process.poll() if server.process else None
            if code is not None:
                raise ServeError(f"the {server.role.name} server exited with code {code}: {_last_line(server.log_path)}")
            try:
                with urllib.request.urlopen(f"{server.url}login", timeout=2) as response:
                    if response.status == 200:
                        pending.remove(server)
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
        if pending and time.monotonic() > deadline:
            raise ServeError(f"the {pending[0].role.name} server did not answer within {timeout:.0f} s: "
                             f"{_last_line(pending[0].log_path)}")
        if pending:
            time.sleep(0.3)


def _last_line(path: Path | None) -> str:
    if path is None or not path.is_file():
        return "no log"
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "empty log"


def stop(servers: Sequence[RoleServer], runtime: Path | None = None, grace: float = 15.0) -> None:
    """Stop each server by its PID (SIGTERM: Voila shuts its kernels down), then SIGKILL what
    is left after ``grace`` seconds; remove a temporary runtime folder."""
    for server in servers:
        if server.process and server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for server in servers:
        if server.process is None:
            continue
        try:
            server.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(5)
    if runtime is not None:
        shutil.rmtree(runtime, ignore_errors=True)


def serve(roles: Roles, names: Sequence[str] | None, options: ServeOptions,
          echo: Callable[[str], None] = print) -> int:
    """Start the role servers, print where they are, and run until interrupted (or until one
    stops); every server is stopped on the way out."""
    servers, runtime, temporary = start(roles, names, options)
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        wait_ready(servers)
        for server in servers:
            echo(f"{server.role.name:11} {server.url}   token: ${server.role.token_variable}")
            for name in server.dashboards:
                echo(f"{'':11}   {DASHBOARDS[name].title:20} {server.dashboard_url(name)}")
        echo(f"logs: {runtime}" + ("" if not temporary else " (removed on exit)") + "; Ctrl-C stops every server")
        while not stopping:
            for server in servers:
                if server.process and server.process.poll() is not None:
                    echo(f"error: the {server.role.name} server stopped (code {server.process.returncode}): "
                         f"{_last_line(server.log_path)}")
                    stopping, code = True, 1
            time.sleep(0.5)
    except (ServeError, RoleError):
        code = 1
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop(servers, runtime if temporary else None)
    return code
