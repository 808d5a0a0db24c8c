"""What every job kind provides, and what one attempt returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from analytics_lib.config import Settings

if TYPE_CHECKING:
    from analytics_lib.scheduling.config import Job

Log = Callable[[str], None]


class PermanentJobError(RuntimeError):
    """An attempt failed in a way another attempt cannot fix (bad parameters, unknown model)."""


@dataclass
class JobResult:
    status: str  # succeeded | failed
    error: str | None = None
    permanent: bool = False  # True: do not retry
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> JobResult:
        return cls(status=str(doc.get("status") or "failed"), error=doc.get("error"),
                   permanent=bool(doc.get("permanent")), detail=dict(doc.get("detail") or {}))


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobKind:
    """A kind of job. ``Options`` validates the job's ``options`` mapping."""

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions

    def options(self, job: Job) -> Any:
        return self.Options.model_validate(job.options or {})

    def check(self, job: Job, settings: Settings, cache: dict[str, Any]) -> list[tuple[str, str]]:
        """(field, message) for each problem found before the job ever runs."""
        try:
            self.options(job)
        except ValidationError as exc:
            return [(".".join(["options", *map(str, e["loc"])]),
                     "unknown field" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, "))
                    for e in exc.errors()]
        return []

    def run(self, job: Job, fire_time: datetime, settings: Settings, log: Log) -> JobResult:
        raise NotImplementedError


def one_line(exc: BaseException | str) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:1000]
