"""Loading and validating ``scheduling/schedules.yaml`` and ``scheduling/audiences.yaml``.

Everything that can be checked before a job runs is checked at load time, and every problem is
reported as ``<file>: job '<name>', field '<field>': <what is wrong>`` (or ``audience '<name>'``):
YAML syntax (with line and column), duplicate keys, unknown fields, cron lines, time zones,
notebooks and their parameters, output formats, audiences and their targets, built-in job options.

schedules.yaml::

    defaults:                      # optional; any job field below except the kind
      timezone: Europe/Istanbul
      on_failure: [scheduler_oncall]
    jobs:
      weekly_business:
        notebook: weekly_business  # a report in notebooks/reports (or its path)
        parameters: parameters/weekly_business/default.yaml
        cron: "0 9 * * 1"
        audience: management_team
      nightly_compaction:
        builtin: maintain          # or ingest, retrain, command
        options: {retention_hours: 168}
        cron: "30 3 * * *"

audiences.yaml::

    audiences:
      management_team:
        email: [cfo@example.com, coo@example.com]   # or {to: [...], cc: [...], attach: [pdf], max_size_mb: 10}
        folder: /srv/reports/management            # optional: a copy of each report
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from analytics_lib.config import Settings, get_settings
from analytics_lib.scheduling.cron import CronError, CronSchedule, parse_timezone

ENV_SCHEDULES = "PAYMENT_ANALYTICS_SCHEDULES"
ENV_AUDIENCES = "PAYMENT_ANALYTICS_AUDIENCES"
JOB_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
#: extra seconds a report attempt gets after its notebook timeout, for HTML/PDF rendering
RENDER_GRACE_S = 300


class ScheduleConfigError(ValueError):
    """schedules.yaml or audiences.yaml cannot be used; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        more = f" (and {len(errors) - 1} more: {'; '.join(errors[1:])})" if len(errors) > 1 else ""
        super().__init__(errors[0] + more)


# -- durations ------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|m|min|mins|h|hr|hours?|d|days?)?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"45m"``, ``"2h"`` or ``"1d"``."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a text like 45m, 2h")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (seconds, or e.g. 90s, 45m, 2h, 1d)")
        seconds = float(match.group(1)) * _UNIT_S[(match.group(2) or "s")[0].lower()]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


# -- models ---------------------------------------------------------------------------------------


