"""The insight record, the rule catalogue (a registry keyed by rule id) and the context a rule
reads: the metric result, an optional session for extra queries, optional model outputs and
the options.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

import pandas as pd

from analytics_lib.insights import text
from analytics_lib.insights.options import InsightOptions
from analytics_lib.metrics import ComprehensiveAnalytics, MetricSection, MetricSession, Period
from analytics_lib.metrics.engine import load_queries as metric_queries

CATEGORIES = ("revenue_opportunity", "cost_optimization", "customer", "market", "risk")
IMPACTS = ("high", "medium", "low")
IMPACT_RANK = {"high": 3, "medium": 2, "low": 1}
#: days in an average month: estimates are per month whatever the period's length
DAYS_PER_MONTH = 30.4375


class InsightError(ValueError):
    """Insights cannot be generated from what was given (wrong session, bad model output, ...)."""


@dataclass
class Insight:
    """One finding: what the numbers say, why it matters, what to do and what it is worth.

    ``estimated_revenue`` is revenue gained or protected per month, in the reporting currency,
    if the recommended actions work under the assumptions stated in ``evidence``; None when the
    rule has no honest way to put money on it. ``confidence`` is 0..1; ``confidence_basis``
    says what it rests on (a test's p-value, a posterior probability or the sample size).
    """

    id: str
    category: str
    title: str
    text: str
    business_impact: str
    confidence: float
    recommended_actions: list[str]
    estimated_revenue: float | None
    evidence: dict[str, Any] = field(default_factory=dict)
    confidence_basis: str = ""

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise InsightError(f"insight {self.id}: category must be one of {', '.join(CATEGORIES)}")
        if self.business_impact not in IMPACTS:
            raise InsightError(f"insight {self.id}: business_impact must be one of {', '.join(IMPACTS)}")
        if not 0.0 <= self.confidence <= 1.0:
            raise InsightError(f"insight {self.id}: confidence must be within 0..1, got {self.confidence}")
        if self.estimated_revenue is not None and not math.isfinite(self.estimated_revenue):
            raise InsightError(f"insight {self.id}: estimated_revenue must be finite or None")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe values (numpy scalars -> Python, NaN -> None)."""
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NaT:
        return None
    return value


# -- the catalogue --------------------------------------------------------------------------------

RuleFunction = Callable[["RuleContext"], "Insight | None"]


@dataclass(frozen=True)
class Rule:
    """A catalogue entry: a function from the context to at most one insight."""

    id: str
    category: str
    description: str
    #: what the rule cannot run without: "session" and/or "model:<name>"
    needs: tuple[str, ...]
    function: RuleFunction
    #: whether it queries the previous period: such rules run after the others, so that the
    #: session changes scope once instead of back and forth (each change rebuilds scope tables)
    previous_period: bool = False

    def missing(self, ctx: RuleContext) -> list[str]:
        out = []
        for need in self.needs:
            if need == "session" and ctx.session is None:
                out.append("a metric session")
            elif need.startswith("model:") and need[6:] not in ctx.models:
                out.append(f"the {need[6:]} model output")
        return out


RULES: dict[str, Rule] = {}


def rule(rule_id: str, category: str, description: str, needs: tuple[str, ...] = (),
         previous_period: bool = False) -> Callable[[RuleFunction], RuleFunction]:
    """Register a rule function in the catalogue under ``rule_id`` (``previous_period``: it
    queries the previous period through the session)."""
    if category not in CATEGORIES:
        raise InsightError(f"rule {rule_id}: unknown category {category!r}")

    def register(function: RuleFunction) -> RuleFunction:
        if rule_id in RULES:
            raise InsightError(f"rule {rule_id!r} is registered twice")
        RULES[rule_id] = Rule(rule_id, category, description, tuple(needs), function, previous_period)
        return function

    return register


# -- the context ----------------------------------------------------------------------------------


class ResultReader:
    """Reading one metric result: its sections' summary numbers and tables, trends, money in its
    currency. The rules (through :class:`RuleContext`) and the executive summary read it alike."""

    result: ComprehensiveAnalytics

    @property
    def period(self) -> Period:
        return self.result.period

    @property
    def currency(self) -> str:
        return self.result.currency

    def summary(self, section: str) -> dict[str, Any]:
        """A section's summary (``"headline"``: the result's own headline numbers)."""
        if section == "headline":
            return self.result.summary
        s = self.result.sections.get(section)
        return s.summary if isinstance(s, MetricSection) else {}

    def table(self, section: str, name: str) -> pd.DataFrame:
        s = self.result.sections.get(section)
        if not isinstance(s, MetricSection):
            return pd.DataFrame()
        frame = s.tables.get(name)
        return frame if isinstance(frame, pd.DataFrame) else pd.DataFrame()

    def value(self, section: str, key: str) -> float | None:
        """A summary number as a float; None when missing or not finite."""
        return number(self.summary(section).get(key))

    def raw(self, section: str, key: str) -> Any:
        """A summary value as it is (a name, a code, ...)."""
        return self.summary(section).get(key)

    def trend(self, metric: str) -> Any:
        return next((t for t in self.result.trends if t.metric == metric), None)

    def money(self, value: float) -> str:
        return text.money(value, self.currency)


@dataclass
class RuleContext(ResultReader):
    """What a rule reads. Extra queries go through :meth:`query` (the package's own SQL, in the
    result's scope) or :meth:`previous` (the metric layer's named queries for the previous period),
    both cached so that rules sharing a query run it once."""

    result: ComprehensiveAnalytics
    session: MetricSession | None
    models: Mapping[str, Any]
    options: InsightOptions
    _cache: dict[Any, Any] = field(default_factory=dict)

    @property
    def monthly_factor(self) -> float:
        """Multiplies a total of the period into a per-month figure."""
        return DAYS_PER_MONTH / self.period.days

    def monthly_gross(self) -> float | None:
        gross = self.value("revenue", "gross_revenue")
        return None if gross is None else gross * self.monthly_factor

    def impact_from_revenue(self, estimated: float | None, default: str = "medium") -> str:
        """high / medium / low from the estimate's share of the month's gross revenue."""
        gross = self.monthly_gross()
        if estimated is None or not gross:
            return default
        share = estimated / gross
        if share >= self.options.impact_high_share:
            return "high"
        if share >= self.options.impact_medium_share:
            return "medium"
        return "low"

    # -- extra queries ----------------------------------------------------------------------
    def query(self, name: str, params: Mapping[str, Any] | None = None, period: Period | None = None) -> pd.DataFrame:
        """Run a named query of ``insights/sql/insights.sql`` in the result's filters and currency
        over ``period`` (default the result's period)."""
        period = period or self.period
        key = ("query", name, period, _freeze(params))
        if key in self._cache:
            return self._cache[key]
        session = self._session()
        sql = load_queries()[name]
        with session.scoped(period, self.result.filters, self.currency):
            sql = _inline_metric_queries(sql, session)
            for needed in _requires(sql):
                session.ensure(needed)
            frame = session.con.execute(sql, dict(params or {})).df()
        self._cache[key] = frame
        return frame

    def previous(self, family: str, name: str, params: Mapping[str, Any] | None = None,
                 one_row: bool = False) -> Any:
        """A named query of the metric layer (``metrics/sql/<family>.sql``) for the previous period."""
        key = ("previous", family, name, _freeze(params), one_row)
        if key in self._cache:
            return self._cache[key]
        session = self._session()
        with session.scoped(self.period.previous(), self.result.filters, self.currency):
            out = session.row(family, name, params) if one_row else session.query(family, name, params)
        self._cache[key] = out
        return out

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def _session(self) -> MetricSession:
        if self.session is None:
            raise InsightError("this rule needs a metric session")
        return self.session


def _freeze(value: Any) -> Any:
    """A hashable stand-in for query parameters (cache keys)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set)):
        return tuple(_freeze(v) for v in value)
    return value


def number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def load_queries() -> dict[str, str]:
    return _QUERIES or _load()


_QUERIES: dict[str, str] = {}


def _load() -> dict[str, str]:
    text = resources.files("analytics_lib.insights").joinpath("sql", "insights.sql").read_text("utf-8")
    parts = re.split(r"^--\s*name:\s*(\w+)\s*$", text, flags=re.M)
    _QUERIES.update({n: body.strip().rstrip(";") for n, body in zip(parts[1::2], parts[2::2], strict=True)})
    return _QUERIES


def _inline_metric_queries(sql: str, session: MetricSession) -> str:
    """Replace ``{family.query}`` by that metric query's text, after building the scoped tables it
    requires: the package reads the metric layer's named outputs, not its internal tables."""

    def inline(match: re.Match[str]) -> str:
        family, name = match.group(1), match.group(2)
        text = metric_queries(family)[name]
        for needed in _requires(text):
            session.ensure(needed)
        return text

    return re.sub(r"\{(\w+)\.(\w+)\}", inline, sql)


def _requires(sql: str) -> list[str]:
    names: list[str] = []
    for match in re.finditer(r"^--\s*requires:\s*(.+)$", sql, flags=re.M):
        names += [n.strip() for n in match.group(1).split(",") if n.strip()]
    return names
