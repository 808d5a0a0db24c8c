"""What a model is here: features from a warehouse snapshot, an out-of-time split, a baseline,
a scorecard, a registry entry, and predictions in the platform's shapes.

A model module subclasses :class:`Model` and registers it in ``analytics_lib.models.MODELS``.
``train()`` builds features from a snapshot, fits on the rows before the cutoff, scores the rows
after it next to a simple baseline, and returns a :class:`TrainResult`; ``predict()`` loads a
registered version and scores entities as of a date.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from analytics_lib.models.registry import LoadedModel, ModelMetadata, Registry, new_version
from analytics_lib.models.scoring import Scorecard, TimeSplit
from analytics_lib.warehouse import Snapshot, Warehouse


class ModelError(ValueError):
    """Bad input for a model (unknown entity, empty history, bad split, ...)."""


@dataclass
class RiskFactor:
    factor: str
    importance: float
    description: str
    value: float | str | None = None


@dataclass
class Action:
    strategy: str
    priority: str
    actions: list[str]
    expected_impact: float | None = None


@dataclass
class Prediction:
    """The platform's prediction shape, shared by every model."""

    entity_id: str
    probability: float | None
    risk_level: str
    confidence: float
    key_risk_factors: list[RiskFactor] = field(default_factory=list)
    recommended_actions: list[Action] = field(default_factory=list)
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["generated_at"] = self.generated_at.isoformat()
        return data


@dataclass
class TrainResult:
    model: Any
    scorecard: Scorecard
    features: list[str]
    params: dict[str, Any]
    rows: dict[str, int]
    split: TimeSplit


class Model(ABC):
    """A trainable, evaluable model over the warehouse."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: bump when the features change meaning, so older registered versions are refused
    feature_version: ClassVar[str]

    @abstractmethod
    def default_split(self, snapshot: Snapshot) -> TimeSplit:
        """A sensible out-of-time split for the data in the snapshot."""

    @abstractmethod
    def train(self, snapshot: Snapshot, split: TimeSplit, **params: Any) -> TrainResult:
        """Fit before ``split.cutoff``, score after it against a baseline."""

    @abstractmethod
    def predict(self, loaded: LoadedModel, snapshot: Snapshot, as_of: date | None = None,
                ids: list[str] | None = None, limit: int | None = None) -> list[Prediction]:
        """Predictions for entities (all eligible ones, or ``ids``) as of a date.

        Unknown ids raise :class:`ModelError` naming them; ``limit`` keeps the riskiest."""

    @abstractmethod
    def evaluate(self, loaded: LoadedModel, snapshot: Snapshot) -> dict[str, Any]:
        """Score a registered version again on the data after its cutoff that the snapshot holds
        now (same metrics and baseline as its training scorecard)."""

    # -- shared plumbing ------------------------------------------------------------------
    def fit_and_register(self, warehouse: Warehouse | None = None, registry: Registry | None = None,
                         cutoff: date | None = None, **params: Any) -> tuple[TrainResult, str]:
        warehouse = warehouse or Warehouse()
        registry = registry or Registry()
        with warehouse.snapshot() as snap:
            split = self.default_split(snap)
            if cutoff is not None:
                span = split.evaluation_end - split.cutoff
                end = min(split.evaluation_end, cutoff + span)
                if not split.train_start < cutoff < end:
                    raise ModelError(f"cutoff {cutoff} must fall between the data's start {split.train_start} "
                                     f"and its last day {split.evaluation_end}")
                split = TimeSplit(split.train_start, cutoff, end)
            result = self.train(snap, split, **params)
            meta = ModelMetadata(
                name=self.name, version=new_version(self.name), created_at=datetime.now(UTC).isoformat(),
                feature_set=result.features, feature_version=self.feature_version,
                training_window=split.to_dict(), warehouse_versions=dict(snap.versions),
                params=result.params, rows=result.rows,
            )
        registry.save(meta, result.model, result.scorecard.to_dict())
        return result, meta.version

    def load(self, registry: Registry | None = None, version: str | None = None) -> LoadedModel:
        return (registry or Registry()).load(self.name, version, feature_version=self.feature_version)


def data_range(snapshot: Snapshot, table: str = "transactions", column: str = "created_at") -> tuple[date, date]:
    """First and last UTC day with rows, or a ModelError for an empty table."""
    row = snapshot.con.execute(f'SELECT min("{column}"), max("{column}") FROM "{table}"').fetchall()[0]
    if row[0] is None:
        raise ModelError(f"no {table} in the warehouse: load data (or `payment-analytics demo-data`) first")
    first, last = row
    return _to_day(first), _to_day(last)


def _to_day(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def month_starts(first: date, last: date) -> list[date]:
    out, d = [], first.replace(day=1)
    while d <= last:
        out.append(d)
        d = (d.replace(day=28) + timedelta(days=4)).replace(day=1)
    return out


def read_table_file(path: str | Path, columns: list[str], text_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read ``columns`` of a CSV, CSV.gz or Parquet file for the any-data commands, with one-line
    errors for a missing file, an unreadable file, a missing column or no rows."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no such file: {path}")
    is_parquet = path.suffix.lower() in (".parquet", ".pq")
    try:
        if is_parquet:
            import pyarrow.parquet as pq

            header = pq.read_schema(path).names
        else:
            header = list(pd.read_csv(path, nrows=0).columns)
    except Exception as exc:  # unreadable, not a CSV, empty file
        raise ModelError(f"cannot read {path.name}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise ModelError(f"column {missing[0]!r} not in {path.name}; columns: {', '.join(map(str, header))}")
    if is_parquet:
        raw = pd.read_parquet(path, columns=columns)
    else:
        raw = pd.read_csv(path, usecols=columns, dtype={c: str for c in text_columns})
    if raw.empty:
        raise ModelError(f"{path.name} has no rows")
    return raw


def parse_dates(raw: pd.DataFrame, column: str) -> pd.Series:
    """The column as datetimes, or a ModelError counting the values that are not dates."""
    dates = pd.to_datetime(raw[column], errors="coerce", format="mixed")
    bad = dates.isna()
    if bad.any():
        example = raw.loc[bad, column].iloc[0]
        raise ModelError(f"column {column!r} has {int(bad.sum())} value(s) that are not dates (first: {example!r})")
    return dates


def parse_numbers(raw: pd.DataFrame, column: str) -> pd.Series:
    """The column as finite floats, or a ModelError counting the values that are not numbers."""
    values = pd.to_numeric(raw[column], errors="coerce")
    bad = values.isna() | ~np.isfinite(values.astype(float))
    if bad.any():
        example = raw.loc[bad, column].iloc[0]
        raise ModelError(f"column {column!r} has {int(bad.sum())} value(s) that are not numbers (first: {example!r})")
    return values.astype(float)