class JobDefaults(BaseModel):
    """Fields a job inherits unless it sets them."""

    model_config = ConfigDict(extra="forbid")

    timezone: str | None = None
    formats: list[str] | None = None
    timeout: float = 1800
    retries: int = Field(default=2, ge=0, le=10)
    retry_backoff: float = 60
    on_failure: list[str] = Field(default_factory=list)
    catch_up: bool = True
    misfire_grace: float = 3600
    enabled: bool = True

    @field_validator("timeout", "retry_backoff", "misfire_grace", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0 seconds")
        return value

    @field_validator("formats", "on_failure", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value


class Job(JobDefaults):
    """One scheduled job: a report notebook, or a built-in job (``builtin`` + ``options``)."""

    name: str
    description: str = ""
    notebook: str | None = None
    builtin: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    parameters: str | None = None
    values: dict[str, Any] = Field(default_factory=dict)
    cron: str
    audience: list[str] = Field(default_factory=list)

    @field_validator("audience", mode="before")
    @classmethod
    def _audiences(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @property
    def kind(self) -> str:
        return "report" if self.notebook else str(self.builtin)

    @property
    def report(self) -> str:
        """The report name of a notebook job (``notebooks/reports/<report>.ipynb``)."""
        return Path(str(self.notebook)).stem

    @property
    def schedule(self) -> CronSchedule:
        return CronSchedule(self.cron, str(self.timezone))

    @property
    def hard_timeout(self) -> float:
        """Seconds after which an attempt's process is stopped whatever it is doing."""
        return self.timeout + (RENDER_GRACE_S if self.kind == "report" else 0)

    def describe(self) -> str:
        if self.kind == "report":
            return f"report {self.report}"
        return f"{self.kind}"


@dataclass(frozen=True)
class Audience:
    name: str
    description: str
    targets: dict[str, BaseModel]  # target name -> its validated options


@dataclass
class SchedulingConfig:
    jobs: dict[str, Job]
    audiences: dict[str, Audience]
    schedules_path: Path
    audiences_path: Path
    settings: Settings = field(default_factory=get_settings)

    def job(self, name: str) -> Job:
        if name not in self.jobs:
            raise ScheduleConfigError([f"{_show(self.schedules_path)}: no job {name!r}; jobs: {', '.join(self.jobs)}"])
        return self.jobs[name]


# -- YAML -----------------------------------------------------------------------------------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; a second job with the same name must be
    an error, not a replacement."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _show(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(get_settings().project_root))
    except ValueError:
        return str(path)


def read_yaml(path: Path) -> Any:
    where = _show(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScheduleConfigError([f"{where}: file not found"]) from None
    except OSError as exc:
        raise ScheduleConfigError([f"{where}: cannot read it: {exc.strerror or exc}"]) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScheduleConfigError([f"{where}: invalid YAML{at}: {problem}"]) from None


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top)"


def _pydantic_errors(prefix: str, exc: ValidationError, head: str | None = None) -> list[str]:
    out = []
    for err in exc.errors():
        loc = (head, *err["loc"]) if head else tuple(err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "missing (required)"
        out.append(f"{prefix}, field '{_loc(loc)}': {msg}")
    return out


# -- audiences ------------------------------------------------------------------------------------


def load_audiences(path: Path) -> dict[str, Audience]:
    from analytics_lib.scheduling.distribution import get_target, target_names

    where = _show(path)
    doc = read_yaml(path)
    if doc is None:
        doc = {}
    if not isinstance(doc, Mapping) or set(doc) - {"audiences"}:
        raise ScheduleConfigError([f"{where}: expected a mapping with one key, 'audiences'"])
    raw = doc.get("audiences") or {}
    if not isinstance(raw, Mapping):
        raise ScheduleConfigError([f"{where}: 'audiences' must be a mapping of audience name to targets"])
    errors: list[str] = []
    audiences: dict[str, Audience] = {}
    for name, spec in raw.items():
        prefix = f"{where}: audience {name!r}"
        if not isinstance(name, str) or not JOB_NAME.match(name):
            errors.append(f"{prefix}: names use lower-case letters, digits, _ and -")
            continue
        if not isinstance(spec, Mapping):
            errors.append(f"{prefix}: expected a mapping of targets ({', '.join(target_names())})")
            continue
        description = str(spec.get("description", ""))
        targets: dict[str, BaseModel] = {}
        for target, options in spec.items():
            if target == "description":
                continue
            if target not in target_names():
                errors.append(f"{prefix}, field {target!r}: unknown distribution target; targets: "
                              f"{', '.join(target_names())}")
                continue
            try:
                targets[target] = get_target(target).parse_options(options)
            except ValidationError as exc:
                errors.extend(_pydantic_errors(prefix, exc, head=target))
            except ValueError as exc:
                errors.append(f"{prefix}, field {target!r}: {exc}")
        if not targets and not any(e.startswith(prefix) for e in errors):
            errors.append(f"{prefix}: no targets; give at least one of {', '.join(target_names())}")
        audiences[name] = Audience(name, description, targets)
    if errors:
        raise ScheduleConfigError(errors)
    return audiences


# -- schedules ------------------------------------------------------------------------------------


def default_paths(settings: Settings) -> tuple[Path, Path]:
    schedules = Path(os.environ.get(ENV_SCHEDULES) or settings.scheduling_dir / "schedules.yaml")
    audiences = Path(os.environ.get(ENV_AUDIENCES) or schedules.parent / "audiences.yaml")
    return schedules, audiences


def load_config(schedules_path: Path | None = None, audiences_path: Path | None = None,
                settings: Settings | None = None) -> SchedulingConfig:
    """Read and validate both files; raise :class:`ScheduleConfigError` listing every problem."""
    settings = settings or get_settings()
    default_schedules, default_audiences = default_paths(settings)
    schedules_path = Path(schedules_path or default_schedules)
    audiences_path = Path(audiences_path or (schedules_path.parent / "audiences.yaml" if schedules_path
                                              != default_schedules else default_audiences))
    if not schedules_path.is_file():
        raise ScheduleConfigError([f"{_show(schedules_path)}: file not found"])
    audiences = load_audiences(audiences_path)
    jobs = load_jobs(schedules_path, audiences, settings)
    return SchedulingConfig(jobs=jobs, audiences=audiences, schedules_path=schedules_path,
                            audiences_path=audiences_path, settings=settings)


def load_jobs(path: Path, audiences: Mapping[str, Audience], settings: Settings) -> dict[str, Job]:
    where = _show(path)
    doc = read_yaml(path)
    if not isinstance(doc, Mapping):
        raise ScheduleConfigError([f"{where}: expected a mapping with 'jobs' (and optional 'defaults')"])
    unknown = set(doc) - {"defaults", "jobs", "version"}
    if unknown:
        raise ScheduleConfigError([f"{where}: unknown top-level field(s) {', '.join(map(repr, sorted(unknown)))}; "
                                   "expected 'defaults' and 'jobs'"])
    defaults_raw = doc.get("defaults") or {}
    try:
        defaults = JobDefaults.model_validate(defaults_raw)
    except ValidationError as exc:
        raise ScheduleConfigError(_pydantic_errors(f"{where}: defaults", exc)) from None
    raw_jobs = doc.get("jobs")
    if not isinstance(raw_jobs, Mapping) or not raw_jobs:
        raise ScheduleConfigError([f"{where}: 'jobs' must be a mapping of job name to job"])
    errors: list[str] = []
    jobs: dict[str, Job] = {}
    catalogue_cache: dict[str, Any] = {}
    for name, spec in raw_jobs.items():
        prefix = f"{where}: job {name!r}"
        if not isinstance(name, str) or not JOB_NAME.match(name):
            errors.append(f"{prefix}: job names use lower-case letters, digits, _ and - (at most 64)")
            continue
        if not isinstance(spec, Mapping):
            errors.append(f"{prefix}: expected a mapping with cron and notebook or builtin")
            continue
        inherited = defaults.model_dump(exclude_unset=True)
        if spec.get("builtin"):
            inherited.pop("formats", None)  # a report setting; built-in jobs have options instead
        merged = {**inherited, **dict(spec), "name": name}
        merged.setdefault("timezone", settings.timezone)
        if merged.get("timezone") is None:
            merged["timezone"] = settings.timezone
        try:
            job = Job.model_validate(merged)
        except ValidationError as exc:
            errors.extend(_pydantic_errors(prefix, exc))
            continue
        found = _check_job(job, audiences, settings, catalogue_cache)
        errors.extend(f"{prefix}, field '{fld}': {msg}" for fld, msg in found)
        if not found:
            jobs[name] = job
    if errors:
        raise ScheduleConfigError(errors)
    return jobs


def _check_job(job: Job, audiences: Mapping[str, Audience], settings: Settings,
               cache: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for every problem with one job."""
    from analytics_lib.scheduling.jobs import get_kind, kind_names

    found: list[tuple[str, str]] = []
    try:
        parse_timezone(str(job.timezone))
    except CronError as exc:
        found.append(("timezone", str(exc)))
    else:
        try:
            job.schedule  # noqa: B018 - parses and checks that it fires
        except CronError as exc:
            found.append(("cron", str(exc)))
    if bool(job.notebook) == bool(job.builtin):
        found.append(("notebook", "give either 'notebook' (a report) or 'builtin' "
                                  f"({', '.join(k for k in kind_names() if k != 'report')}), not both or neither"))
        return found
    if job.builtin and job.builtin not in kind_names():
        found.append(("builtin", f"unknown built-in job {job.builtin!r}; built-in jobs: "
                                 f"{', '.join(k for k in kind_names() if k != 'report')}"))
        return found
    for audience in job.audience:
        if audience not in audiences:
            found.append(("audience", f"unknown audience {audience!r}; audiences: {', '.join(audiences) or 'none'}"))
    for audience in job.on_failure:
        if audience not in audiences:
            found.append(("on_failure", f"unknown audience {audience!r}; audiences: {', '.join(audiences) or 'none'}"))
    if job.kind != "report":
        for fld in ("parameters", "values", "formats", "audience"):
            if getattr(job, fld):
                found.append((fld, f"only notebook (report) jobs take '{fld}'; built-in jobs take 'options'"))
    found.extend(get_kind(job.kind).check(job, settings, cache))
    return found
