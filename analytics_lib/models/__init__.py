"""Predictive models: churn, lifetime value, payment failure, fraud, revenue forecast and
payment-flow optimisation. Each is a :class:`~analytics_lib.models.base.Model` registered here by
name; the registry folder keeps every trained version with its scorecard.

Typical use::

    from analytics_lib import models
    result, version = models.get("churn").fit_and_register()
    predictions = models.predict("churn", limit=20)
    scores = models.score("fraud", start=date(2026, 11, 1), end=date(2026, 11, 27))  # a DataFrame
"""

from __future__ import annotations

import importlib
from datetime import date, datetime
from typing import Any

from analytics_lib.models.base import Model, ModelError, Prediction
from analytics_lib.models.registry import Registry, RegistryError

#: name -> "module:Class" (imported on first use)
MODELS: dict[str, str] = {
    "churn": "analytics_lib.models.churn:ChurnModel",
    "clv": "analytics_lib.models.clv:LifetimeValueModel",
    "payment_failure": "analytics_lib.models.failure:PaymentFailureModel",
    "fraud": "analytics_lib.models.fraud:FraudModel",
    "revenue_forecast": "analytics_lib.models.forecast:RevenueForecastModel",
    "payment_flow": "analytics_lib.models.funnel:PaymentFlowModel",
}


def names() -> list[str]:
    return list(MODELS)


def get(name: str) -> Model:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; models: {', '.join(MODELS)}")
    module_name, cls_name = MODELS[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)()


def predict(name: str, warehouse: Any = None, registry: Registry | None = None, version: str | None = None,
            as_of: date | None = None, ids: list[str] | None = None, limit: int | None = None) -> list[Prediction]:
    """Predictions of the latest (or a named) registered version of ``name``."""
    from analytics_lib.warehouse import Warehouse

    model = get(name)
    loaded = model.load(registry, version)
    with (warehouse or Warehouse()).snapshot() as snap:
        return model.predict(loaded, snap, as_of=as_of, ids=ids, limit=limit)


def score(name: str, warehouse: Any = None, registry: Registry | None = None, version: str | None = None,
          start: date | datetime | None = None, end: date | datetime | None = None) -> Any:
    """Batch scores (a DataFrame, one row per attempt) of the latest (or a named) registered
    version of ``name`` for the attempts created in ``[start, end)``; ``payment_failure`` and
    ``fraud`` only. Without ``end``: up to the data's last attempt; without ``start``: everything."""
    from datetime import timedelta

    from analytics_lib.warehouse import Warehouse

    model = get(name)
    if not hasattr(model, "score"):
        raise ModelError(f"{name} has no batch scoring; models with it: payment_failure, fraud")
    loaded = model.load(registry, version)
    with (warehouse or Warehouse()).snapshot() as snap:
        first, last = snap.con.sql("SELECT min(created_at), max(created_at) FROM transactions").fetchall()[0]
        if first is None:
            raise ModelError("no transactions in the warehouse")
        return model.score(loaded, snap, start or first, end or last + timedelta(microseconds=1))


__all__ = ["MODELS", "Model", "ModelError", "Prediction", "Registry", "RegistryError", "get", "names", "predict",
           "score"]
