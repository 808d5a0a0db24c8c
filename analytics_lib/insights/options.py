"""Every threshold, minimum sample and planning assumption of the insight rules, in one place.

Each constant is the default of the :class:`InsightOptions` field of the same name in lower case;
docs/insights.md explains how each rule uses them. Rates are fractions (0.009 = 0.9 %), money is
in major units of the reporting currency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

# -- ranking ------------------------------------------------------------------------------------
#: an insight whose estimated monthly revenue is at least this share of the month's gross revenue
#: has high business impact; at least IMPACT_MEDIUM_SHARE medium; below that low
IMPACT_HIGH_SHARE = 0.02
IMPACT_MEDIUM_SHARE = 0.005

# -- revenue opportunity: high-value segments ----------------------------------------------------
#: a segment is high-value when its value per customer exceeds this multiple of the average
HIGH_VALUE_LTV_MULTIPLE = 1.5
#: customers a segment needs before its average is trusted
HIGH_VALUE_MIN_SEGMENT_CUSTOMERS = 30
#: customers behind the overall average
HIGH_VALUE_MIN_CUSTOMERS = 200
#: planning assumption for the estimate: the segment's monthly revenue grows by this share
SEGMENT_GROWTH_ASSUMPTION = 0.20

# -- revenue opportunity: pricing headroom ------------------------------------------------------
#: days of one-off purchases (ending with the period) the price elasticity is measured over
PRICING_LOOKBACK_DAYS = 365
#: headroom is claimed only when the measured elasticity is above minus this (|E| below 0.5)
PRICING_MAX_ELASTICITY = 0.5
#: ... and the probability that demand is inelastic (E > -1) is at least this
PRICING_MIN_INELASTIC_PROBABILITY = 0.95
#: days with purchases, discounted purchases and full-price purchases the measurement needs
PRICING_MIN_DAYS = 60
PRICING_MIN_DISCOUNTED = 100
PRICING_MIN_FULL_PRICE = 300
#: standard deviation of the daily log price index below which prices barely moved
PRICING_MIN_PRICE_SPREAD = 0.02
#: the price increase the estimate (and the recommended test) is about
PRICE_TEST_INCREASE = 0.05

# -- cost optimisation: providers ---------------------------------------------------------------
#: attempts each provider needs in the method/country cells both of them serve
PROVIDER_MIN_ATTEMPTS = 200
#: attempts a provider needs in a cell for the cell to count as served
PROVIDER_MIN_CELL_ATTEMPTS = 20
#: the cheaper provider's fee rate must be lower by at least this (0.005 = half a point)
PROVIDER_MIN_FEE_GAP = 0.005
#: planning assumption: share of the shared volume that can be routed to the cheaper provider
PROVIDER_SHIFT_SHARE = 0.5
#: success-rate tolerance in the stated confidence (P(cheaper is at most this much worse))
PROVIDER_SUCCESS_MARGIN = 0.01
#: the monthly saving must be at least this share of gross revenue to be worth a project
PROVIDER_MIN_SAVING_SHARE = 0.001

# -- customer: churn-risk pockets (churn model output) ------------------------------------------
#: scored subscribers the model output needs
CHURN_MIN_SCORED = 200
#: subscribers a pocket needs
CHURN_POCKET_MIN_CUSTOMERS = 30
#: a pocket's mean churn probability must be at least this multiple of the overall mean
CHURN_POCKET_MIN_LIFT = 1.5
#: ... and differ from it with a p-value below this (z-test of the mean)
CHURN_POCKET_P_VALUE = 0.01
#: planning assumption: share of the expected churned MRR a retention campaign keeps
RETENTION_SAVE_RATE = 0.25

# -- customer: churn rate rising ----------------------------------------------------------------
CHURN_RISE_MIN_SUBSCRIBERS = 200
CHURN_RISE_MIN_CHURNED = 10
#: relative rise of the subscriber churn rate that is worth a headline (0.2 = a fifth higher)
CHURN_RISE_MIN_RELATIVE = 0.20
CHURN_RISE_P_VALUE = 0.05

# -- customer: cohort retention -----------------------------------------------------------------
#: the latest cohorts with a complete first month compared with the earlier ones
COHORT_RECENT = 3
COHORT_MIN_EARLIER = 3
COHORT_MIN_RECENT_CUSTOMERS = 150
COHORT_MIN_EARLIER_CUSTOMERS = 300
COHORT_MIN_RELATIVE_CHANGE = 0.10
COHORT_P_VALUE = 0.05

# -- market: country and payment-method shares --------------------------------------------------
#: payments (countries: successful payments; methods: attempts) per period behind the shares
SHARE_MIN_TOTAL = 500
#: a country or method needs this many in the current or the previous period
SHARE_MIN_ITEM = 50
SHARE_MIN_CHANGE_POINTS = 0.01
SHARE_MIN_RELATIVE_CHANGE = 0.15
#: family-wise significance level; each item is tested at this level / items tested (Bonferroni)
SHARE_FAMILY_ALPHA = 0.05

# -- risk: chargebacks and card-network monitoring programmes ------------------------------------
#: Visa's dispute monitoring: disputes / sales transactions of the month, with a count floor
VISA_DISPUTE_THRESHOLD = 0.009
VISA_MIN_DISPUTES = 100
#: Mastercard's excessive chargeback monitoring: chargebacks / transactions, with a count floor
MASTERCARD_CHARGEBACK_THRESHOLD = 0.01
MASTERCARD_MIN_CHARGEBACKS = 100
#: "approaching" starts at this fraction of a threshold
CHARGEBACK_WARNING_FRACTION = 0.75
#: successful payments and disputes a provider (and card brand) needs before its ratio counts
CHARGEBACK_MIN_SALES = 200
CHARGEBACK_MIN_DISPUTES = 5

# -- risk: fraud spikes -------------------------------------------------------------------------
FRAUD_MIN_SCORED = 500
FRAUD_MIN_FLAGGED = 20
FRAUD_MIN_CONFIRMED = 10
FRAUD_MIN_RELATIVE_INCREASE = 0.25
FRAUD_P_VALUE = 0.01


class InsightOptionsError(ValueError):
    """An option name or value the rules cannot use."""


@dataclass(frozen=True)
class InsightOptions:
    """Thresholds and assumptions of the rules (defaults: the module constants)."""

    impact_high_share: float = IMPACT_HIGH_SHARE
    impact_medium_share: float = IMPACT_MEDIUM_SHARE
    high_value_ltv_multiple: float = HIGH_VALUE_LTV_MULTIPLE
    high_value_min_segment_customers: int = HIGH_VALUE_MIN_SEGMENT_CUSTOMERS
    high_value_min_customers: int = HIGH_VALUE_MIN_CUSTOMERS
    segment_growth_assumption: float = SEGMENT_GROWTH_ASSUMPTION
    pricing_lookback_days: int = PRICING_LOOKBACK_DAYS
    pricing_max_elasticity: float = PRICING_MAX_ELASTICITY
    pricing_min_inelastic_probability: float = PRICING_MIN_INELASTIC_PROBABILITY
    pricing_min_days: int = PRICING_MIN_DAYS
    pricing_min_discounted: int = PRICING_MIN_DISCOUNTED
    pricing_min_full_price: int = PRICING_MIN_FULL_PRICE
    pricing_min_price_spread: float = PRICING_MIN_PRICE_SPREAD
    price_test_increase: float = PRICE_TEST_INCREASE
    provider_min_attempts: int = PROVIDER_MIN_ATTEMPTS
    provider_min_cell_attempts: int = PROVIDER_MIN_CELL_ATTEMPTS
    provider_min_fee_gap: float = PROVIDER_MIN_FEE_GAP
    provider_shift_share: float = PROVIDER_SHIFT_SHARE
    provider_success_margin: float = PROVIDER_SUCCESS_MARGIN
    provider_min_saving_share: float = PROVIDER_MIN_SAVING_SHARE
    churn_min_scored: int = CHURN_MIN_SCORED
    churn_pocket_min_customers: int = CHURN_POCKET_MIN_CUSTOMERS
    churn_pocket_min_lift: float = CHURN_POCKET_MIN_LIFT
    churn_pocket_p_value: float = CHURN_POCKET_P_VALUE
    retention_save_rate: float = RETENTION_SAVE_RATE
    churn_rise_min_subscribers: int = CHURN_RISE_MIN_SUBSCRIBERS
    churn_rise_min_churned: int = CHURN_RISE_MIN_CHURNED
    churn_rise_min_relative: float = CHURN_RISE_MIN_RELATIVE
    churn_rise_p_value: float = CHURN_RISE_P_VALUE
    cohort_recent: int = COHORT_RECENT
    cohort_min_earlier: int = COHORT_MIN_EARLIER
    cohort_min_recent_customers: int = COHORT_MIN_RECENT_CUSTOMERS
    cohort_min_earlier_customers: int = COHORT_MIN_EARLIER_CUSTOMERS
    cohort_min_relative_change: float = COHORT_MIN_RELATIVE_CHANGE
    cohort_p_value: float = COHORT_P_VALUE
    share_min_total: int = SHARE_MIN_TOTAL
    share_min_item: int = SHARE_MIN_ITEM
    share_min_change_points: float = SHARE_MIN_CHANGE_POINTS
    share_min_relative_change: float = SHARE_MIN_RELATIVE_CHANGE
    share_family_alpha: float = SHARE_FAMILY_ALPHA
    visa_dispute_threshold: float = VISA_DISPUTE_THRESHOLD
    visa_min_disputes: int = VISA_MIN_DISPUTES
    mastercard_chargeback_threshold: float = MASTERCARD_CHARGEBACK_THRESHOLD
    mastercard_min_chargebacks: int = MASTERCARD_MIN_CHARGEBACKS
    chargeback_warning_fraction: float = CHARGEBACK_WARNING_FRACTION
    chargeback_min_sales: int = CHARGEBACK_MIN_SALES
    chargeback_min_disputes: int = CHARGEBACK_MIN_DISPUTES
    fraud_min_scored: int = FRAUD_MIN_SCORED
    fraud_min_flagged: int = FRAUD_MIN_FLAGGED
    fraud_min_confirmed: int = FRAUD_MIN_CONFIRMED
    fraud_min_relative_increase: float = FRAUD_MIN_RELATIVE_INCREASE
    fraud_p_value: float = FRAUD_P_VALUE
    #: run only these rule ids (None: every rule in the catalogue)
    rules: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "rules":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InsightOptionsError(f"option {f.name} must be a number, not {value!r}")
            if value < 0:
                raise InsightOptionsError(f"option {f.name} must not be negative, got {value!r}")
            if f.type in ("int", int) and value != int(value):
                raise InsightOptionsError(f"option {f.name} must be a whole number, got {value!r}")
        if self.impact_medium_share > self.impact_high_share:
            raise InsightOptionsError("impact_medium_share must not exceed impact_high_share")
        if not 0 < self.chargeback_warning_fraction <= 1:
            raise InsightOptionsError("chargeback_warning_fraction must be in (0, 1]")
        for name in ("provider_shift_share", "retention_save_rate", "pricing_min_inelastic_probability",
                     "share_family_alpha", "churn_pocket_p_value", "churn_rise_p_value", "cohort_p_value",
                     "fraud_p_value"):
            if not 0 < getattr(self, name) <= 1:
                raise InsightOptionsError(f"option {name} must be in (0, 1]")
        if self.cohort_recent < 1:
            raise InsightOptionsError("cohort_recent must be at least 1")
        if self.rules is not None:
            object.__setattr__(self, "rules", tuple(self.rules))

    @classmethod
    def of(cls, options: InsightOptions | Mapping[str, Any] | None) -> InsightOptions:
        """Options from an instance, a mapping of field names (e.g. a parameters file) or None."""
        if options is None:
            return cls()
        if isinstance(options, InsightOptions):
            return options
        if not isinstance(options, Mapping):
            raise InsightOptionsError(f"options must be InsightOptions or a mapping, not {type(options).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise InsightOptionsError(f"unknown insight option(s): {', '.join(unknown)}")
        return cls(**dict(options))
