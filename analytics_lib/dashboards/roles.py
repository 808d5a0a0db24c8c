"""Roles: who sees which dashboard, which of its widgets, and what they may do (export formats).

Read from ``parameters/dashboards/roles.yaml``; a bad file is refused with a one-line message
that names the field. Each role is served by its own Voila process with its own token, read
from the environment variable :func:`token_variable` names (never from ``parameters/``)::

    roles:
      operations:
        description: Payment operations team
        dashboards: {operations: all}
        export: [csv, xlsx, json, pdf]
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from analytics_lib.config import get_settings
from analytics_lib.dashboards.catalogue import DASHBOARDS, EXPORT_FORMATS

TOKEN_PREFIX = "PAYMENT_ANALYTICS_DASHBOARD_TOKEN_"
ROLE_VARIABLE = "PAYMENT_ANALYTICS_DASHBOARD_ROLE"
ROLES_VARIABLE = "PAYMENT_ANALYTICS_DASHBOARD_ROLES"
MIN_TOKEN_LENGTH = 16
_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class RoleError(ValueError):
    """A roles file, role name or token that cannot be used (one-line message)."""


class _RoleModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = ""
    dashboards: dict[str, Any] = Field(min_length=1)
    export: list[str] = Field(default_factory=list)

    @field_validator("dashboards")
    @classmethod
    def _dashboards(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = [name for name in value if name not in DASHBOARDS]
        if unknown:
            raise ValueError(f"unknown dashboard {', '.join(map(repr, unknown))}; dashboards: {', '.join(DASHBOARDS)}")
        for name, widgets in value.items():
            if widgets == "all":
                continue
            if not isinstance(widgets, list) or not widgets or not all(isinstance(w, str) for w in widgets):
                raise ValueError(f"dashboard {name!r} takes 'all' or a list of widget ids")
            known = DASHBOARDS[name].widgets
            bad = [w for w in widgets if w not in known]
            if bad:
                raise ValueError(f"unknown widget {', '.join(map(repr, bad))} of {name!r}; widgets: {', '.join(known)}")
        return value

    @field_validator("export")
    @classmethod
    def _export(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if v not in EXPORT_FORMATS]
        if bad:
            raise ValueError(f"unknown export format {', '.join(map(repr, bad))}; formats: {', '.join(EXPORT_FORMATS)}")
        return list(dict.fromkeys(value))


class _RolesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roles: dict[str, _RoleModel] = Field(min_length=1)

    @field_validator("roles")
    @classmethod
    def _names(cls, value: dict[str, _RoleModel]) -> dict[str, _RoleModel]:
        for name in value:
            if not _ROLE_NAME.match(name):
                raise ValueError(f"role name {name!r} must be lower-case letters, digits or '_' (at most 32)")
        return value


@dataclass(frozen=True)
class Role:
    """One role: its dashboards (each with the widget ids it shows) and permitted export formats."""

    name: str
    description: str
    dashboards: Mapping[str, tuple[str, ...]]
    export: tuple[str, ...]

    @property
    def token_variable(self) -> str:
        return token_variable(self.name)

    def widgets(self, dashboard: str) -> tuple[str, ...]:
        """The widget ids of ``dashboard`` this role sees; a dashboard it lacks is refused."""
        if dashboard not in self.dashboards:
            raise RoleError(f"the {self.name} role has no {dashboard!r} dashboard")
        return self.dashboards[dashboard]

    def may_export(self, fmt: str) -> bool:
        return fmt in self.export


@dataclass(frozen=True)
class Roles:
    roles: Mapping[str, Role]
    path: Path

    def __getitem__(self, name: str) -> Role:
        if name not in self.roles:
            raise RoleError(f"unknown role {name!r}; roles in {self.path.name}: {', '.join(self.roles)}")
        return self.roles[name]

    def __iter__(self) -> Iterator[Role]:
        return iter(self.roles.values())

    def names(self) -> list[str]:
        return list(self.roles)


def default_roles_path() -> Path:
    """``$PAYMENT_ANALYTICS_DASHBOARD_ROLES`` or ``parameters/dashboards/roles.yaml``."""
    override = os.environ.get(ROLES_VARIABLE)
    return Path(override) if override else get_settings().parameters_dir / "dashboards" / "roles.yaml"


def load_roles(path: str | os.PathLike[str] | None = None) -> Roles:
    """Read and check a roles file (one-line :class:`RoleError` naming the bad field)."""
    path = Path(path) if path else default_roles_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RoleError(f"roles file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise RoleError(f"{path.name} is not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        model = _RolesFile.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise RoleError(f"{path.name}: field '{where}': {message}") from None
    roles = {}
    for name, body in model.roles.items():
        dashboards = {d: (DASHBOARDS[d].widgets if w == "all" else tuple(w)) for d, w in body.dashboards.items()}
        roles[name] = Role(name, body.description, dashboards, tuple(body.export))
    return Roles(roles, path)


def token_variable(role: str) -> str:
    """The environment variable holding ``role``'s token: ``PAYMENT_ANALYTICS_DASHBOARD_TOKEN_<ROLE>``."""
    return TOKEN_PREFIX + role.upper()


def role_tokens(roles: list[Role], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each role's token from the environment; refuses a missing, short or shared token."""
    env = os.environ if environ is None else environ
    tokens: dict[str, str] = {}
    for role in roles:
        token = env.get(role.token_variable, "").strip()
        if not token:
            raise RoleError(f"set {role.token_variable} (at least {MIN_TOKEN_LENGTH} characters) to serve the "
                            f"{role.name} dashboards; e.g. export {role.token_variable}=$(python -c "
                            "'import secrets; print(secrets.token_urlsafe(24))')")
        if len(token) < MIN_TOKEN_LENGTH:
            raise RoleError(f"{role.token_variable} is too short: use at least {MIN_TOKEN_LENGTH} characters")
        if re.search(r"\s", token):
            raise RoleError(f"{role.token_variable} must not contain white space")
        for other, other_token in tokens.items():
            if other_token == token:
                raise RoleError(f"the {other} and {role.name} roles have the same token: give each role its own")
        tokens[role.name] = token
    return tokens
