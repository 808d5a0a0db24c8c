"""``payment-analytics dashboards``: serve the role dashboards with Voila, and list them.

Bad input (unknown role, missing or shared token, port in use, a bad roles file) is one line on
stderr and exit code 1 (click's usage errors: 2), never a traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from analytics_lib.dashboards.catalogue import DASHBOARDS
from analytics_lib.dashboards.roles import Roles


def _warehouse() -> str | None:
    root = click.get_current_context().find_root()
    return getattr(root.obj, "warehouse_location", None) if root.obj is not None else None


def _roles(roles_file: Path | None) -> Roles:
    from analytics_lib.dashboards.roles import RoleError, load_roles

    try:
        return load_roles(roles_file)
    except RoleError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("dashboards")
def dashboards() -> None:
    """Role-specific live dashboards (Voila): serve them, list them."""


@dashboards.command("serve")
@click.option("--role", "roles", multiple=True, metavar="ROLE",
              help="Serve this role (repeatable; default every role in roles.yaml).")
@click.option("--port-base", type=click.IntRange(1024, 65000), default=8866, show_default=True,
              help="Port of the first role in roles.yaml; the others follow in file order.")
@click.option("--pool-size", type=click.IntRange(0, 8), default=1, show_default=True,
              help="Preheated kernels per dashboard (0: start a kernel when a page opens).")
@click.option("--cull-after", type=click.FloatRange(5, 86400), default=60.0, show_default=True,
              help="Shut a kernel down after this many seconds with no browser connected.")
@click.option("--cell-timeout", type=click.IntRange(5, 3600), default=120, show_default=True,
              help="Seconds a dashboard cell may run while a page renders.")
@click.option("--roles-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Roles file (default parameters/dashboards/roles.yaml).")
@click.option("--runtime-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the role folders and server logs here (default: a temporary folder).")
def serve_command(roles: tuple[str, ...], port_base: int, pool_size: int, cull_after: float, cell_timeout: int,
                  roles_file: Path | None, runtime_dir: Path | None) -> None:
    """Serve each role's dashboards on 127.0.0.1, one Voila process per role.

    Each role needs a token in PAYMENT_ANALYTICS_DASHBOARD_TOKEN_<ROLE> (at least 16
    characters, different for every role); open http://127.0.0.1:PORT/?token=TOKEN or sign in
    with the token on the login page.
    """
    from analytics_lib.dashboards.roles import RoleError
    from analytics_lib.dashboards.serve import ServeError, ServeOptions, serve

    options = ServeOptions(port_base=port_base, pool_size=pool_size, cull_after=cull_after, cell_timeout=cell_timeout,
                           warehouse=_warehouse(), roles_file=roles_file, runtime_dir=runtime_dir)
    try:
        code = serve(_roles(roles_file), list(roles) or None, options, echo=click.echo)
    except (RoleError, ServeError) as exc:
        raise click.ClickException(str(exc)) from None
    if code:
        raise SystemExit(code)


@dashboards.command("list")
@click.option("--widgets", is_flag=True, help="Also list each dashboard's widget ids.")
@click.option("--port-base", type=click.IntRange(1024, 65000), default=8866, show_default=True)
@click.option("--roles-file", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def list_command(widgets: bool, port_base: int, roles_file: Path | None, fmt: str) -> None:
    """The roles, their dashboards, widgets, export rights, ports and token variables."""
    roles = _roles(roles_file)
    rows: list[dict[str, Any]] = []
    for i, role in enumerate(roles):
        rows.append({
            "role": role.name, "description": role.description, "port": port_base + i,
            "token_variable": role.token_variable, "token_set": bool(os.environ.get(role.token_variable)),
            "dashboards": {d: list(w) for d, w in role.dashboards.items()}, "export": list(role.export),
        })
    if fmt == "json":
        click.echo(json.dumps({"roles": rows, "dashboards": {n: {"title": s.title, "widgets": list(s.widgets),
                                                                 "refresh_seconds": s.refresh_seconds}
                                                             for n, s in DASHBOARDS.items()}}, indent=2))
        return
    for row in rows:
        token = "set" if row["token_set"] else "NOT SET"
        click.echo(f"{row['role']:11} port {row['port']}  ${row['token_variable']} ({token})  "
                   f"export: {', '.join(row['export']) or 'none'}")
        for name, ids in row["dashboards"].items():
            spec = DASHBOARDS[name]
            shown = "all widgets" if tuple(ids) == spec.widgets else ", ".join(ids)
            click.echo(f"{'':11}   {spec.title:20} {shown}")
    if widgets:
        click.echo("")
        for name, spec in DASHBOARDS.items():
            click.echo(f"{name:11} {', '.join(spec.widgets)}  (refresh every {spec.refresh_seconds:g} s)")
