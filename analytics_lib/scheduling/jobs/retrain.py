"""``builtin: retrain``: train models on the warehouse, score them against their baselines and
register the new versions (what ``payment-analytics models train`` does, for several models).
Every listed model is tried; the job fails, naming them, if any of them failed."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from analytics_lib.config import Settings
from analytics_lib.scheduling.jobs.base import JobKind, JobResult, Log, one_line

if TYPE_CHECKING:
    from analytics_lib.scheduling.config import Job


class RetrainOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: model names (default: every registered model)
    models: list[str] = Field(default_factory=list)
    #: model registry folder (default $PAYMENT_ANALYTICS_MODELS or models_registry/)
    registry: str | None = None


class RetrainJob(JobKind):
    name = "retrain"
    Options = RetrainOptions

    def check(self, job: Job, settings: Settings, cache: dict[str, Any]) -> list[tuple[str, str]]:
        found = super().check(job, settings, cache)
        if found:
            return found
        from analytics_lib.models import names

        known = names()
        return [(f"options.models.{i}", f"unknown model {m!r}; models: {', '.join(known)}")
                for i, m in enumerate(self.options(job).models) if m not in known]

    def run(self, job: Job, fire_time: datetime, settings: Settings, log: Log) -> JobResult:
        from analytics_lib import models
        from analytics_lib.models.registry import Registry
        from analytics_lib.warehouse import Warehouse

        opts = self.options(job)
        registry = Registry(opts.registry) if opts.registry else Registry()
        warehouse = Warehouse(settings.warehouse, settings)
        trained: dict[str, Any] = {}
        failed: dict[str, str] = {}
        for name in opts.models or models.names():
            log(f"training {name}")
            try:
                result, version = models.get(name).fit_and_register(warehouse, registry)
                card = result.scorecard.to_dict()
                trained[name] = {"version": version, "primary_metric": card.get("primary_metric"),
                                 "beats_baseline": card.get("beats_baseline")}
            except Exception as exc:  # noqa: BLE001 - one model's failure must not stop the others
                failed[name] = one_line(exc)
                log(f"{name} failed: {failed[name]}")
        detail = {"trained": trained, "failed": failed}
        if failed:
            names = ", ".join(f"{k} ({v})" for k, v in failed.items())
            return JobResult("failed", f"retraining failed for {names}", detail=detail)
        return JobResult("succeeded", detail=detail)
