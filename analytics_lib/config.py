"""Paths and settings, resolved in one place from environment variables with defaults.

Every other module asks this one where the warehouse, outputs and parameters live and which
time zone and reporting currency to use. Secrets (SMTP password, dashboard tokens) are read
from the environment (or a git-ignored ``.env``) by the modules that need them, never from
``parameters/``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

ENV_WAREHOUSE = "PAYMENT_ANALYTICS_WAREHOUSE"
ENV_OUTPUTS = "PAYMENT_ANALYTICS_OUTPUTS"
ENV_TIMEZONE = "PAYMENT_ANALYTICS_TIMEZONE"
ENV_CURRENCY = "PAYMENT_ANALYTICS_CURRENCY"
ENV_HOME_COUNTRY = "PAYMENT_ANALYTICS_HOME_COUNTRY"
ENV_DUCKDB_MEMORY = "PAYMENT_ANALYTICS_DUCKDB_MEMORY_LIMIT"
ENV_DUCKDB_THREADS = "PAYMENT_ANALYTICS_DUCKDB_THREADS"
ENV_DUCKDB_TEMP = "PAYMENT_ANALYTICS_DUCKDB_TEMP_DIRECTORY"
ENV_ENGINE = "PAYMENT_ANALYTICS_ENGINE"

DEFAULT_TIMEZONE = "Europe/Istanbul"
DEFAULT_CURRENCY = "USD"
DEFAULT_HOME_COUNTRY = "TR"
#: the share of the machine's memory a DuckDB connection may use when no limit is configured.
#: DuckDB's own default is 80 %: one 100M-payment suite then takes the whole machine, and the
#: kernel ends it (or a neighbour) when a notebook, a dashboard or a model holds the rest. Above
#: the limit DuckDB spills to the temp directory instead.
DEFAULT_DUCKDB_MEMORY_SHARE = 0.4


def default_duckdb_memory_limit() -> str | None:
    """``DEFAULT_DUCKDB_MEMORY_SHARE`` of the physical memory, in MB (None where unknown)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return f"{int(total * DEFAULT_DUCKDB_MEMORY_SHARE / 2**20)}MiB" if total > 0 else None


def default_duckdb_temp_directory() -> str:
    """Where DuckDB spills: the system's temp folder (DuckDB's own default, ``.tmp`` in the
    current directory, would put spill files beside a notebook or in the repository)."""
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")  # Windows: no uid
    return str(Path(tempfile.gettempdir()) / f"payment-analytics-duckdb-{user}")


class ConfigError(ValueError):
    """A setting has a value the workspace cannot use."""


def _load_dotenv(path: Path) -> None:
    """Read KEY=VALUE lines from a git-ignored ``.env`` without overriding the environment."""
    if not path.is_file():
        return
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        os.environ.setdefault(key.strip(), value.strip().strip("'\""))


def _is_uri(location: str) -> bool:
    return "://" in location


@dataclass(frozen=True)
class Settings:
    """Resolved workspace settings. Build with :func:`get_settings`; override with ``replace``."""

    project_root: Path = PROJECT_ROOT
    warehouse: str = str(PROJECT_ROOT / "warehouse")
    outputs: Path = PROJECT_ROOT / "outputs"
    timezone: str = DEFAULT_TIMEZONE
    reporting_currency: str = DEFAULT_CURRENCY
    home_country: str = DEFAULT_HOME_COUNTRY
    duckdb_memory_limit: str | None = None
    duckdb_threads: int | None = None
    duckdb_temp_directory: str | None = None
    engine: str = "duckdb"
    storage_options: dict[str, str] = field(default_factory=dict)

    @property
    def parameters_dir(self) -> Path:
        return self.project_root / "parameters"

    @property
    def notebooks_dir(self) -> Path:
        return self.project_root / "notebooks"

    @property
    def scheduling_dir(self) -> Path:
        return self.project_root / "scheduling"

    @property
    def warehouse_is_local(self) -> bool:
        return not _is_uri(self.warehouse)

    def with_warehouse(self, location: str | os.PathLike[str]) -> Settings:
        return replace(self, warehouse=_normalise_location(str(location)))


def _normalise_location(location: str) -> str:
    if _is_uri(location):
        return location.rstrip("/")
    return str(Path(location).expanduser().resolve())


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment (and ``.env`` at the project root), then ``overrides``."""
    _load_dotenv(PROJECT_ROOT / ".env")
    env = os.environ
    tz = env.get(ENV_TIMEZONE, DEFAULT_TIMEZONE)
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ConfigError(f"{ENV_TIMEZONE}={tz!r} is not an IANA time zone") from exc
    threads = env.get(ENV_DUCKDB_THREADS)
    settings = Settings(
        warehouse=_normalise_location(env.get(ENV_WAREHOUSE, str(PROJECT_ROOT / "warehouse"))),
        outputs=Path(env.get(ENV_OUTPUTS, str(PROJECT_ROOT / "outputs"))).expanduser().resolve(),
        timezone=tz,
        reporting_currency=env.get(ENV_CURRENCY, DEFAULT_CURRENCY).upper(),
        home_country=env.get(ENV_HOME_COUNTRY, DEFAULT_HOME_COUNTRY).upper(),
        duckdb_memory_limit=env.get(ENV_DUCKDB_MEMORY) or default_duckdb_memory_limit(),
        duckdb_threads=int(threads) if threads else None,
        duckdb_temp_directory=env.get(ENV_DUCKDB_TEMP) or default_duckdb_temp_directory(),
        engine=env.get(ENV_ENGINE, "duckdb"),
    )
    if overrides:
        if "warehouse" in overrides:
            overrides["warehouse"] = _normalise_location(str(overrides["warehouse"]))
        settings = replace(settings, **overrides)  # type: ignore[arg-type]
    if settings.engine not in {"duckdb", "spark"}:
        raise ConfigError(f"engine must be 'duckdb' or 'spark', not {settings.engine!r}")
    return settings
