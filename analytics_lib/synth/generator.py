"""Synthetic demo data: a seeded, vectorised simulation of an online-education payment business.

The simulated platform (home country Turkey, business time zone Europe/Istanbul) sells one-off
courses and subscription plans in several countries, currencies and through several payment
providers. The simulation runs month by month over numpy arrays that hold the state of every
customer, payment instrument and subscription; inside a month everything is vectorised (no
Python loop per payment). Each month's rows are buffered and written through
:meth:`analytics_lib.warehouse.Warehouse.upsert` (or, into a new warehouse with ``bulk=True``,
appended by :func:`analytics_lib.warehouse.bulk.bulk_append`), so the buffers stay bounded; the
simulation's own state grows with the customer count (about 0.2 GB per million transactions).

The data is built to carry signal for the reports and models that use it by default:

* acquisition grows ~4 % a month with yearly (January, back-to-school, Black Friday) and weekly
  seasonality, and paid acquisitions are proportional to the day's campaign spend;
* payment failures depend on method, provider, country, amount, card age and expiry, hour of day
  and fraud; failed renewals go through dunning (retries), unrecovered ones cancel the
  subscription;
* voluntary churn rises with payment failures, support tickets and low engagement, and
  engagement (``user_activity``) drops the month before a cancellation; customers with a failed
  payment or on their way out write in again and again (a tail of heavy ticket writers);
* fraud (card testing bursts, stolen-card buyers) produces risk scores and rule hits that
  correlate with later fraudulent chargebacks and confirmed alerts, imperfectly.

Every rate and weight is a named constant below so the documentation can quote it.
Same arguments give identical table contents: all randomness comes from
``np.random.default_rng`` streams derived from the seed, and no wall-clock time enters the data
(only the warehouse's own system columns and the ``ingest_batches`` load record carry it).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
import zlib
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analytics_lib.config import DEFAULT_HOME_COUNTRY, DEFAULT_TIMEZONE
from analytics_lib.warehouse.schema import TABLES
from analytics_lib.warehouse.tables import Warehouse, WriteResult, new_batch_id, versions_json

log = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]

# =============================================================================================
# Time units (all timestamps are int64 microseconds since the Unix epoch, UTC)
# =============================================================================================
SECOND_US = 1_000_000
MINUTE_US = 60 * SECOND_US
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
_EPOCH = dt.date(1970, 1, 1)

# =============================================================================================
# The business
# =============================================================================================
BUSINESS_TIMEZONE = DEFAULT_TIMEZONE  # Europe/Istanbul: hour-of-day patterns are local time
HOME_COUNTRY = DEFAULT_HOME_COUNTRY  # TR

CURRENCIES = ("USD", "TRY", "EUR", "GBP")

#: country, share of new customers, charge currency, local price level (x USD list price),
#: mobile share of devices, CAC factor (x channel CAC), payment-decline logit effect,
#: churn logit effect
COUNTRIES: tuple[tuple[str, float, str, float, float, float, float, float], ...] = (
    ("TR", 0.36, "TRY", 0.55, 0.62, 0.45, 0.20, 0.10),
    ("US", 0.15, "USD", 1.00, 0.45, 1.00, -0.10, 0.00),
    ("GB", 0.07, "GBP", 1.00, 0.45, 1.00, -0.20, -0.05),
    ("DE", 0.07, "EUR", 1.00, 0.40, 1.00, -0.20, -0.10),
    ("FR", 0.05, "EUR", 1.00, 0.45, 0.95, -0.10, 0.00),
    ("NL", 0.03, "EUR", 1.00, 0.40, 1.00, -0.30, -0.10),
    ("ES", 0.04, "EUR", 0.90, 0.50, 0.85, 0.00, 0.05),
    ("IT", 0.04, "EUR", 0.90, 0.50, 0.85, 0.00, 0.05),
    ("BR", 0.05, "USD", 0.60, 0.60, 0.50, 0.50, 0.20),
    ("IN", 0.06, "USD", 0.50, 0.68, 0.35, 0.60, 0.25),
    ("PL", 0.03, "USD", 0.80, 0.50, 0.70, 0.10, 0.05),
    ("CA", 0.03, "USD", 1.00, 0.45, 1.00, -0.10, 0.00),
    ("AZ", 0.02, "USD", 0.60, 0.60, 0.50, 0.40, 0.15),
)
#: countries whose cards count as domestic for Adyen (EEA account)
EEA_COUNTRIES = ("DE", "FR", "NL", "ES", "IT", "PL")

DEVICES = ("desktop", "mobile", "tablet")
TABLET_SHARE = 0.07

# ---- catalogue ------------------------------------------------------------------------------
#: courses: slug, name, category, USD list price, popularity weight, launch (None = on sale
#: before the window; a number = launched at that fraction of the window)
COURSES: tuple[tuple[str, str, str, float, float, float | None], ...] = (
    ("python-for-beginners", "Python for Beginners", "programming", 49, 10.0, None),
    ("javascript-complete", "The Complete JavaScript Course", "programming", 59, 8.0, None),
    ("react-frontend", "React Front-End Development", "programming", 79, 6.0, None),
    ("sql-for-analysts", "SQL for Analysts", "programming", 39, 7.0, None),
    ("java-masterclass", "Java Masterclass", "programming", 89, 4.0, None),
    ("go-backend", "Backend Services in Go", "programming", 99, 2.0, 0.40),
    ("data-science-bootcamp", "Data Science Bootcamp", "data_science", 149, 6.0, None),
    ("machine-learning-a-z", "Machine Learning A-Z", "data_science", 129, 6.0, None),
    ("deep-learning-pytorch", "Deep Learning with PyTorch", "data_science", 179, 3.0, None),
    ("excel-for-business", "Excel for Business", "data_science", 29, 8.0, None),
    ("power-bi-dashboards", "Power BI Dashboards", "data_science", 49, 4.0, None),
    ("generative-ai-practical", "Practical Generative AI", "data_science", 99, 6.0, 0.30),
    ("ui-ux-fundamentals", "UI/UX Fundamentals", "design", 69, 4.0, None),
    ("figma-masterclass", "Figma Masterclass", "design", 49, 4.0, None),
    ("photoshop-essentials", "Photoshop Essentials", "design", 39, 3.0, None),
    ("motion-design", "Motion Design", "design", 89, 1.5, None),
    ("digital-marketing", "Digital Marketing", "business", 59, 5.0, None),
    ("project-management-pmp", "Project Management (PMP)", "business", 119, 3.0, None),
    ("startup-finance", "Startup Finance", "business", 79, 2.0, None),
    ("ecommerce-launch", "Launch Your E-commerce Store", "business", 69, 3.0, None),
    ("english-b1-b2", "English B1-B2", "languages", 39, 9.0, None),
    ("ielts-preparation", "IELTS Preparation", "languages", 59, 5.0, None),
    ("german-a1", "German A1", "languages", 29, 4.0, None),
    ("spanish-beginners", "Spanish for Beginners", "languages", 29, 3.0, None),
    ("business-english", "Business English", "languages", 49, 3.0, 0.65),
    ("yks-mathematics", "YKS Mathematics", "exam_prep", 19, 7.0, None),
    ("kpss-complete", "KPSS Complete Preparation", "exam_prep", 24, 4.0, None),
    ("ales-preparation", "ALES Preparation", "exam_prep", 19, 2.0, 0.55),
    ("public-speaking", "Public Speaking", "personal_development", 29, 2.0, None),
    ("productivity-systems", "Productivity Systems", "personal_development", 19, 2.0, None),
)
#: course withdrawn from sale at this fraction of the window (products.active = false)
RETIRED_COURSE = ("ecommerce-launch", 0.60)
#: category popularity multiplier for Turkish buyers (others get the inverse for exam prep)
TR_CATEGORY_BOOST = {"exam_prep": 3.0, "languages": 1.4}
NON_TR_EXAM_PREP_FACTOR = 0.03

#: plans: id, name, tier, billing interval (months), USD list price, trial days
PLANS: tuple[tuple[str, str, str, int, float, int], ...] = (
    ("plan_basic_monthly", "Basic (monthly)", "basic", 1, 9.99, 7),
    ("plan_basic_annual", "Basic (annual)", "basic", 12, 99.99, 0),
    ("plan_pro_monthly", "Pro (monthly)", "pro", 1, 19.99, 14),
    ("plan_pro_annual", "Pro (annual)", "pro", 12, 199.99, 14),
    ("plan_team_monthly", "Team (monthly)", "team", 1, 49.99, 0),
    ("plan_team_annual", "Team (annual)", "team", 12, 499.99, 0),
)
TIER_WEIGHTS = (0.50, 0.40, 0.10)  # basic, pro, team at subscription start
ANNUAL_SHARE = 0.22  # share of new subscriptions on an annual plan
ANNUAL_SHARE_TR = 0.14
PLAN_UPGRADE = {0: 2, 2: 4, 1: 3, 3: 5}  # plan index -> next tier, same interval
PLAN_DOWNGRADE = {2: 0, 4: 2, 3: 1, 5: 3}
PRICE_REVIEW_MONTHS = 3  # local prices are re-derived from FX every quarter
PLATFORM_LAUNCH_DAYS = 730  # the plans went on sale this long before the window

# ---- discount codes -------------------------------------------------------------------------
WELCOME_CODE = ("WELCOME10", 10.0)  # first course purchase
STUDENT_CODE = ("STUDENT20", 20.0)  # permanent subscription discount
WINBACK_CODE = ("WINBACK25", 25.0)  # permanent discount for returning subscribers
TEAM_CODE = ("TEAM15", 15.0)  # permanent discount on team plans
#: seasonal one-off course codes: prefix, percent, (first month, day), (last month, day), use rate
SEASONAL_COURSE_CODES = (
    ("NEWYEAR", 25.0, (1, 1), (1, 10), 0.40),
    ("BTS", 20.0, (9, 1), (9, 15), 0.35),
)
BLACK_FRIDAY_COURSE_DISCOUNT = 40.0  # BF<yy>, valid Black Friday week
BLACK_FRIDAY_SUBSCRIPTION_DISCOUNT = 30.0  # BFSUB<yy>, permanent, subscriptions started in BF week
BLACK_FRIDAY_CODE_USE = 0.60
BLACK_FRIDAY_SUB_CODE_USE = 0.50
WELCOME_CODE_USE = 0.25
STUDENT_CODE_USE = 0.06
STUDENT_CODE_USE_TR = 0.10
WINBACK_CODE_USE = 0.35
TEAM_CODE_USE = 0.25

# ---- FX -------------------------------------------------------------------------------------
FX_HISTORY_DAYS = 30  # fx_rates also cover this many days before the window
FX_REFERENCE_DATE = dt.date(2025, 1, 1)
TRY_PER_USD_AT_REFERENCE = 35.4
TRY_ANNUAL_DEPRECIATION = 0.25  # TRY loses ~25 % a year against USD (log drift)
EUR_USD_MEAN, GBP_USD_MEAN = 1.10, 1.29
FX_DAILY_VOLATILITY = 0.004
FX_MEAN_REVERSION = 0.01  # per day, for EUR and GBP
TRY_NOISE_PERSISTENCE = 0.97

# ---- payments -------------------------------------------------------------------------------
METHODS = ("card", "paypal", "apple_pay", "google_pay", "bank_transfer")
M_CARD, M_PAYPAL, M_APPLE, M_GOOGLE, M_BANK = range(5)
#: saved-instrument mix by country group: card, paypal, apple_pay, google_pay
METHOD_MIX = {
    "TR": (0.88, 0.00, 0.07, 0.05),  # PayPal does not operate in Turkey
    "US": (0.62, 0.18, 0.14, 0.06),
    "EU": (0.62, 0.22, 0.10, 0.06),
    "OTHER": (0.72, 0.12, 0.06, 0.10),
}
#: share of one-off course purchases paid by bank transfer (EFT/SEPA)
BANK_TRANSFER_SHARE = {"TR": 0.08, "DE": 0.06, "NL": 0.06}
BANK_TRANSFER_SHARE_OTHER = 0.02
BRANDS = ("visa", "mastercard", "amex", "troy")
BRAND_MIX = {"TR": (0.45, 0.43, 0.02, 0.10), "US": (0.55, 0.30, 0.15, 0.0), "OTHER": (0.55, 0.38, 0.07, 0.0)}
FOREIGN_CARD_SHARE = 0.05  # cards issued outside the buyer's country
TRAVELLER_SHARE = 0.03  # customer-initiated payments made from an IP in another country
CARD_EXPIRY_MONTHS_NEW = (1, 48)  # months to expiry of a card first seen at signup
CARD_EXPIRY_MONTHS_UPDATED = (12, 60)
ACCOUNT_UPDATER_RATE = 0.50  # visa/mastercard expiries refreshed silently before a renewal

PROVIDERS = ("stripe", "adyen", "paypal", "iyzico")
P_STRIPE, P_ADYEN, P_PAYPAL, P_IYZICO = range(4)


@dataclass(frozen=True)
class ProviderTerms:
    """A provider's fee schedule, account country and behaviour."""

    percent: float  # processing fee, % of the amount
    fixed_minor: int  # fixed fee per payment, in minor units of fixed_currency
    fixed_currency: str
    cross_border_percent: float  # extra % when the card is issued outside the account region
    fx_percent: float  # extra % when the charge currency is not the settlement currency
    settlement_currency: str
    home_countries: tuple[str, ...]
    dispute_fee_minor: int
    dispute_fee_currency: str
    latency_ms: float  # median authorisation latency
    decline_effect: float  # logit shift of the decline probability


PROVIDER_TERMS: dict[str, ProviderTerms] = {
    "stripe": ProviderTerms(2.9, 30, "USD", 1.5, 1.0, "USD", ("US",), 1500, "USD", 850, 0.0),
    "adyen": ProviderTerms(2.5, 25, "EUR", 1.0, 0.6, "EUR", EEA_COUNTRIES, 2000, "EUR", 650, -0.15),
    "paypal": ProviderTerms(3.4, 35, "USD", 1.5, 3.0, "USD", ("US",), 2000, "USD", 2400, 0.0),
    "iyzico": ProviderTerms(2.7, 25, "TRY", 1.5, 1.0, "TRY", ("TR",), 30000, "TRY", 1700, 0.25),
}
IYZICO_SHARE_TR_CARDS = 0.85  # domestic Turkish cards (troy always) go through iyzico
ADYEN_SHARE_EUROPE = 0.55
ADYEN_SHARE_OTHER = 0.25
LATENCY_SIGMA = 0.55  # log-normal spread of authorisation latency
THREE_DS_SHARE = 0.07  # customer-initiated card payments with a 3-D Secure challenge
THREE_DS_MEDIAN_S = 18.0
BANK_TRANSFER_MEDIAN_HOURS = 30.0  # EFT/SEPA settle in one or two business days
REVIEW_HOLD_MEDIAN_HOURS = 4.0  # approved high-risk payments wait for a manual review

FAILURE_REASONS = (
    "insufficient_funds", "expired_card", "do_not_honor", "authentication_required",
    "processing_error", "fraudulent", "card_declined", "incorrect_cvc", "other",
)
(R_FUNDS, R_EXPIRED, R_DNH, R_AUTH, R_PROCESSING, R_FRAUD, R_DECLINED, R_CVC, R_OTHER) = range(9)
#: decline-reason weights by context (same order as FAILURE_REASONS)
REASON_WEIGHTS = {
    "card_customer": (0.18, 0.00, 0.22, 0.10, 0.06, 0.0, 0.28, 0.12, 0.04),
    "card_renewal": (0.45, 0.00, 0.22, 0.06, 0.05, 0.0, 0.18, 0.00, 0.04),
    "wallet": (0.30, 0.00, 0.20, 0.05, 0.10, 0.0, 0.30, 0.00, 0.05),
    "paypal": (0.35, 0.00, 0.00, 0.00, 0.25, 0.0, 0.25, 0.00, 0.15),
    "bank": (0.10, 0.00, 0.00, 0.00, 0.40, 0.0, 0.00, 0.00, 0.50),
    "stolen_card": (0.12, 0.00, 0.22, 0.00, 0.00, 0.0, 0.38, 0.28, 0.00),
}
SCA_AUTH_REQUIRED_BOOST = 2.5  # European cards ask for authentication more often
IYZICO_PROCESSING_ERROR_BOOST = 2.0

#: decline model: logit = base(method) + provider + country + terms below
DECLINE_BASE_LOGIT = (-2.8, -3.4, -3.7, -3.6, -4.2)  # by METHODS
DECLINE_AMOUNT_PER_LOG = 0.35  # per log(amount in USD / 30)
DECLINE_NEW_CARD = 0.45  # card first seen < 7 days ago
DECLINE_RECENT_CARD = 0.15  # card first seen < 90 days ago
DECLINE_OLD_CARD = -0.25  # card first seen > 365 days ago
DECLINE_NIGHT = 0.35  # 00:00-06:00 Istanbul time
DECLINE_MERCHANT_INITIATED = 0.20  # renewals (insufficient funds)
DECLINE_FOREIGN_CARD = 0.40
DECLINE_RETRY = 3.0  # dunning retries: the problem usually persists (~25 % recover per retry)
DECLINE_CARD_TESTING = 2.2  # tested cards are mostly dead
DECLINE_STOLEN_CARD = 0.8

#: risk score = 100 * sigmoid(z), z = intercept + weights * signals + noise
RISK_INTERCEPT = -2.3
RISK_NEW_CARD = 0.8
RISK_IP_MISMATCH = 1.0
RISK_FOREIGN_CARD = 0.4
RISK_PER_EXTRA_ATTEMPT = 0.35  # per attempt in the last hour beyond the first (max 4)
RISK_PER_LOG_AMOUNT = 0.45  # per log1p(amount USD / 50)
RISK_NEW_ACCOUNT = 0.7
RISK_NIGHT = 0.35
RISK_GUEST = 0.45
RISK_MERCHANT_INITIATED = -1.2
RISK_FRAUD_LIFT = 1.2  # what the model sees of fraud beyond the signals (imperfect)
RISK_NOISE = 0.9
BLOCK_RISK_SCORE = 88.0  # our rules block customer-initiated payments at or above this
HIGH_RISK_SCORE = 65.0  # alert threshold
HIGH_VALUE_USD = 100.0

INDICATORS = ("country_mismatch", "velocity", "card_testing", "high_value_new_account", "high_risk_score")
I_MISMATCH, I_VELOCITY, I_TESTING, I_HIGH_VALUE, I_HIGH_RISK = (1 << i for i in range(5))
VELOCITY_ATTEMPTS = 3  # attempts per customer per hour that fire the velocity rule
CARD_TESTING_ATTEMPTS = 5

CUSTOMER_RETRY_RATE = 0.55  # a customer tries again after a declined checkout payment
CUSTOMER_RETRY_NEW_METHOD = 0.40  # ... with a different card or method
#: dunning: retry windows in days after the failed renewal, then cancel after a grace period
RETRY_SCHEDULE_DAYS = ((1.0, 2.0), (3.0, 4.0), (5.0, 7.0))
DUNNING_GRACE_DAYS = 7.0
CARD_UPDATE_BEFORE_RETRY = 0.20
CARD_UPDATE_AFTER_EXPIRED = 0.45

# ---- refunds and disputes -------------------------------------------------------------------
REFUND_RATE_COURSE = 0.045
REFUND_RATE_SUBSCRIPTION_CREATE = 0.02
REFUND_RATE_SUBSCRIPTION_CREATE_ANNUAL = 0.05
REFUND_RATE_RENEWAL_MONTHLY = 0.006
REFUND_RATE_RENEWAL_ANNUAL = 0.06  # "forgot to cancel"
REFUND_RATE_FRAUD = 0.12  # fraudulent payments we refund proactively after review
REFUND_WINDOW_DAYS_COURSE = 30
REFUND_WINDOW_DAYS_SUBSCRIPTION = 14
REFUND_MEAN_DELAY_DAYS = 4.0
PARTIAL_REFUND_SHARE = 0.25
SECOND_PARTIAL_REFUND_SHARE = 0.15
REFUND_FAILED_SHARE = 0.01
REFUND_TICKET_SHARE = 0.40  # refunds preceded by a refund_request ticket
REFUND_REASONS = ("requested_by_customer", "duplicate", "fraudulent", "not_as_described", "other")
REFUND_REASON_WEIGHTS = (0.80, 0.05, 0.0, 0.10, 0.05)

DISPUTE_RATE_LEGIT = 0.0035
DISPUTE_ANNUAL_RENEWAL_FACTOR = 3.0
DISPUTE_RATE_STOLEN_CARD = 0.75
DISPUTE_RATE_CARD_TESTING = 0.60
DISPUTE_DELAY_DAYS = (30.0, 90.0)
DISPUTE_EVIDENCE_DAYS = (7.0, 21.0)
DISPUTE_DECISION_DAYS = (25.0, 75.0)
DISPUTE_REASONS = ("fraudulent", "product_not_received", "duplicate", "subscription_canceled", "unrecognized", "general")
DISPUTE_REASON_WEIGHTS_LEGIT = (0.25, 0.15, 0.05, 0.25, 0.20, 0.10)
DISPUTE_WIN_RATE_LEGIT = 0.60
DISPUTE_WIN_RATE_FRAUD = 0.10

# ---- fraud ----------------------------------------------------------------------------------
FRAUD_ACCOUNT_SHARE_ORGANIC = 0.0157  # of organically acquired accounts
FRAUD_ACCOUNT_SHARE_PAID = 0.003
CARD_TESTER_SHARE = 0.40  # of fraud accounts; the rest buy expensive courses with stolen cards
CARD_TESTER_GUEST_SHARE = 0.70
CARD_TEST_ATTEMPTS = (6, 14)  # minimum + Poisson mean
CARD_TEST_BURST_MINUTES = (10.0, 45.0)
STOLEN_CARD_PURCHASES = (1, 4)
STOLEN_CARD_IP_MISMATCH = 0.60
STOLEN_CARD_SECOND_CARD = 0.35
FRAUD_CARD_COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN", "CA", "ES", "IT")
ALERT_REVIEW_MEDIAN_HOURS = 5.0
ALERT_REVIEW_ACCURACY_FRAUD = 0.92  # share of alerts on fraud confirmed by reviewers
ALERT_REVIEW_ACCURACY_LEGIT = 0.96  # share of alerts on legit payments marked false positive

# ---- acquisition and marketing --------------------------------------------------------------
MONTHLY_GROWTH = 0.04
PAID_ACQUISITION_SHARE = 0.45
ORGANIC_UNKNOWN_SHARE = 0.08  # organic signups without attribution
#: multiplier by calendar month (Jan..Dec) for acquisitions and course purchases
ACQUISITION_SEASON = (1.35, 1.05, 1.00, 0.95, 0.90, 0.80, 0.75, 0.90, 1.30, 1.10, 1.15, 0.85)
PURCHASE_SEASON = (1.30, 1.05, 1.00, 0.95, 0.90, 0.80, 0.75, 0.90, 1.25, 1.05, 1.10, 0.90)
BLACK_FRIDAY_WEEK_BOOST = 2.2  # daily multiplier Monday before Black Friday .. Cyber Monday
BLACK_FRIDAY_CONVERSION_LIFT = 1.4  # more customers per unit of spend in that week
WEEKDAY_FACTOR = (1.06, 1.04, 1.00, 0.98, 0.90, 0.86, 1.12)  # Mon..Sun
#: hour-of-day profile in Istanbul time (00..23)
HOUR_PROFILE = (
    0.9, 0.5, 0.3, 0.2, 0.2, 0.3, 0.6, 1.2, 2.2, 3.2, 3.8, 4.1,
    4.6, 4.7, 4.4, 4.2, 4.2, 4.4, 4.7, 5.3, 6.0, 6.3, 5.4, 2.6,
)
#: always-on campaigns: country, channel, relative daily budget, first active fraction of window
ALWAYS_ON_CAMPAIGNS = (
    ("TR", "paid_search", 1.00, 0.0), ("TR", "social", 0.85, 0.0), ("TR", "affiliate", 0.30, 0.0),
    ("TR", "email", 0.12, 0.0), ("US", "paid_search", 0.90, 0.0), ("US", "social", 0.55, 0.0),
    ("GB", "paid_search", 0.40, 0.0), ("DE", "paid_search", 0.40, 0.0), ("FR", "social", 0.25, 0.15),
    ("ES", "paid_search", 0.20, 0.30), ("IT", "social", 0.20, 0.30), ("BR", "social", 0.30, 0.0),
    ("IN", "social", 0.30, 0.0), ("NL", "paid_search", 0.12, 0.50), ("PL", "affiliate", 0.12, 0.50),
)
#: seasonal bursts: name, first (month, day), last (month, day), channel, countries, budget
SEASONAL_CAMPAIGNS = (
    ("newyear", (12, 27), (1, 15), "social", ("TR", "US", "GB", "DE"), 0.6),
    ("backtoschool", (8, 20), (9, 25), "paid_search", ("TR", "US", "GB", "DE", "FR"), 0.5),
    ("blackfriday", (11, 15), (12, 2), "social", ("TR", "US", "GB", "DE", "FR", "ES", "IT", "BR"), 0.8),
)
CAC_USD = {"paid_search": 38.0, "social": 50.0, "affiliate": 30.0, "email": 12.0}
CPM_USD = {"paid_search": 25.0, "social": 8.0, "affiliate": 5.0, "email": 2.0}
CTR = {"paid_search": 0.045, "social": 0.012, "affiliate": 0.008, "email": 0.03}
SPEND_NOISE = 0.25  # log-normal day-to-day noise of campaign spend
CHANNELS = ("organic", "paid_search", "social", "affiliate", "email", "unknown")
CH_ORGANIC, CH_SEARCH, CH_SOCIAL, CH_AFFILIATE, CH_EMAIL, CH_UNKNOWN = range(6)
REFERRERS = (
    "google.com", "bing.com", "instagram.com", "facebook.com", "youtube.com", "tiktok.com",
    "kodlama-rehberi.com", "techblog.example", "mail.google.com", "outlook.live.com", "t.co",
)

# ---- customer behaviour ---------------------------------------------------------------------
FIRST_PURCHASE_SUBSCRIPTION_SHARE = 0.42
FIRST_PURCHASE_DELAY_SAME_SESSION = 0.60  # first purchase within the signup session
GUEST_CHECKOUT_SHARE = 0.03  # legit course buyers without an account
ENGAGEMENT_BY_CHANNEL = (0.20, 0.05, -0.20, -0.10, 0.25, 0.0)  # by CHANNELS (logit shift)
ENGAGEMENT_BY_DEVICE = (0.20, -0.15, 0.0)  # by DEVICES
ENGAGEMENT_DRIFT = -0.03  # monthly drift of the engagement logit
ENGAGEMENT_VOLATILITY = 0.30
ENGAGEMENT_DROP_BEFORE_CHURN = 0.35
TRIAL_CONVERSION_LOGIT = 0.2  # ~55 % convert, more when engaged or on desktop
COURSE_REPEAT_MONTHLY_RATE = 0.07
COURSE_REPEAT_SUBSCRIBER_FACTOR = 0.5
BASKET_SECOND_COURSE = 0.12
COURSE_TO_SUBSCRIPTION_MONTHLY = 0.012
WINBACK_MONTHLY_RATE = 0.015
WINBACK_MONTHS = 12
UPGRADE_MONTHLY_RATE = 0.015
DOWNGRADE_MONTHLY_RATE = 0.010
#: voluntary churn: monthly plans decide each month; annual plans the month before renewal
CHURN_BASE_LOGIT_MONTHLY = -2.5
CHURN_BASE_LOGIT_ANNUAL_RENEWAL = -1.1
CHURN_ENGAGEMENT = -1.1  # per unit of the engagement logit
CHURN_PER_FAILURE = 0.55  # per recent failed payment (decays 40 % a month)
CHURN_PER_TICKET = 0.45  # per recent support ticket (decays 50 % a month)
CHURN_TENURE_PER_MONTH = -0.04  # first 12 months
CHURN_DISCOUNT = -0.30
CHURN_MOBILE = 0.15
IMMEDIATE_CANCEL_SHARE = 0.12
REACTIVATION_RATE = 0.12
COURSE_ACCESS_DAYS = 120
COURSE_ACCESS_DECAY_DAYS = 60.0
ACTIVITY_LOGIT = -2.2  # daily activity probability at average engagement (~10 %)
ACTIVITY_ENGAGEMENT = 0.9
ACTIVITY_WEEKDAY = (1.0, 1.0, 1.0, 0.97, 0.85, 0.80, 0.95)
ACTIVITY_COURSE_ONLY_FACTOR = 0.7
TICKET_BASE_RATE = 0.018  # per customer-month with access
TICKET_AFTER_FAILURE = 0.22
TICKET_BEFORE_CHURN = 0.06
TICKET_LOW_ENGAGEMENT = 0.03
#: further tickets in the same month from a customer who wrote in (geometric, this mean): more
#: after a failed payment and before a cancellation, so "more than 3 tickets in 90 days" is rare
#: (under 1 % of subscribers at a time) and a real churn signal
TICKET_FOLLOW_UP_BASE = 0.25
TICKET_FOLLOW_UP_AFTER_FAILURE = 1.2
TICKET_FOLLOW_UP_BEFORE_CHURN = 1.8
TICKET_FOLLOW_UP_SAME_CATEGORY = 0.7
TICKET_CATEGORIES = ("billing", "technical", "content", "account", "refund_request")
TICKET_PRIORITIES = ("low", "normal", "high", "urgent")
TICKET_RESOLUTION_MEDIAN_HOURS = (48.0, 24.0, 8.0, 2.0)  # by priority

# ---- generation mechanics -------------------------------------------------------------------
# An upsert needs about ten times its batch's Arrow size in memory (the warehouse keeps a
# per-key outcome dict and DuckDB join state), and each upsert into an unpartitioned table
# re-reads every stored key (~0.4 s per million stored rows): batch sizes trade memory for time.
FLUSH_ROWS = 1_000_000  # a table's buffer is written when it holds this many rows ...
FLUSH_ROWS_BY_TABLE = {"fees": 1_500_000}  # (narrow and unpartitioned: fewer, larger batches)
FLUSH_BYTES = 128 * 1024 * 1024  # ... or this many bytes,
SINK_BUDGET_BYTES = 256 * 1024 * 1024  # ... or the largest buffer when all hold this much
WRITER_THREADS = 1  # upserts run beside the simulation; batches in flight (each ~1 GB at 1M rows)
PILOT_CUSTOMERS = 4000  # benchmark mode sizes the run from a pilot simulation of this size
ACTIVITY_BLOCK = 100_000  # customers per block when drawing daily activity
EMIT_SLICE_ROWS = 500_000  # large monthly tables are built and handed over in slices


# =============================================================================================
# Public API
# =============================================================================================
@dataclass
class GenerationSummary:
    """What :func:`generate` wrote.

    Attributes
    ----------
    rows : dict[str, int]
        Rows generated per table.
    seconds : float
        Wall-clock duration of the generation including the Delta writes.
    seed : int
        Seed of the random streams.
    parameters : dict
        Effective parameters (customers after benchmark scaling, months, start and end dates,
        transactions target).
    batch_id : str
        Ingestion batch id of the load (``ingest_batches``).
    """

    rows: dict[str, int]
    seconds: float
    seed: int
    parameters: dict[str, Any]
    batch_id: str = ""
    written: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def generate(
    warehouse: Warehouse,
    *,
    customers: int = 5000,
    months: int = 24,
    seed: int = 7,
    end: dt.date | None = None,
    transactions: int | None = None,
    progress: ProgressCallback | None = None,
    bulk: bool = False,
    skip_tables: Collection[str] = (),
) -> GenerationSummary:
    """Generate the demo data set into ``warehouse``.

    Parameters
    ----------
    warehouse : Warehouse
        Target warehouse; every table except ``ingest_rejects`` is filled through
        :meth:`Warehouse.upsert`. Generate into an empty warehouse: rows of an earlier generation
        with other parameters are not deleted.
    customers : int, default 5000
        Number of customers acquired over the window (ignored when ``transactions`` is given).
    months : int, default 24
        Calendar months covered, the last one ending at ``end``.
    seed : int, default 7
        Seed of all random streams. Same arguments give identical table contents.
    end : datetime.date, optional
        Last day of data (UTC); events run up to the end of that day. Defaults to today's UTC
        date.
    transactions : int, optional
        Benchmark mode: size the customer count (from a small pilot simulation) so that about
        this many transaction rows are produced (within +-10 %).
    progress : callable, optional
        ``progress(stage, done, total)`` is called as chunks complete; stages are ``"pilot"``,
        ``"months"`` and ``"write"``.
    bulk : bool, default False
        Fill a new, empty warehouse by appending batches without looking up stored keys
        (:func:`analytics_lib.warehouse.bulk.bulk_append`): same rows, hashes, partitioning and
        sort order as the upserts, in a fraction of the time. Refused (``ValueError``) when any
        table already holds data.
    skip_tables : collection of str, default ()
        Tables that are simulated (their random draws still happen, so every other table is
        identical) but not written, e.g. ``user_activity`` and ``support_tickets``, which the
        metric suite does not read, to save disk at 100M transactions. Their row counts are
        reported in ``parameters["skipped_tables"]``.

    Returns
    -------
    GenerationSummary
        Rows per table, duration, seed and effective parameters.
    """
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.UTC)
    if months < 1:
        raise ValueError("months must be at least 1")
    if end is None:
        end = dt.datetime.now(dt.UTC).date()
    if transactions is not None:
        if transactions < 1:
            raise ValueError("transactions must be positive")
        customers = _customers_for_transactions(transactions, months=months, seed=seed, end=end,
                                                progress=progress)
    if customers < 1:
        raise ValueError("customers must be at least 1")
    unknown = set(skip_tables) - set(TABLES)
    if unknown:
        raise ValueError(f"unknown tables to skip: {sorted(unknown)}")
    if bulk:
        from analytics_lib.warehouse.bulk import is_empty

        filled = [name for name in TABLES if not is_empty(warehouse, name)]
        if filled:
            raise ValueError(f"bulk generation needs an empty warehouse; these tables hold data: {filled}")
    batch_id = "synthetic-" + new_batch_id()
    sink = _WarehouseSink(warehouse, batch_id, progress, bulk=bulk, skip=frozenset(skip_tables))
    sim = _Simulation(customers=customers, months=months, seed=seed, end=end, sink=sink,
                      progress=progress)
    try:
        sim.run()
        sink.close()
    except BaseException:
        sink.abort()
        raise
    parameters = {
        "customers": customers, "months": months, "seed": seed, "end": end.isoformat(),
        "start": sim.cal.start.isoformat(), "transactions_target": transactions,
    }
    if bulk:
        parameters["bulk"] = True
    if skip_tables:
        parameters["skipped_tables"] = {name: sink.skipped.get(name, 0) for name in sorted(skip_tables)}
    rows_read = sum(sink.rows.values())
    finished_at = dt.datetime.now(dt.UTC)
    _write_batch_record(warehouse, sink, batch_id, parameters, started_at, finished_at, rows_read)
    rows = dict(sink.rows)
    rows["ingest_batches"] = 1
    summary = GenerationSummary(
        rows=rows, seconds=time.perf_counter() - started, seed=seed, parameters=parameters,
        batch_id=batch_id, written=sink.written,
    )
    log.info("generated %d rows in %.1fs", summary.total_rows, summary.seconds)
    return summary


def _customers_for_transactions(
    target: int, *, months: int, seed: int, end: dt.date, progress: ProgressCallback | None
) -> int:
    """Customer count that yields about ``target`` transactions, from a pilot simulation."""
    pilot = _CountingSink()
    sim = _Simulation(customers=PILOT_CUSTOMERS, months=months, seed=seed, end=end, sink=pilot,
                      progress=None)
    sim.run()
    per_customer = pilot.rows.get("transactions", 0) / PILOT_CUSTOMERS
    if progress:
        progress("pilot", 1, 1)
    if per_customer <= 0:
        raise ValueError("the pilot simulation produced no transactions")
    return max(1, round(target / per_customer))


def _write_batch_record(
    warehouse: Warehouse, sink: _WarehouseSink, batch_id: str, parameters: dict[str, Any],
    started_at: dt.datetime, finished_at: dt.datetime, rows_read: int,
) -> None:
    inserted = sum(w["inserted"] for w in sink.written.values())
    updated = sum(w["updated"] for w in sink.written.values())
    unchanged = sum(w["unchanged"] for w in sink.written.values())
    versions = warehouse.versions()
    versions["ingest_batches"] = versions.get("ingest_batches", -1) + 1
    record = pa.table({
        "batch_id": [batch_id],
        "source": ["synthetic"],
        "file": ["synthetic:" + ",".join(f"{k}={v}" for k, v in parameters.items())],
        "file_sha256": pa.nulls(1, pa.string()),
        "started_at": pa.array([started_at], pa.timestamp("us", tz="UTC")),
        "finished_at": pa.array([finished_at], pa.timestamp("us", tz="UTC")),
        "rows_read": [rows_read],
        "inserted": [inserted],
        "updated": [updated],
        "unchanged": [unchanged],
        "rejected": [0],
        "table_versions": [versions_json(versions)],
    })
    warehouse.upsert("ingest_batches", record, batch_id)


# =============================================================================================
# Sinks: where generated tables go
# =============================================================================================
class _Sink(Protocol):
    rows: dict[str, int]

    def add(self, name: str, table: pa.Table) -> None: ...


class _CountingSink:
    """Counts rows only (pilot runs)."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}

    def add(self, name: str, table: pa.Table) -> None:
        self.rows[name] = self.rows.get(name, 0) + table.num_rows


class _WarehouseSink:
    """Buffers each table's rows and upserts them in large batches (few Delta commits).

    Batches are written by a small thread pool while the simulation carries on (DuckDB and
    delta-rs release the GIL); a table has at most one batch in flight, so its commits keep
    their order, and buffered plus in-flight bytes stay under a budget.
    """

    def __init__(self, warehouse: Warehouse, batch_id: str, progress: ProgressCallback | None, *,
                 bulk: bool = False, skip: frozenset[str] = frozenset()):
        self.warehouse = warehouse
        self.batch_id = batch_id
        self.progress = progress
        self.skip = skip
        if bulk:
            from analytics_lib.warehouse.bulk import bulk_append

            self._write: Callable[..., WriteResult] = lambda name, table, batch_id: bulk_append(
                warehouse, name, table, batch_id)
        else:
            self._write = warehouse.upsert
        self.rows: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.written: dict[str, dict[str, int]] = {}
        self._parts: dict[str, list[pa.Table]] = {}
        self._buffered_rows: dict[str, int] = {}
        self._buffered_bytes: dict[str, int] = {}
        self._pool = ThreadPoolExecutor(max_workers=WRITER_THREADS, thread_name_prefix="synth-writer")
        self._in_flight: dict[str, tuple[Future[WriteResult], int]] = {}

    def wants(self, name: str) -> bool:
        return name not in self.skip

    def add(self, name: str, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if name in self.skip:
            self.skipped[name] = self.skipped.get(name, 0) + table.num_rows
            return
        self.rows[name] = self.rows.get(name, 0) + table.num_rows
        self._parts.setdefault(name, []).append(table)
        self._buffered_rows[name] = self._buffered_rows.get(name, 0) + table.num_rows
        self._buffered_bytes[name] = self._buffered_bytes.get(name, 0) + table.nbytes
        limit = FLUSH_ROWS_BY_TABLE.get(name, FLUSH_ROWS)
        if self._buffered_rows[name] >= limit or self._buffered_bytes[name] >= FLUSH_BYTES:
            self.flush(name)
        while sum(self._buffered_bytes.values()) > SINK_BUDGET_BYTES:
            self.flush(max(self._buffered_bytes, key=lambda k: self._buffered_bytes[k]))

    def _wait(self, name: str) -> None:
        future, _ = self._in_flight.pop(name)
        result = future.result()  # re-raises a failed write here
        counts = self.written.setdefault(name, {"inserted": 0, "updated": 0, "unchanged": 0})
        counts["inserted"] += result.inserted
        counts["updated"] += result.updated
        counts["unchanged"] += result.unchanged

    def flush(self, name: str) -> None:
        parts = self._parts.pop(name, [])
        size = self._buffered_bytes.get(name, 0)
        self._buffered_rows[name] = 0
        self._buffered_bytes[name] = 0
        if not parts:
            return
        if name in self._in_flight:
            self._wait(name)
        while len(self._in_flight) >= WRITER_THREADS:
            self._wait(next(iter(self._in_flight)))
        table = pa.concat_tables(parts)
        del parts
        self._in_flight[name] = (self._pool.submit(self._write, name, table, self.batch_id), size)

    def close(self) -> None:
        try:
            names = sorted(set(self._parts) | set(self._in_flight))
            for name in names:
                self.flush(name)
            for i, name in enumerate(names, 1):
                if name in self._in_flight:
                    self._wait(name)
                if self.progress:
                    self.progress("write", i, len(names))
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """Stop after a failure: finish writes already running, drop the rest."""
        self._pool.shutdown(wait=True, cancel_futures=True)


# =============================================================================================
# Small helpers
# =============================================================================================
def _stream(seed: int, *keys: str | int) -> np.random.Generator:
    """An independent random stream per (seed, purpose, chunk)."""
    words = [int(seed) & 0xFFFFFFFF]
    for key in keys:
        words.append(zlib.crc32(key.encode()) if isinstance(key, str) else int(key))
    return np.random.default_rng(words)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _choice(rng: np.random.Generator, n: int, weights: Sequence[float] | np.ndarray) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    cum = np.cumsum(w / w.sum())
    cum[-1] = 1.0
    return np.searchsorted(cum, rng.random(n), side="right").astype(np.int64)


def _choice_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One category per row from a (rows x categories) weight matrix."""
    if len(weights) == 0:
        return np.zeros(0, np.int64)
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cum[:, -1]
    return np.minimum((cum <= u[:, None]).sum(axis=1), weights.shape[1] - 1).astype(np.int64)


_MASK48 = np.uint64((1 << 48) - 1)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _scramble(numbers: np.ndarray, salt: int) -> np.ndarray:
    """A bijection of the 48-bit integers (multiply by odd constants, xor-shifts)."""
    x = (numbers.astype(np.uint64) + np.uint64(salt)) & _MASK48
    x = (x * np.uint64(0x9E3779B97F4B)) & _MASK48
    x ^= x >> np.uint64(21)
    x = (x * np.uint64(0xC2B2AE3D27D5)) & _MASK48
    x ^= x >> np.uint64(17)
    return x


def _ids(prefix: str, numbers: np.ndarray) -> pa.Array:
    """Opaque, unique ids ``<prefix><12 hex>`` for non-negative integers (null for negatives)."""
    numbers = np.asarray(numbers, dtype=np.int64)
    n = len(numbers)
    x = _scramble(np.maximum(numbers, 0), zlib.crc32(prefix.encode()))
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    width = len(head) + 12
    buf = np.empty((n, width), dtype=np.uint8)
    buf[:, : len(head)] = head
    for k in range(12):  # one hex digit at a time keeps memory at ~16 bytes per id
        buf[:, len(head) + k] = _HEX[((x >> np.uint64(4 * (11 - k))) & np.uint64(15)).astype(np.intp)]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    valid = numbers >= 0
    validity = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf.tobytes()),
                                       validity, null_count=int((~valid).sum()))


def _labels(labels: Sequence[str], codes: np.ndarray) -> pa.Array:
    """String column from category codes (negative code = null)."""
    codes = np.asarray(codes, dtype=np.int64)
    values = pa.array(list(labels), pa.string())
    neg = codes < 0
    if neg.any():
        return values.take(pa.array(np.where(neg, 0, codes), mask=neg))
    return values.take(pa.array(codes))


def _ts(us: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    us = np.asarray(us, dtype=np.int64)
    mask = None if valid is None else ~np.asarray(valid, dtype=bool)
    return pa.array(us, pa.timestamp("us", tz="UTC"), mask=mask)


def _opt_int(values: np.ndarray, valid: np.ndarray, type_: pa.DataType) -> pa.Array:
    return pa.array(np.asarray(values), type_, mask=~np.asarray(valid, dtype=bool))


class _Hasher:
    """Hex sha256 of strings, vectorised in DuckDB (one connection, input order kept)."""

    def __init__(self) -> None:
        self._con = duckdb.connect()
        self._con.execute("SET threads = 1")

    def __call__(self, strings: pa.Array) -> pa.Array:
        if len(strings) == 0:
            return pa.array([], pa.string())
        src = pa.table({"i": np.arange(len(strings)), "s": strings})
        self._con.register("src", src)
        try:
            out = self._con.sql("SELECT sha256(s) AS h FROM src ORDER BY i").to_arrow_table()
        finally:
            self._con.unregister("src")
        return out.column("h").combine_chunks()

    def close(self) -> None:
        self._con.close()


def _ip_strings(ip: np.ndarray) -> pa.Array:
    ip = np.asarray(ip, dtype=np.uint32)
    octets = [pa.array(((ip >> np.uint32(s)) & np.uint32(255)).astype(np.int64)).cast(pa.string())
              for s in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*octets, ".")


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    parts = [p for p in parts if len(next(iter(p.values()))) > 0]
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _groups(parts: list[dict[str, np.ndarray]], max_rows: int) -> list[list[dict[str, np.ndarray]]]:
    """Consecutive parts grouped so that each group holds about ``max_rows`` rows."""
    groups: list[list[dict[str, np.ndarray]]] = [[]]
    rows = 0
    for part in parts:
        n = len(next(iter(part.values()))) if part else 0
        if groups[-1] and rows + n > max_rows:
            groups.append([])
            rows = 0
        groups[-1].append(part)
        rows += n
    return groups


def _take(d: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in d.items()}


def _month_number(us: np.ndarray) -> np.ndarray:
    """Months since 1970-01 of UTC timestamps (card expiry arithmetic)."""
    return np.asarray(us, dtype=np.int64).astype("datetime64[us]").astype("datetime64[M]").astype(np.int64)


def _add_months(us: np.ndarray, months: np.ndarray | int) -> np.ndarray:
    """Add calendar months to UTC timestamps, clipping the day to the month's length."""
    us = np.asarray(us, dtype=np.int64)
    days = us // DAY_US
    tod = us - days * DAY_US
    d = days.astype("datetime64[D]")
    m = d.astype("datetime64[M]")
    dom = (d - m.astype("datetime64[D]")).astype(np.int64)
    new_m = m + np.asarray(months, dtype=np.int64)
    length = ((new_m + 1).astype("datetime64[D]") - new_m.astype("datetime64[D]")).astype(np.int64)
    new_d = new_m.astype("datetime64[D]").astype(np.int64) + np.minimum(dom, length - 1)
    return new_d * DAY_US + tod


def _table(name: str, columns: dict[str, Any]) -> pa.Table:
    """A table with the warehouse's business columns and types (missing columns -> null)."""
    spec = TABLES[name]
    n = len(next(iter(columns.values())))
    arrays, fields = [], []
    for col in spec.columns:
        if col.name in columns:
            arr = columns[col.name]
            if not isinstance(arr, (pa.Array, pa.ChunkedArray)):
                arr = pa.array(arr)
            if arr.type != col.arrow_type:
                arr = arr.cast(col.arrow_type)
        else:
            arr = pa.nulls(n, col.arrow_type)
        arrays.append(arr)
        fields.append(pa.field(col.name, col.arrow_type, col.nullable))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


# =============================================================================================
# Calendar: the window, days, local time, seasonality
# =============================================================================================
def _black_friday(year: int) -> dt.date:
    nov1 = dt.date(year, 11, 1)
    first_thursday = nov1 + dt.timedelta(days=(3 - nov1.weekday()) % 7)
    return first_thursday + dt.timedelta(days=22)


class _Calendar:
    """Window boundaries, per-day local midnight (business time zone) and day weights."""

    def __init__(self, end: dt.date, months: int):
        first_of_end = end.year * 12 + end.month - 1
        y, m = divmod(first_of_end - (months - 1), 12)
        self.start = dt.date(y, m + 1, 1)
        self.end = end
        self.n_months = months
        self.start_day = (self.start - _EPOCH).days
        self.start_us = self.start_day * DAY_US
        self.cutoff_us = ((end - _EPOCH).days + 1) * DAY_US
        starts = []
        for i in range(months):
            y, m = divmod(self.start.year * 12 + self.start.month - 1 + i, 12)
            starts.append((dt.date(y, m + 1, 1) - _EPOCH).days * DAY_US)
        self.month_start_us = np.array([*starts, self.cutoff_us], dtype=np.int64)
        self.n_days = (end - self.start).days + 1
        self.days = self.start_day + np.arange(self.n_days, dtype=np.int64)
        dates = [self.start + dt.timedelta(days=i) for i in range(self.n_days)]
        zone = ZoneInfo(BUSINESS_TIMEZONE)
        offsets = np.array([
            zone.utcoffset(dt.datetime.combine(d, dt.time(12))).total_seconds()  # type: ignore[union-attr]
            for d in dates
        ])
        self.offset_us = (offsets * SECOND_US).astype(np.int64)
        self.local_midnight_us = self.days * DAY_US - self.offset_us
        self.weekday = np.array([d.weekday() for d in dates])
        self.month_of_year = np.array([d.month for d in dates])
        self.day_month = np.searchsorted(self.month_start_us, self.days * DAY_US, side="right") - 1
        bf = np.zeros(self.n_days, dtype=bool)
        for year in range(self.start.year, end.year + 1):
            friday = _black_friday(year)
            lo, hi = friday - dt.timedelta(days=4), friday + dt.timedelta(days=3)
            for i, d in enumerate(dates):
                if lo <= d <= hi:
                    bf[i] = True
        self.black_friday_week = bf
        self.dates = dates
        weekday = np.asarray(WEEKDAY_FACTOR)[self.weekday]
        purchase = np.asarray(PURCHASE_SEASON)[self.month_of_year - 1]
        self.purchase_weight = weekday * purchase * np.where(bf, BLACK_FRIDAY_WEEK_BOOST, 1.0)
        self.purchase_cum = np.cumsum(self.purchase_weight)
        self.hour_cum = np.cumsum(np.asarray(HOUR_PROFILE) / sum(HOUR_PROFILE))
        self.hour_cum[-1] = 1.0
        labels = []
        # partition labels from one month before the window (local-time edge) to the end
        for i in range(-1, months):
            y, m = divmod(self.start.year * 12 + self.start.month - 1 + i, 12)
            labels.append(f"{y:04d}-{m + 1:02d}")
        self.month_labels = labels
        y, m = divmod(self.start.year * 12 + self.start.month - 2, 12)
        self.label_start_us = np.array(
            [(dt.date(y, m + 1, 1) - _EPOCH).days * DAY_US, *self.month_start_us[:-1]], dtype=np.int64)

    # -- conversions ----------------------------------------------------------------------
    def day_index(self, us: np.ndarray) -> np.ndarray:
        return np.asarray(us, dtype=np.int64) // DAY_US - self.start_day

    def month_index(self, us: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.month_start_us, np.asarray(us, dtype=np.int64), side="right") - 1
        return np.clip(idx, 0, self.n_months - 1)

    def month_label_codes(self, us: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.label_start_us, np.asarray(us, dtype=np.int64), side="right") - 1

    def month_labels_of(self, us: np.ndarray) -> pa.Array:
        return _labels(self.month_labels, self.month_label_codes(us))

    def local_hour(self, us: np.ndarray) -> np.ndarray:
        day = np.clip(self.day_index(us), 0, self.n_days - 1)
        return ((np.asarray(us) + self.offset_us[day]) // HOUR_US) % 24

    # -- sampling -------------------------------------------------------------------------
    def times_on_days(self, rng: np.random.Generator, day: np.ndarray) -> np.ndarray:
        """Event times on given window days, following the local hour-of-day profile."""
        n = len(day)
        hour = np.searchsorted(self.hour_cum, rng.random(n), side="right")
        t = self.local_midnight_us[day] + hour * HOUR_US + (rng.random(n) * HOUR_US).astype(np.int64)
        return np.where(t < self.start_us, t + DAY_US, t)

    def days_between(self, rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray,
                     cum: np.ndarray | None = None) -> np.ndarray:
        """A day in [lo, hi) per row, weighted by ``cum`` (cumulative day weights)."""
        cum = self.purchase_cum if cum is None else cum
        lo = np.clip(lo, 0, self.n_days - 1)
        hi = np.clip(np.maximum(hi, lo + 1), 1, self.n_days)
        base = np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
        top = cum[hi - 1]
        u = base + rng.random(len(lo)) * (top - base)
        return np.clip(np.searchsorted(cum, u, side="left"), lo, hi - 1)

    def month_days(self, mi: int) -> tuple[int, int]:
        lo = int(self.day_index(self.month_start_us[mi]))
        hi = int(self.day_index(self.month_start_us[mi + 1] - 1)) + 1
        return max(lo, 0), min(hi, self.n_days)


# =============================================================================================
# FX rates, prices, products
# =============================================================================================
def _simulate_fx(cal: _Calendar, rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """Daily USD per unit for CURRENCIES: (first day number, array days x currencies)."""
    n = cal.n_days + FX_HISTORY_DAYS
    first_day = cal.start_day - FX_HISTORY_DAYS
    days = first_day + np.arange(n)
    years = (days - (FX_REFERENCE_DATE - _EPOCH).days) / 365.25
    rates = np.ones((n, len(CURRENCIES)))
    shocks = rng.normal(0.0, FX_DAILY_VOLATILITY, size=(n, 3))
    noise = np.zeros((n, 3))
    stationary = FX_DAILY_VOLATILITY / math.sqrt(2 * FX_MEAN_REVERSION)
    noise[0] = [shocks[0, 0], rng.normal(0, stationary), rng.normal(0, stationary)]
    for i in range(1, n):
        noise[i, 0] = TRY_NOISE_PERSISTENCE * noise[i - 1, 0] + shocks[i, 0]
        noise[i, 1:] = (1 - FX_MEAN_REVERSION) * noise[i - 1, 1:] + shocks[i, 1:]
    rates[:, 1] = np.exp(-math.log(TRY_PER_USD_AT_REFERENCE)
                         - math.log(1 + TRY_ANNUAL_DEPRECIATION) * years + noise[:, 0])
    rates[:, 2] = EUR_USD_MEAN * np.exp(noise[:, 1])
    rates[:, 3] = GBP_USD_MEAN * np.exp(noise[:, 2])
    return first_day, np.round(rates, 8)


def _nice_price(major: np.ndarray, currency: np.ndarray) -> np.ndarray:
    """Round prices the way price lists do (49.99, 649.99 TRY) -> minor units."""
    is_try = currency == CURRENCIES.index("TRY")
    step = np.where(is_try, np.where(major >= 1000, 50.0, 10.0), np.where(major >= 100, 5.0, 1.0))
    rounded = np.maximum(np.round(major / step), 1) * step
    return np.round(rounded * 100).astype(np.int64) - 1


_C = {name: i for i, name in enumerate(CURRENCIES)}
COUNTRY_CODES = tuple(c[0] for c in COUNTRIES)
_COUNTRY_WEIGHT = np.array([c[1] for c in COUNTRIES])
_COUNTRY_CURRENCY = np.array([_C[c[2]] for c in COUNTRIES])
_COUNTRY_PRICE_LEVEL = np.array([c[3] for c in COUNTRIES])
_COUNTRY_MOBILE = np.array([c[4] for c in COUNTRIES])
_COUNTRY_CAC = np.array([c[5] for c in COUNTRIES])
_COUNTRY_DECLINE = np.array([c[6] for c in COUNTRIES])
_COUNTRY_CHURN = np.array([c[7] for c in COUNTRIES])
_TR = COUNTRY_CODES.index("TR")
_US = COUNTRY_CODES.index("US")
_IS_EEA = np.array([c in EEA_COUNTRIES for c in COUNTRY_CODES])
_IS_EUROPE = np.array([c in EEA_COUNTRIES or c == "GB" for c in COUNTRY_CODES])
N_COURSES = len(COURSES)
N_PRODUCTS = N_COURSES + len(PLANS)
PRODUCT_IDS = tuple(f"crs_{c[0].replace('-', '_')}" for c in COURSES) + tuple(p[0] for p in PLANS)
_PRODUCT_USD = np.array([c[3] for c in COURSES] + [p[4] for p in PLANS])
_PLAN_INTERVAL = np.array([p[3] for p in PLANS])
_PLAN_TRIAL_DAYS = np.array([p[5] for p in PLANS])
_PLAN_TYPE = np.array([1 if p[3] == 1 else 2 for p in PLANS])  # 1 monthly, 2 annual
PLAN_TYPES = ("course", "monthly", "annual")
BILLING_REASONS = ("purchase", "subscription_create", "subscription_cycle", "retry")
B_PURCHASE, B_CREATE, B_CYCLE, B_RETRY = range(4)


class _Catalogue:
    """Products, their availability over the window, local price lists and discount codes."""

    def __init__(self, cal: _Calendar, fx_first_day: int, fx: np.ndarray):
        self.cal = cal
        n_days = cal.n_days
        self.available_from = np.zeros(N_PRODUCTS, dtype=np.int64)  # window day index
        self.available_to = np.full(N_PRODUCTS, n_days, dtype=np.int64)
        for i, course in enumerate(COURSES):
            if course[5] is not None:
                self.available_from[i] = int(course[5] * n_days)
        retired = [c[0] for c in COURSES].index(RETIRED_COURSE[0])
        self.available_to[retired] = int(RETIRED_COURSE[1] * n_days)
        # course popularity per country
        pop = np.array([c[4] for c in COURSES])
        cats = [c[2] for c in COURSES]
        self.course_weight = np.tile(pop, (len(COUNTRIES), 1))
        for j, cat in enumerate(cats):
            self.course_weight[_TR, j] *= TR_CATEGORY_BOOST.get(cat, 1.0)
            if cat == "exam_prep":
                mask = np.arange(len(COUNTRIES)) != _TR
                self.course_weight[mask, j] *= NON_TR_EXAM_PREP_FACTOR
        self.cheapest_course = int(np.argmin(_PRODUCT_USD[:N_COURSES]))
        # price lists: one per PRICE_REVIEW_MONTHS, from the FX rate on its first day
        self.n_epochs = (cal.n_months + PRICE_REVIEW_MONTHS - 1) // PRICE_REVIEW_MONTHS
        prices = np.zeros((self.n_epochs, N_PRODUCTS, len(COUNTRIES)), dtype=np.int64)
        for e in range(self.n_epochs):
            day = int(cal.day_index(cal.month_start_us[e * PRICE_REVIEW_MONTHS]))
            usd_per_unit = fx[day + (cal.start_day - fx_first_day)]
            for k in range(len(COUNTRIES)):
                cur = _COUNTRY_CURRENCY[k]
                major = _PRODUCT_USD * _COUNTRY_PRICE_LEVEL[k] / usd_per_unit[cur]
                if cur == _C["USD"] and _COUNTRY_PRICE_LEVEL[k] == 1.0:
                    prices[e, :, k] = np.round(_PRODUCT_USD * 100).astype(np.int64)
                else:
                    prices[e, :, k] = _nice_price(major, np.full(N_PRODUCTS, cur))
        self.prices = prices
        # discount codes
        codes: list[tuple[str, float]] = [WELCOME_CODE, STUDENT_CODE, WINBACK_CODE, TEAM_CODE]
        self.course_code = np.full(n_days, -1, dtype=np.int64)
        self.course_code_use = np.zeros(n_days)
        self.sub_code = np.full(n_days, -1, dtype=np.int64)
        self.sub_code_use = np.zeros(n_days)
        years = range(cal.start.year, cal.end.year + 1)
        for year in years:
            yy = year % 100
            for prefix, pct, (m1, d1), (m2, d2), use in SEASONAL_COURSE_CODES:
                lo, hi = dt.date(year, m1, d1), dt.date(year, m2, d2)
                idx = [i for i, d in enumerate(cal.dates) if lo <= d <= hi]
                if idx:
                    codes.append((f"{prefix}{yy}", pct))
                    self.course_code[idx] = len(codes) - 1
                    self.course_code_use[idx] = use
            idx = [i for i, d in enumerate(cal.dates) if d.year == year and cal.black_friday_week[i]]
            if idx:
                codes.append((f"BF{yy}", BLACK_FRIDAY_COURSE_DISCOUNT))
                self.course_code[idx] = len(codes) - 1
                self.course_code_use[idx] = BLACK_FRIDAY_CODE_USE
                codes.append((f"BFSUB{yy}", BLACK_FRIDAY_SUBSCRIPTION_DISCOUNT))
                self.sub_code[idx] = len(codes) - 1
                self.sub_code_use[idx] = BLACK_FRIDAY_SUB_CODE_USE
        self.code_names = tuple(c[0] for c in codes)
        self.code_percent = np.array([c[1] for c in codes])

    def price(self, product: np.ndarray, country: np.ndarray, us: np.ndarray) -> np.ndarray:
        epoch = np.minimum(self.cal.month_index(us) // PRICE_REVIEW_MONTHS, self.n_epochs - 1)
        return self.prices[epoch, product, country]

    def pick_courses(self, rng: np.random.Generator, country: np.ndarray, us: np.ndarray,
                     owned: np.ndarray | None = None) -> np.ndarray:
        """A course per row by country popularity among courses on sale (avoiding owned ones)."""
        day = np.clip(self.cal.day_index(us), 0, self.cal.n_days - 1)
        on_sale = (self.available_from[:N_COURSES][None, :] <= day[:, None]) & (
            day[:, None] < self.available_to[:N_COURSES][None, :])
        w = self.course_weight[country] * on_sale
        if owned is not None:
            bits = (owned[:, None] >> np.arange(N_COURSES, dtype=np.uint64)[None, :]) & np.uint64(1)
            not_owned = w * (bits == 0)
            w = np.where(not_owned.sum(axis=1, keepdims=True) > 0, not_owned, w)
        return _choice_rows(rng, w)

    def rows(self) -> pa.Table:
        cal = self.cal
        created = []
        for i in range(N_PRODUCTS):
            if i < N_COURSES and COURSES[i][5] is not None:
                created.append(int(cal.local_midnight_us[self.available_from[i]]) + 9 * HOUR_US)
            elif i < N_COURSES:
                # catalogue built up over the two years before the window
                created.append(cal.start_us - (PLATFORM_LAUNCH_DAYS - 40 - 21 * i) * DAY_US)
            else:
                created.append(cal.start_us - PLATFORM_LAUNCH_DAYS * DAY_US)
        active = self.available_to >= cal.n_days
        return _table("products", {
            "product_id": pa.array(PRODUCT_IDS),
            "product_type": pa.array(["course"] * N_COURSES + ["subscription_plan"] * len(PLANS)),
            "name": pa.array([c[1] for c in COURSES] + [p[1] for p in PLANS]),
            "category": pa.array([c[2] for c in COURSES] + [p[2] for p in PLANS]),
            "plan_interval_months": pa.array([None] * N_COURSES + [p[3] for p in PLANS], pa.int32()),
            "list_price_minor": pa.array(np.round(_PRODUCT_USD * 100).astype(np.int64)),
            "currency": pa.array(["USD"] * N_PRODUCTS),
            "trial_days": pa.array([None] * N_COURSES + [p[5] for p in PLANS], pa.int32()),
            "active": pa.array(active),
            "created_at": _ts(np.array(created)),
        })


# =============================================================================================
# Marketing and acquisition
# =============================================================================================
@dataclass
class _Campaigns:
    ids: list[str]
    channel: np.ndarray  # CHANNELS code
    country: np.ndarray
    spend_usd: np.ndarray  # (campaigns x days)
    expected: np.ndarray  # expected acquisitions (campaigns x days), sums to the paid share


def _plan_campaigns(cal: _Calendar, rng: np.random.Generator) -> tuple[_Campaigns, np.ndarray]:
    """Campaign flights, relative daily spend and the organic intensity per country-day."""
    ids, channels, countries, budgets, active = [], [], [], [], []
    n = cal.n_days
    for country, channel, budget, first in ALWAYS_ON_CAMPAIGNS:
        ids.append(f"cmp_{country.lower()}_{channel}")
        channels.append(CHANNELS.index(channel))
        countries.append(COUNTRY_CODES.index(country))
        budgets.append(budget)
        mask = np.zeros(n, dtype=bool)
        mask[int(first * n):] = True
        active.append(mask)
    for name, (m1, d1), (m2, d2), channel, targets, budget in SEASONAL_CAMPAIGNS:
        for year in range(cal.start.year - 1, cal.end.year + 1):
            lo = dt.date(year, m1, d1)
            hi = dt.date(year if (m2, d2) >= (m1, d1) else year + 1, m2, d2)
            mask = np.array([lo <= d <= hi for d in cal.dates])
            if not mask.any():
                continue
            for country in targets:
                ids.append(f"cmp_{country.lower()}_{channel}_{name}{hi.year}")
                channels.append(CHANNELS.index(channel))
                countries.append(COUNTRY_CODES.index(country))
                budgets.append(budget)
                active.append(mask)
    act = np.array(active)
    months_in = (cal.days - cal.start_day) / 30.44
    trend = (1 + MONTHLY_GROWTH) ** months_in
    season = np.asarray(ACQUISITION_SEASON)[cal.month_of_year - 1]
    weekday = np.asarray(WEEKDAY_FACTOR)[cal.weekday]
    bf = np.where(cal.black_friday_week, 1.3, 1.0)
    noise = np.exp(rng.normal(0, SPEND_NOISE, size=act.shape))
    spend_rel = act * np.array(budgets)[:, None] * (trend * season * weekday * bf)[None, :] * noise
    channel_arr, country_arr = np.array(channels), np.array(countries)
    cac = np.array([CAC_USD[CHANNELS[c]] for c in channels]) * _COUNTRY_CAC[country_arr]
    lift = np.where(cal.black_friday_week, BLACK_FRIDAY_CONVERSION_LIFT, 1.0)
    expected_rel = spend_rel / cac[:, None] * lift[None, :]
    scale = PAID_ACQUISITION_SHARE / expected_rel.sum()
    organic = (_COUNTRY_WEIGHT[:, None] * (trend * season * weekday * bf)[None, :])
    organic = organic * (1 - PAID_ACQUISITION_SHARE) / organic.sum()
    camps = _Campaigns(ids=ids, channel=channel_arr, country=country_arr,
                       spend_usd=spend_rel * scale, expected=expected_rel * scale)
    return camps, organic


# =============================================================================================
# The simulation
# =============================================================================================
class _Store:
    """Growable column store (numpy arrays as attributes)."""

    def __init__(self, columns: dict[str, tuple[Any, Any]], capacity: int):
        self._spec = columns
        self.n = 0
        self._cap = max(capacity, 16)
        for name, (dtype, fill) in columns.items():
            setattr(self, name, np.full(self._cap, fill, dtype=dtype))

    def add(self, n: int) -> np.ndarray:
        if self.n + n > self._cap:
            new_cap = max(self._cap * 2, self.n + n)
            for name, (dtype, fill) in self._spec.items():
                grown = np.full(new_cap, fill, dtype=dtype)
                grown[: self._cap] = getattr(self, name)
                setattr(self, name, grown)
            self._cap = new_cap
        idx = np.arange(self.n, self.n + n)
        self.n += n
        return idx


SUBSCRIPTION_COLUMNS: dict[str, tuple[Any, Any]] = {
    "cust": (np.int64, -1), "plan": (np.int8, 0), "price": (np.int64, 0), "cur": (np.int8, 0),
    "discount": (np.float64, 0.0), "code": (np.int16, -1), "started": (np.int64, 0),
    "trial_end": (np.int64, 0), "anchor": (np.int64, 0), "periods": (np.int32, 0),
    "period_start": (np.int64, 0), "period_end": (np.int64, 0), "cancel_pending": (np.bool_, False),
    "canceled_at": (np.int64, 0), "ended_at": (np.int64, 0), "past_due_since": (np.int64, 0),
    "unpaid_since": (np.int64, 0), "will_convert": (np.bool_, True),
}


class _Subscriptions(_Store):
    """Subscription state, one row per subscription (times in UTC microseconds, 0 = unset)."""

    cust: np.ndarray
    plan: np.ndarray
    price: np.ndarray
    cur: np.ndarray
    discount: np.ndarray
    code: np.ndarray
    started: np.ndarray
    trial_end: np.ndarray
    anchor: np.ndarray
    periods: np.ndarray
    period_start: np.ndarray
    period_end: np.ndarray
    cancel_pending: np.ndarray
    canceled_at: np.ndarray
    ended_at: np.ndarray
    past_due_since: np.ndarray
    unpaid_since: np.ndarray
    will_convert: np.ndarray

    def __init__(self, capacity: int) -> None:
        super().__init__(SUBSCRIPTION_COLUMNS, capacity)


EVENT_TYPES = ("trial_start", "start", "upgrade", "downgrade", "cancel", "reactivate")
E_TRIAL, E_START, E_UPGRADE, E_DOWNGRADE, E_CANCEL, E_REACTIVATE = range(6)
CANCEL_REASONS = ("voluntary", "payment_failed", "trial_not_converted")
FRAUD_NONE, FRAUD_TESTER, FRAUD_STOLEN = 0, 1, 2


class _Simulation:
    """Month-by-month simulation; every month's rows go to the sink."""

    def __init__(self, *, customers: int, months: int, seed: int, end: dt.date, sink: _Sink,
                 progress: ProgressCallback | None):
        self.seed = seed
        self.sink = sink
        self.progress = progress
        self.cal = _Calendar(end, months)
        self.fx_first_day, self.fx = _simulate_fx(self.cal, self._rng("fx"))
        self.cat = _Catalogue(self.cal, self.fx_first_day, self.fx)
        self.counters: dict[str, int] = {}
        self.n_customers = customers
        self._acquire(customers)
        self.subs = _Subscriptions(int(customers * 0.8) + 64)
        self._sha256 = _Hasher()

    # -- infrastructure -------------------------------------------------------------------
    def _rng(self, *keys: str | int) -> np.random.Generator:
        return _stream(self.seed, *keys)

    def _next(self, kind: str, n: int) -> np.ndarray:
        start = self.counters.get(kind, 0)
        self.counters[kind] = start + n
        return np.arange(start, start + n, dtype=np.int64)

    def usd_per_unit(self, cur: np.ndarray, us: np.ndarray) -> np.ndarray:
        idx = np.clip(np.asarray(us) // DAY_US - self.fx_first_day, 0, len(self.fx) - 1)
        return self.fx[idx, cur]

    # -- acquisition ----------------------------------------------------------------------
    def _acquire(self, n: int) -> None:
        """Customers: signup time, country, channel and campaign, device, latent traits."""
        cal = self.cal
        rng = self._rng("acquisition")
        camps, organic = _plan_campaigns(cal, rng)
        self.campaigns = camps
        probs = np.concatenate([camps.expected.ravel(), organic.ravel()])
        counts = rng.multinomial(n, probs / probs.sum())
        n_paid_cells = camps.expected.size
        cell = np.repeat(np.arange(len(probs)), counts)
        paid = cell < n_paid_cells
        camp = np.where(paid, cell // cal.n_days, -1)
        day = np.where(paid, cell % cal.n_days, (cell - n_paid_cells) % cal.n_days)
        country = np.where(paid, camps.country[np.maximum(camp, 0)], (cell - n_paid_cells) // cal.n_days)
        channel = np.where(paid, camps.channel[np.maximum(camp, 0)],
                           np.where(rng.random(n) < ORGANIC_UNKNOWN_SHARE, CH_UNKNOWN, CH_ORGANIC))
        signup = cal.times_on_days(rng, day)
        order = np.argsort(signup, kind="stable")
        self.signup = signup[order]
        self.country = country[order].astype(np.int64)
        self.channel = channel[order].astype(np.int64)
        self.campaign = camp[order].astype(np.int64)
        self.currency = _COUNTRY_CURRENCY[self.country]
        rng = self._rng("customers")
        mobile = rng.random(n) < _COUNTRY_MOBILE[self.country]
        tablet = rng.random(n) < TABLET_SHARE
        self.device = np.where(tablet, 2, np.where(mobile, 1, 0)).astype(np.int64)
        fraud_p = np.where(self.campaign >= 0, FRAUD_ACCOUNT_SHARE_PAID, FRAUD_ACCOUNT_SHARE_ORGANIC)
        is_fraud = rng.random(n) < fraud_p
        tester = rng.random(n) < CARD_TESTER_SHARE
        self.fraud = np.where(is_fraud, np.where(tester, FRAUD_TESTER, FRAUD_STOLEN), FRAUD_NONE)
        self.device = np.where(is_fraud & (rng.random(n) < 0.7), 0, self.device)
        self.guest = np.where(self.fraud == FRAUD_TESTER, rng.random(n) < CARD_TESTER_GUEST_SHARE,
                              rng.random(n) < GUEST_CHECKOUT_SHARE)
        self.engagement = (rng.normal(0, 1, n) + np.asarray(ENGAGEMENT_BY_CHANNEL)[self.channel]
                           + np.asarray(ENGAGEMENT_BY_DEVICE)[self.device])
        self.home_ip = self._home_ips(np.arange(n), self.country)
        self.first_sub = rng.random(n) < FIRST_PURCHASE_SUBSCRIPTION_SHARE + 0.05 * (self.device == 0)
        same_session = rng.random(n) < FIRST_PURCHASE_DELAY_SAME_SESSION
        delay = np.where(same_session, rng.uniform(2, 45, n) * MINUTE_US,
                         np.exp(rng.normal(math.log(2.0), 1.0, n)) * DAY_US).astype(np.int64)
        delay = np.minimum(delay, 14 * DAY_US)
        room = np.maximum((self.cutoff - self.signup) * 9 // 10, SECOND_US)
        self.first_purchase = self.signup + np.minimum(delay, room)
        self.month_first = np.searchsorted(self.signup, cal.month_start_us, side="left")
        # compact dtypes keep the per-customer state small at benchmark sizes
        for name in ("country", "channel", "device", "fraud", "currency"):
            setattr(self, name, getattr(self, name).astype(np.int8))
        self.campaign = self.campaign.astype(np.int16)
        self.engagement = self.engagement.astype(np.float32)
        # behaviour state
        self.intent = np.zeros(n, dtype=bool)
        self.fail_score = np.zeros(n, dtype=np.float32)
        self.ticket_score = np.zeros(n, dtype=np.float32)
        self.failed_this_month = np.zeros(n, dtype=np.int32)
        self.cust_sub = np.full(n, -1, dtype=np.int64)
        self.last_sub_end = np.zeros(n, dtype=np.int64)
        self.ever_trial = np.zeros(n, dtype=bool)
        self.last_course = np.zeros(n, dtype=np.int64)
        self.owned = np.zeros(n, dtype=np.uint64)
        # payment instrument
        self.method = np.zeros(n, dtype=np.int8)
        self.brand = np.full(n, -1, dtype=np.int8)
        self.card_country = self.country.copy()
        self.card_seen = self.signup.copy()
        self.card_exp = np.full(n, -1, dtype=np.int32)
        self.provider = np.zeros(n, dtype=np.int8)
        self._new_instrument(rng, np.arange(n), self.first_purchase, CARD_EXPIRY_MONTHS_NEW)

    @property
    def cutoff(self) -> int:
        return self.cal.cutoff_us

    def _home_ips(self, cust: np.ndarray, country: np.ndarray) -> np.ndarray:
        """A stable synthetic IPv4 address per customer (first octet by country)."""
        x = _scramble(cust.astype(np.int64), self.seed * 7919 + 17).astype(np.uint64)
        first = (country.astype(np.uint64) * np.uint64(13) + np.uint64(31)) % np.uint64(200) + np.uint64(20)
        return ((first << np.uint64(24)) | (x & np.uint64(0xFFFFFF))).astype(np.uint32)

    def _new_instrument(self, rng: np.random.Generator, cust: np.ndarray, us: np.ndarray,
                        expiry_months: tuple[int, int]) -> None:
        """Give customers a new saved payment instrument (card, wallet or PayPal)."""
        n = len(cust)
        if n == 0:
            return
        country = self.country[cust]
        group = np.where(country == _TR, 0, np.where(country == _US, 1, np.where(_IS_EUROPE[country], 2, 3)))
        mix = np.array([METHOD_MIX["TR"], METHOD_MIX["US"], METHOD_MIX["EU"], METHOD_MIX["OTHER"]])
        method = _choice_rows(rng, mix[group])
        bgroup = np.where(country == _TR, 0, np.where(country == _US, 1, 2))
        bmix = np.array([BRAND_MIX["TR"], BRAND_MIX["US"], BRAND_MIX["OTHER"]])
        brand = np.where(method == M_CARD, _choice_rows(rng, bmix[bgroup]), -1)
        foreign = rng.random(n) < FOREIGN_CARD_SHARE
        other = _choice(rng, n, _COUNTRY_WEIGHT)
        card_country = np.where(foreign & (brand != 3), other, country)
        self.method[cust] = method
        self.brand[cust] = brand
        self.card_country[cust] = card_country
        self.card_seen[cust] = us
        exp = _month_number(us) + rng.integers(expiry_months[0], expiry_months[1] + 1, n)
        self.card_exp[cust] = np.where(method == M_CARD, exp, -1)
        self.provider[cust] = self._route(rng, method, brand, card_country, country)

    def _route(self, rng: np.random.Generator, method: np.ndarray, brand: np.ndarray,
               card_country: np.ndarray, country: np.ndarray) -> np.ndarray:
        """Payment service provider by method, card brand and countries."""
        n = len(method)
        u = rng.random(n)
        domestic_tr = (card_country == _TR) & (country == _TR)
        europe = _IS_EUROPE[country]
        adyen = np.where(europe, u < ADYEN_SHARE_EUROPE, u < ADYEN_SHARE_OTHER)
        card = np.where(brand == 3, P_IYZICO,
                        np.where(domestic_tr, np.where(u < IYZICO_SHARE_TR_CARDS, P_IYZICO, P_STRIPE),
                                 np.where(adyen, P_ADYEN, P_STRIPE)))
        wallet = np.where((country != _TR) & adyen, P_ADYEN, P_STRIPE)
        bank = np.where(country == _TR, P_IYZICO, np.where(europe, P_ADYEN, P_STRIPE))
        return np.select([method == M_CARD, method == M_PAYPAL, method == M_BANK],
                         [card, P_PAYPAL, bank], wallet).astype(np.int64)

    # -- payment contexts -----------------------------------------------------------------
    def _context(self, rng: np.random.Generator, cust: np.ndarray, us: np.ndarray, *,
                 product: np.ndarray, amount: np.ndarray, billing_reason: int | np.ndarray,
                 sub: np.ndarray | None = None, merchant_initiated: bool = False,
                 campaign: np.ndarray | None = None, code: np.ndarray | None = None,
                 session: np.ndarray | None = None, velocity: np.ndarray | None = None,
                 attempt: int = 1, original: np.ndarray | None = None,
                 allow_bank_transfer: bool = False) -> dict[str, np.ndarray]:
        """Attributes of payment attempts by customers with their saved instrument."""
        n = len(cust)
        country = self.country[cust]
        method = self.method[cust].copy()
        brand = self.brand[cust].copy()
        card_country = self.card_country[cust].copy()
        provider = self.provider[cust].copy()
        card_age = (us - self.card_seen[cust]) // DAY_US
        card_exp = self.card_exp[cust].copy()
        if allow_bank_transfer:
            share = np.full(n, BANK_TRANSFER_SHARE_OTHER)
            for code_, value in BANK_TRANSFER_SHARE.items():
                share[country == COUNTRY_CODES.index(code_)] = value
            bank = rng.random(n) < share
            method[bank] = M_BANK
            brand[bank] = -1
            card_country[bank] = country[bank]
            card_exp[bank] = -1
            provider[bank] = self._route(rng, method[bank], brand[bank], card_country[bank], country[bank])
        card_age = np.where(np.isin(method, (M_CARD, M_APPLE, M_GOOGLE)), np.maximum(card_age, 0), -1)
        ip = self.home_ip[cust].copy()
        ip_country = country.copy()
        if not merchant_initiated:
            travel = rng.random(n) < TRAVELLER_SHARE
            ip_country[travel] = _choice(rng, int(travel.sum()), _COUNTRY_WEIGHT)
            ip[travel] = rng.integers(0, 2**32, int(travel.sum()), dtype=np.uint64).astype(np.uint32)
        plan_type = np.where(product < N_COURSES, 0, _PLAN_TYPE[np.maximum(product - N_COURSES, 0)])
        referrer = np.full(n, -1, dtype=np.int64)
        if not merchant_initiated:
            referrer = self._referrers(rng, self.channel[cust], campaign)
        none = np.full(n, -1, dtype=np.int64)
        return {
            "cust": cust.astype(np.int64), "t": us.astype(np.int64), "amount": amount.astype(np.int64),
            "cur": self.currency[cust], "product": product.astype(np.int64),
            "sub": none.copy() if sub is None else sub.astype(np.int64),
            "breason": np.broadcast_to(np.asarray(billing_reason, dtype=np.int64), (n,)).copy(),
            "attempt": np.full(n, attempt, dtype=np.int64),
            "orig": none.copy() if original is None else original.astype(np.int64),
            "plan_type": plan_type.astype(np.int64),
            "campaign": none.copy() if campaign is None else campaign.astype(np.int64),
            "code": none.copy() if code is None else code.astype(np.int64),
            "method": method, "brand": brand, "card_country": card_country,
            "card_age": card_age.astype(np.int64), "card_exp": card_exp, "provider": provider,
            "country": country, "ip_country": ip_country, "ip": ip.astype(np.int64),
            "device": self.device[cust].copy(), "referrer": referrer,
            "fraud": self.fraud[cust].copy(), "velocity": np.ones(n, np.int64) if velocity is None else velocity.astype(np.int64),
            "mit": np.full(n, merchant_initiated), "session": none.copy() if session is None else session.astype(np.int64),
        }

    def _referrers(self, rng: np.random.Generator, channel: np.ndarray, campaign: np.ndarray | None) -> np.ndarray:
        n = len(channel)
        ch = channel.copy()
        if campaign is None:
            ch = np.where(rng.random(n) < 0.3, ch, -1)  # later visits: mostly direct
        else:
            ch = np.where(campaign >= 0, ch, np.where(rng.random(n) < 0.5, ch, -1))
        r = rng.random(n)
        social = np.select([r < 0.45, r < 0.7, r < 0.9], [2, 3, 4], 5)
        return np.select(
            [ch == CH_SEARCH, ch == CH_SOCIAL, ch == CH_AFFILIATE, ch == CH_EMAIL, ch == CH_ORGANIC],
            [np.where(r < 0.85, 0, 1), social, np.where(r < 0.6, 6, 7), np.where(r < 0.6, 8, 9),
             np.where(r < 0.55, 0, np.where(r < 0.65, 10, -1))],
            -1,
        ).astype(np.int64)

    def _authorize(self, rng: np.random.Generator, p: dict[str, np.ndarray], *, retry: bool = False) -> None:
        """Risk score, rule hits, outcome and latency of payment attempts (adds keys to ``p``)."""
        n = len(p["cust"])
        p["txn"] = self._next("txn", n)
        if n == 0:
            for k in ("success", "reason", "risk", "flags", "done"):
                p[k] = np.zeros(0, dtype=np.float64 if k == "risk" else np.int64)
            p["success"] = p["success"].astype(bool)
            return
        cust, t = p["cust"], p["t"]
        amount_usd = p["amount"] / 100.0 * self.usd_per_unit(p["cur"], t)
        night = self.cal.local_hour(t) < 6
        mit = p["mit"]
        card_age = p["card_age"]
        has_age = card_age >= 0
        new_card = has_age & (card_age < 1) & ~mit
        foreign = p["card_country"] != p["country"]
        mismatch = (p["ip_country"] != p["card_country"]) & (p["method"] != M_BANK)
        account_age = (t - self.signup[cust]) / DAY_US
        new_account = account_age < 1.0
        fraud = p["fraud"] != FRAUD_NONE
        velocity = p["velocity"]
        z = (RISK_INTERCEPT + RISK_NEW_CARD * new_card + RISK_IP_MISMATCH * mismatch
             + RISK_FOREIGN_CARD * foreign + RISK_PER_EXTRA_ATTEMPT * np.minimum(velocity - 1, 4)
             + RISK_PER_LOG_AMOUNT * np.log1p(amount_usd / 50.0) + RISK_NEW_ACCOUNT * new_account
             + RISK_NIGHT * night + RISK_GUEST * self.guest[cust] + RISK_MERCHANT_INITIATED * mit
             + RISK_FRAUD_LIFT * fraud + rng.normal(0, RISK_NOISE, n))
        risk = np.round(100 * _sigmoid(z), 1)
        blocked = (risk >= BLOCK_RISK_SCORE) & ~mit
        expired = (p["card_exp"] >= 0) & (p["card_exp"] < _month_number(t))
        d = (np.asarray(DECLINE_BASE_LOGIT)[p["method"]]
             + np.array([PROVIDER_TERMS[x].decline_effect for x in PROVIDERS])[p["provider"]]
             + _COUNTRY_DECLINE[p["country"]]
             + DECLINE_AMOUNT_PER_LOG * np.log(np.maximum(amount_usd, 1.0) / 30.0)
             + np.where(has_age & (card_age < 7), DECLINE_NEW_CARD,
                        np.where(has_age & (card_age < 90), DECLINE_RECENT_CARD,
                                 np.where(card_age > 365, DECLINE_OLD_CARD, 0.0)))
             + DECLINE_NIGHT * night + DECLINE_MERCHANT_INITIATED * mit + DECLINE_FOREIGN_CARD * foreign
             + DECLINE_RETRY * retry
             + np.where(p["fraud"] == FRAUD_TESTER, DECLINE_CARD_TESTING,
                        np.where(p["fraud"] == FRAUD_STOLEN, DECLINE_STOLEN_CARD, 0.0)))
        declined = rng.random(n) < _sigmoid(d)
        fail = blocked | expired | declined
        # decline reasons by context
        ctx = np.select(
            [fraud & (p["method"] == M_CARD), p["method"] == M_CARD, p["method"] == M_PAYPAL,
             p["method"] == M_BANK],
            [5, np.where(mit, 1, 0), 3, 4], 2)
        table = np.array([REASON_WEIGHTS[k] for k in
                          ("card_customer", "card_renewal", "wallet", "paypal", "bank", "stolen_card")])
        w = table[ctx].copy()
        w[:, R_AUTH] *= np.where(_IS_EUROPE[p["card_country"]], SCA_AUTH_REQUIRED_BOOST, 1.0)
        w[:, R_PROCESSING] *= np.where(p["provider"] == P_IYZICO, IYZICO_PROCESSING_ERROR_BOOST, 1.0)
        reason = np.where(fail, _choice_rows(rng, w), -1)
        reason = np.where(expired, R_EXPIRED, reason)
        reason = np.where(blocked, R_FRAUD, reason)
        # latency
        median_ms = np.array([PROVIDER_TERMS[x].latency_ms for x in PROVIDERS])[p["provider"]]
        latency = median_ms * 1000 * np.exp(rng.normal(0, LATENCY_SIGMA, n))
        challenge = (~mit) & (p["method"] == M_CARD) & (rng.random(n) < THREE_DS_SHARE)
        latency += challenge * THREE_DS_MEDIAN_S * SECOND_US * np.exp(rng.normal(0, 0.8, n))
        bank = p["method"] == M_BANK
        latency = np.where(bank & ~fail, BANK_TRANSFER_MEDIAN_HOURS * HOUR_US * np.exp(rng.normal(0, 0.9, n)), latency)
        latency = np.where(fail & ~bank, latency * 0.8, latency)
        review = ~fail & ~mit & (risk >= HIGH_RISK_SCORE)
        latency = np.where(review, latency + REVIEW_HOLD_MEDIAN_HOURS * HOUR_US * np.exp(rng.normal(0, 0.8, n)), latency)
        flags = (I_MISMATCH * mismatch + I_VELOCITY * (velocity >= VELOCITY_ATTEMPTS)
                 + I_TESTING * ((velocity >= CARD_TESTING_ATTEMPTS) & (amount_usd < 25) & new_card)
                 + I_HIGH_VALUE * ((amount_usd >= HIGH_VALUE_USD) & new_account & ~mit)
                 + I_HIGH_RISK * (risk >= HIGH_RISK_SCORE))
        p["success"] = ~fail
        p["reason"] = reason.astype(np.int64)
        p["risk"] = risk
        p["flags"] = flags.astype(np.int64)
        p["done"] = t + np.maximum(latency, 50_000).astype(np.int64)

    def _checkout(self, rng: np.random.Generator, cust: np.ndarray, us: np.ndarray, *,
                  product: np.ndarray, amount: np.ndarray, billing_reason: int,
                  campaign: np.ndarray | None, code: np.ndarray, velocity: np.ndarray | None = None,
                  allow_bank_transfer: bool = False,
                  ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
        """Customer-initiated payments in a checkout session, with one customer retry.

        Returns the attempts, whether each intent was paid, the attempt row that paid it and
        the intent of every attempt row.
        """
        n = len(cust)
        session = self._next("session", n)
        expired = (self.card_exp[cust] >= 0) & (self.card_exp[cust] < _month_number(us))
        self._new_instrument(rng, cust[expired], us[expired], CARD_EXPIRY_MONTHS_UPDATED)
        first = self._context(rng, cust, us, product=product, amount=amount,
                              billing_reason=billing_reason, campaign=campaign, code=code,
                              session=session, velocity=velocity, allow_bank_transfer=allow_bank_transfer)
        self._authorize(rng, first)
        settled_fail = ~first["success"] & (first["done"] < self.cutoff)
        retry_p = np.where(first["reason"] == R_FRAUD, 0.3, CUSTOMER_RETRY_RATE)
        again = settled_fail & (rng.random(n) < retry_p) & (self.fraud[cust] != FRAUD_TESTER)
        idx = np.flatnonzero(again)
        t2 = first["done"][idx] + rng.uniform(20, 240, len(idx)).astype(np.int64) * SECOND_US
        keep = t2 < self.cutoff
        idx, t2 = idx[keep], t2[keep]
        switch = rng.random(len(idx)) < CUSTOMER_RETRY_NEW_METHOD
        self._new_instrument(rng, cust[idx][switch], t2[switch], CARD_EXPIRY_MONTHS_UPDATED)
        second = self._context(rng, cust[idx], t2, product=product[idx], amount=amount[idx],
                               billing_reason=billing_reason,
                               campaign=None if campaign is None else campaign[idx], code=code[idx],
                               session=session[idx], velocity=first["velocity"][idx] + 1)
        self._authorize(rng, second)
        paid = first["success"].copy()
        row = np.where(paid, np.arange(n), -1)
        paid[idx] |= second["success"]
        row[idx] = np.where(second["success"], n + np.arange(len(idx)), row[idx])
        attempts = _concat([first, second]) or first
        intent = np.concatenate([np.arange(n), idx])
        self._sessions.append({"session": session, "cust": cust, "product": product,
                               "t": us, "campaign": first["campaign"], "device": first["device"],
                               "country": first["country"], "method": first["method"],
                               "trial": np.zeros(n, dtype=bool)})
        return attempts, paid, row, intent

    # -- the month loop -------------------------------------------------------------------
    def run(self) -> None:
        self.sink.add("fx_rates", self._fx_table())
        self.sink.add("products", self.cat.rows())
        self.sink.add("marketing_spend", self._marketing_table())
        for mi in range(self.cal.n_months):
            self._month(mi)
            if self.progress:
                self.progress("months", mi + 1, self.cal.n_months)
        self.sink.add("subscriptions", self._subscriptions_table())
        self._sha256.close()

    def _month(self, mi: int) -> None:
        cal = self.cal
        ms, me = int(cal.month_start_us[mi]), int(cal.month_start_us[mi + 1])
        rng = self._rng("month", mi)
        self._attempts: list[dict[str, np.ndarray]] = []
        self._sessions: list[dict[str, np.ndarray]] = []
        self._events: list[dict[str, np.ndarray]] = []
        self._tickets: list[dict[str, np.ndarray]] = []
        self.failed_this_month[:] = 0
        lo, hi = int(self.month_first[mi]), int(self.month_first[mi + 1])
        new = np.arange(lo, hi)
        self.sink.add("customers", self._customers_table(new))
        legit_new = new[self.fraud[new] == FRAUD_NONE]
        self._subscription_starts(rng, mi, ms, me, legit_new)
        self._trial_endings(rng, ms, me)
        cancels = self._cancellation_decisions(rng, ms, me)
        self._renewals(rng, ms, me, cancels)
        self._apply_cancellations(rng, me, cancels)
        self._plan_changes(rng, ms, me)
        self._course_purchases(rng, mi, ms, me, legit_new)
        self._fraud_attempts(rng, new[self.fraud[new] != FRAUD_NONE])
        payments = _concat(self._attempts)
        self._emit_payments(rng, payments, mi)
        self._emit_subscription_events()
        self._behaviour(rng, mi, ms, me)

    # -- subscriptions --------------------------------------------------------------------
    def _subscription_starts(self, rng: np.random.Generator, mi: int, ms: int, me: int,
                             legit_new: np.ndarray) -> None:
        """New subscriptions: first purchases, course buyers converting, win-backs."""
        cal = self.cal
        n_all = int(self.month_first[mi])
        existing = np.arange(n_all)
        # first purchases of this month's signups that chose a plan
        first = legit_new[self.first_sub[legit_new]]
        t_first = self.first_purchase[first]
        # course buyers without a subscription convert
        eng = self.engagement[existing]
        no_sub = (self.cust_sub[existing] < 0) & (self.last_course[existing] > 0) & (self.fraud[existing] == FRAUD_NONE)
        convert = existing[no_sub & (rng.random(n_all) < COURSE_TO_SUBSCRIPTION_MONTHLY * np.exp(0.5 * eng))]
        # churned subscribers come back
        cur = self.cust_sub[existing]
        ended = (cur >= 0) & (self.subs.ended_at[np.maximum(cur, 0)] > 0)
        recent = ended & (self.last_sub_end[existing] > ms - WINBACK_MONTHS * 30 * DAY_US)
        winback = existing[recent & (rng.random(n_all) < WINBACK_MONTHLY_RATE * np.exp(0.3 * eng))]
        lo_day, hi_day = cal.month_days(mi)
        later = np.concatenate([convert, winback])
        days = cal.days_between(rng, np.full(len(later), lo_day), np.full(len(later), hi_day))
        t_later = cal.times_on_days(rng, days)
        t_later = np.maximum(t_later, self.last_sub_end[later] + 7 * DAY_US)
        cust = np.concatenate([first, later])
        t = np.concatenate([t_first, t_later])
        source = np.concatenate([np.zeros(len(first)), np.ones(len(convert)), np.full(len(winback), 2)]).astype(np.int64)
        keep = t < self.cutoff
        cust, t, source = cust[keep], t[keep], source[keep]
        n = len(cust)
        if n == 0:
            return
        country = self.country[cust]
        eng = self.engagement[cust]
        tier_w = np.tile(TIER_WEIGHTS, (n, 1)) * np.exp(np.outer(eng, (-0.3, 0.1, 0.2)))
        tier = _choice_rows(rng, tier_w)
        annual_p = np.where(country == _TR, ANNUAL_SHARE_TR, ANNUAL_SHARE)
        annual = rng.random(n) < annual_p
        plan = tier * 2 + annual
        product = N_COURSES + plan
        price = self.cat.price(product, country, t)
        # permanent discount codes
        day = np.clip(cal.day_index(t), 0, cal.n_days - 1)
        code = np.full(n, -1, dtype=np.int64)
        u = rng.random(n)
        student_p = np.where(country == _TR, STUDENT_CODE_USE_TR, STUDENT_CODE_USE)
        code = np.where(u < student_p, 1, code)
        code = np.where((tier == 2) & (rng.random(n) < TEAM_CODE_USE), 3, code)
        code = np.where((source == 2) & (rng.random(n) < WINBACK_CODE_USE), 2, code)
        bf = (self.cat.sub_code[day] >= 0) & (rng.random(n) < self.cat.sub_code_use[day])
        code = np.where(bf, self.cat.sub_code[day], code)
        discount = np.where(code >= 0, self.cat.code_percent[np.maximum(code, 0)], 0.0)
        campaign = np.where(source == 0, self.campaign[cust], -1)
        trial = (_PLAN_TRIAL_DAYS[plan] > 0) & ~self.ever_trial[cust] & (source != 2)
        # trials: no payment until the trial ends
        ti = np.flatnonzero(trial)
        if len(ti):
            sub = self._new_subscriptions(cust[ti], plan[ti], price[ti], discount[ti], code[ti], t[ti])
            self.subs.trial_end[sub] = t[ti] + _PLAN_TRIAL_DAYS[plan[ti]] * DAY_US
            self.ever_trial[cust[ti]] = True
            convert_p = _sigmoid(TRIAL_CONVERSION_LOGIT + 0.8 * eng[ti] + 0.2 * (self.device[cust[ti]] == 0))
            will = rng.random(len(ti)) < convert_p
            self.subs.will_convert[sub] = will
            self._event(sub, E_TRIAL, t[ti])
            session = self._next("session", len(ti))
            self._sessions.append({"session": session, "cust": cust[ti], "product": product[ti], "t": t[ti],
                                   "campaign": campaign[ti], "device": self.device[cust[ti]],
                                   "country": country[ti], "method": self.method[cust[ti]],
                                   "trial": np.ones(len(ti), dtype=bool)})
            # trials that will not convert are cancelled during the trial
            nc = sub[~will]
            length = self.subs.trial_end[nc] - self.subs.started[nc]
            t_cancel = self.subs.started[nc] + (rng.uniform(0.1, 0.95, len(nc)) * length).astype(np.int64)
            ok = t_cancel < self.cutoff
            nc, t_cancel = nc[ok], t_cancel[ok]
            self.subs.cancel_pending[nc] = True
            self.subs.canceled_at[nc] = t_cancel
            self._event(nc, E_CANCEL, t_cancel, effective=self.subs.trial_end[nc], reason=2)
        # paid starts: the first payment is taken at checkout
        pi = np.flatnonzero(~trial)
        if len(pi):
            amount = np.round(price[pi] * (1 - discount[pi] / 100)).astype(np.int64)
            attempts, paid, row, intent = self._checkout(
                rng, cust[pi], t[pi], product=product[pi], amount=amount, billing_reason=B_CREATE,
                campaign=campaign[pi], code=code[pi])
            ok = np.flatnonzero(paid)
            t_paid = attempts["t"][row[ok]]
            sub = self._new_subscriptions(cust[pi][ok], plan[pi][ok], price[pi][ok], discount[pi][ok],
                                          code[pi][ok], t_paid)
            self._start_period(sub, t_paid)
            self._event(sub, E_START, t_paid)
            # every attempt of a subscription that started carries its id; declined attempts of
            # a subscription that never started keep a null subscription
            sub_of_intent = np.full(len(pi), -1, dtype=np.int64)
            sub_of_intent[ok] = sub
            attempts["sub"] = sub_of_intent[intent]
            self._attempts.append(attempts)

    def _new_subscriptions(self, cust: np.ndarray, plan: np.ndarray, price: np.ndarray,
                           discount: np.ndarray, code: np.ndarray, started: np.ndarray) -> np.ndarray:
        s = self.subs
        idx = s.add(len(cust))
        s.cust[idx] = cust
        s.plan[idx] = plan
        s.price[idx] = price
        s.cur[idx] = self.currency[cust]
        s.discount[idx] = discount
        s.code[idx] = code
        s.started[idx] = started
        self.cust_sub[cust] = idx
        self.intent[cust] = False
        return idx

    def _start_period(self, sub: np.ndarray, us: np.ndarray) -> None:
        s = self.subs
        s.anchor[sub] = us
        s.periods[sub] = 1
        s.period_start[sub] = us
        s.period_end[sub] = _add_months(us, _PLAN_INTERVAL[s.plan[sub]])

    def _event(self, sub: np.ndarray, kind: int, occurred: np.ndarray, *, effective: np.ndarray | None = None,
               previous: np.ndarray | None = None, reason: int = -1) -> None:
        if len(sub) == 0:
            return
        s = self.subs
        n = len(sub)
        self._events.append({
            "sub": sub.astype(np.int64), "kind": np.full(n, kind), "occurred": occurred.astype(np.int64),
            "effective": (occurred if effective is None else effective).astype(np.int64),
            "plan": s.plan[sub].copy(), "previous": np.full(n, -1) if previous is None else previous.astype(np.int64),
            "price": s.price[sub].copy(), "discount": s.discount[sub].copy(), "reason": np.full(n, reason),
        })

    def _mit_payments(self, rng: np.random.Generator, sub: np.ndarray, us: np.ndarray, *,
                      billing_reason: int, attempt: int = 1, original: np.ndarray | None = None,
                      retry: bool = False) -> dict[str, np.ndarray]:
        """Merchant-initiated subscription charges (renewals, trial conversions, retries)."""
        s = self.subs
        cust = s.cust[sub]
        # card networks' account updater silently refreshes some expiring cards
        exp = (self.card_exp[cust] >= 0) & (self.card_exp[cust] < _month_number(us))
        upd = exp & np.isin(self.brand[cust], (0, 1)) & (rng.random(len(sub)) < ACCOUNT_UPDATER_RATE) & (attempt == 1)
        self.card_exp[cust[upd]] = _month_number(us[upd]) + rng.integers(24, 49, int(upd.sum()))
        amount = np.round(s.price[sub] * (1 - s.discount[sub] / 100)).astype(np.int64)
        p = self._context(rng, cust, us, product=N_COURSES + s.plan[sub], amount=amount,
                          billing_reason=billing_reason, sub=sub, merchant_initiated=True,
                          code=s.code[sub], attempt=attempt, original=original)
        self._authorize(rng, p, retry=retry)
        self._attempts.append(p)
        return p

    def _charge_with_dunning(self, rng: np.random.Generator, sub: np.ndarray, us: np.ndarray,
                             billing_reason: int) -> None:
        """Charge subscriptions; failed charges are retried, unrecovered ones cancel."""
        in_window = us < self.cutoff  # a charge scheduled after the end has not happened yet
        sub, us = sub[in_window], us[in_window]
        if len(sub) == 0:
            return
        s = self.subs
        first = self._mit_payments(rng, sub, us, billing_reason=billing_reason)
        failed = ~first["success"] & (first["done"] < self.cutoff)
        np.add.at(self.failed_this_month, first["cust"][failed], 1)
        sub, f1 = sub[failed], first["done"][failed]
        t0, orig, reason = first["t"][failed], first["txn"][failed], first["reason"][failed]
        if len(sub) == 0:
            return
        s.past_due_since[sub] = f1
        failing = np.ones(len(sub), dtype=bool)
        last_fail = f1.copy()
        retries = np.zeros(len(sub), dtype=np.int64)
        for j, (lo, hi) in enumerate(RETRY_SCHEDULE_DAYS):
            t = t0 + (rng.uniform(lo, hi, len(sub)) * DAY_US).astype(np.int64)
            go = np.flatnonzero(failing & (t < self.cutoff) & (retries == j))
            if len(go) == 0:
                break
            cust = s.cust[sub[go]]
            upd_p = np.where(reason[go] == R_EXPIRED, CARD_UPDATE_AFTER_EXPIRED, CARD_UPDATE_BEFORE_RETRY)
            upd = rng.random(len(go)) < upd_p
            self._new_instrument(rng, cust[upd], t[go][upd], CARD_EXPIRY_MONTHS_UPDATED)
            p = self._mit_payments(rng, sub[go], t[go], billing_reason=B_RETRY, attempt=j + 2,
                                   original=orig[go], retry=True)
            retries[go] += 1
            settled = p["done"] < self.cutoff
            ok = p["success"] & settled
            bad = ~p["success"] & settled
            np.add.at(self.failed_this_month, p["cust"][bad], 1)
            failing[go[ok]] = False
            failing[go[~settled]] = False  # outcome not known at the end of the window
            s.past_due_since[sub[go[ok]]] = 0
            last_fail[go[bad]] = p["done"][bad]
            reason[go[bad]] = p["reason"][bad]
        exhausted = np.flatnonzero(failing & (retries == len(RETRY_SCHEDULE_DAYS)))
        sub_x = sub[exhausted]
        s.unpaid_since[sub_x] = last_fail[exhausted]
        t_cancel = last_fail[exhausted] + int(DUNNING_GRACE_DAYS * DAY_US)
        done = t_cancel < self.cutoff
        self._end(sub_x[done], t_cancel[done], canceled=t_cancel[done])
        self._event(sub_x[done], E_CANCEL, t_cancel[done], reason=1)

    def _end(self, sub: np.ndarray, us: np.ndarray, *, canceled: np.ndarray | None = None) -> None:
        s = self.subs
        s.ended_at[sub] = us
        if canceled is not None:
            s.canceled_at[sub] = canceled
        s.cancel_pending[sub] = False
        cust = s.cust[sub]
        self.last_sub_end[cust] = us

    def _trial_endings(self, rng: np.random.Generator, ms: int, me: int) -> None:
        s = self.subs
        idx = np.arange(s.n)
        ending = idx[(s.trial_end[: s.n] >= ms) & (s.trial_end[: s.n] < min(me, self.cutoff))
                     & (s.ended_at[: s.n] == 0) & (s.period_end[: s.n] == 0)]
        if len(ending) == 0:
            return
        stop = s.cancel_pending[ending]
        self._end(ending[stop], s.trial_end[ending[stop]])
        conv = ending[~stop]
        t = s.trial_end[conv]
        self._start_period(conv, t)
        self._event(conv, E_START, t)
        self._charge_with_dunning(rng, conv, t + rng.integers(1, 120, len(conv)) * SECOND_US, B_CREATE)

    def _active_paid(self) -> np.ndarray:
        """Subscriptions in a paid period, not ending, not in dunning."""
        s = self.subs
        n = s.n
        return np.flatnonzero((s.ended_at[:n] == 0) & (s.period_end[:n] > 0) & ~s.cancel_pending[:n]
                              & (s.past_due_since[:n] == 0) & (s.unpaid_since[:n] == 0))

    def _cancellation_decisions(self, rng: np.random.Generator, ms: int, me: int) -> dict[str, np.ndarray]:
        """When this month's leavers cancel, and which of them change their mind."""
        s = self.subs
        active = self._active_paid()
        sub = active[self.intent[s.cust[active]]]
        n = len(sub)
        renews = (s.period_end[sub] >= ms) & (s.period_end[sub] < me)
        annual = _PLAN_INTERVAL[s.plan[sub]] == 12
        lo = np.maximum(ms, s.started[sub] + HOUR_US)
        hi = np.where(annual & renews, s.period_end[sub], me)
        hi = np.maximum(hi, lo + MINUTE_US)
        t = lo + (rng.random(n) * (hi - lo)).astype(np.int64)
        immediate = rng.random(n) < IMMEDIATE_CANCEL_SHARE
        # a cancellation at period end ends the current period, or the next one if the
        # subscription renews before the customer cancels
        renews_first = renews & (s.period_end[sub] <= t)
        following = _add_months(s.anchor[sub], (s.periods[sub] + 1) * _PLAN_INTERVAL[s.plan[sub]])
        effective = np.where(renews_first, following, s.period_end[sub])
        # reactivations happen within the month of the request (the next month's decisions
        # must see the subscription's final state)
        until = np.minimum(effective, min(me, self.cutoff))
        back = ~immediate & (rng.random(n) < REACTIVATION_RATE) & (until - t > HOUR_US)
        t_back = t + (rng.uniform(0.05, 0.95, n) * np.maximum(until - t, 0)).astype(np.int64)
        keep = t < self.cutoff
        return {"sub": sub[keep], "t": t[keep], "immediate": immediate[keep], "back": back[keep],
                "t_back": t_back[keep], "effective": effective[keep]}

    def _renewals(self, rng: np.random.Generator, ms: int, me: int, cancels: dict[str, np.ndarray]) -> None:
        """Charge subscriptions whose period ends this month; end those cancelled before."""
        s = self.subs
        n = s.n
        due = np.flatnonzero((s.ended_at[:n] == 0) & (s.period_end[:n] >= ms)
                             & (s.period_end[:n] < min(me, self.cutoff)))
        if len(due) == 0:
            return
        # a cancellation requested before the renewal stops it (unless the customer came back)
        stop_at = np.full(n, np.iinfo(np.int64).max)
        final = cancels["immediate"] | ~cancels["back"]
        stop_at[cancels["sub"][final]] = cancels["t"][final]
        stops = s.cancel_pending[due] | (stop_at[due] < s.period_end[due])
        ending = due[stops & s.cancel_pending[due]]
        self._end(ending, s.period_end[ending])
        renew = due[~stops]
        t_due = s.period_end[renew].copy()
        s.periods[renew] += 1
        s.period_start[renew] = t_due
        s.period_end[renew] = _add_months(s.anchor[renew], s.periods[renew] * _PLAN_INTERVAL[s.plan[renew]])
        charge_at = t_due + rng.integers(60, 2 * 3600, len(renew)) * SECOND_US
        self._charge_with_dunning(rng, renew, charge_at, B_CYCLE)

    def _apply_cancellations(self, rng: np.random.Generator, me: int, cancels: dict[str, np.ndarray]) -> None:
        """Cancel events (immediate or at period end) and reactivations."""
        s = self.subs
        live = (s.ended_at[cancels["sub"]] == 0) & (s.past_due_since[cancels["sub"]] == 0) & (
            s.unpaid_since[cancels["sub"]] == 0)
        sub, t, immediate, back, t_back, effective = (
            cancels[k][live] for k in ("sub", "t", "immediate", "back", "t_back", "effective"))
        now = sub[immediate]
        self._end(now, t[immediate], canceled=t[immediate])
        self._event(now, E_CANCEL, t[immediate], reason=0)
        later, t_l, back_l, t_back_l = sub[~immediate], t[~immediate], back[~immediate], t_back[~immediate]
        effective = effective[~immediate]
        self._event(later, E_CANCEL, t_l, effective=effective, reason=0)
        self._event(later[back_l], E_REACTIVATE, t_back_l[back_l])
        leaving = later[~back_l]
        s.cancel_pending[leaving] = True
        s.canceled_at[leaving] = t_l[~back_l]
        # periods that end within this month end now (the renewal step has already run)
        eff = effective[~back_l]
        end_now = eff < min(me, self.cutoff)
        self._end(leaving[end_now], eff[end_now])

    def _plan_changes(self, rng: np.random.Generator, ms: int, me: int) -> None:
        s = self.subs
        active = self._active_paid()
        active = active[s.started[active] < ms]
        if len(active) == 0:
            return
        eng = self.engagement[s.cust[active]]
        plan = s.plan[active]
        can_up = np.isin(plan, list(PLAN_UPGRADE))
        can_down = np.isin(plan, list(PLAN_DOWNGRADE))
        u = rng.random(len(active))
        up_p = UPGRADE_MONTHLY_RATE * np.exp(0.5 * eng) * can_up
        down_p = DOWNGRADE_MONTHLY_RATE * np.exp(-0.5 * eng) * can_down
        up = u < up_p
        down = ~up & (u < up_p + down_p)
        for mask, mapping, kind in ((up, PLAN_UPGRADE, E_UPGRADE), (down, PLAN_DOWNGRADE, E_DOWNGRADE)):
            sub = active[mask]
            if len(sub) == 0:
                continue
            lo = np.maximum(ms, s.period_start[sub])
            t = lo + (rng.random(len(sub)) * np.maximum(me - lo, MINUTE_US)).astype(np.int64)
            keep = t < self.cutoff
            sub, t = sub[keep], t[keep]
            previous = s.plan[sub].copy()
            new_plan = np.array([mapping[int(x)] for x in previous], dtype=np.int64)
            s.plan[sub] = new_plan
            s.price[sub] = self.cat.price(N_COURSES + new_plan, self.country[s.cust[sub]], t)
            self._event(sub, kind, t, previous=N_COURSES + previous)

    # -- courses and fraud ----------------------------------------------------------------
    def _course_purchases(self, rng: np.random.Generator, mi: int, ms: int, me: int, legit_new: np.ndarray) -> None:
        cal = self.cal
        first = legit_new[~self.first_sub[legit_new]]
        t_first = self.first_purchase[first]
        existing = np.arange(int(self.month_first[mi]))
        ok = (self.fraud[existing] == FRAUD_NONE) & ~self.guest[existing]
        existing = existing[ok]
        has_sub = self.cust_sub[existing] >= 0
        rate = (COURSE_REPEAT_MONTHLY_RATE * np.exp(0.6 * self.engagement[existing])
                * np.where(has_sub, COURSE_REPEAT_SUBSCRIBER_FACTOR, 1.0)
                * cal.purchase_weight[slice(*cal.month_days(mi))].mean())
        k = np.minimum(rng.poisson(rate), 3)
        repeat = np.repeat(existing, k)
        lo_day, hi_day = cal.month_days(mi)
        days = cal.days_between(rng, np.full(len(repeat), lo_day), np.full(len(repeat), hi_day))
        t_repeat = cal.times_on_days(rng, days)
        cust = np.concatenate([first, repeat])
        t = np.concatenate([t_first, t_repeat])
        is_first = np.concatenate([np.ones(len(first), bool), np.zeros(len(repeat), bool)])
        # a second course in the same visit
        basket = rng.random(len(cust)) < BASKET_SECOND_COURSE
        b = np.flatnonzero(basket)
        cust = np.concatenate([cust, cust[b]])
        t = np.concatenate([t, t[b] + rng.integers(60, 600, len(b)) * SECOND_US])
        is_first = np.concatenate([is_first, is_first[b]])
        velocity = np.concatenate([np.ones(len(basket), np.int64), np.full(len(b), 2)])
        keep = t < self.cutoff
        cust, t, is_first, velocity = cust[keep], t[keep], is_first[keep], velocity[keep]
        if len(cust) == 0:
            return
        country = self.country[cust]
        product = self.cat.pick_courses(rng, country, t, self.owned[cust])
        price = self.cat.price(product, country, t)
        day = np.clip(cal.day_index(t), 0, cal.n_days - 1)
        code = np.full(len(cust), -1, dtype=np.int64)
        code = np.where(is_first & (rng.random(len(cust)) < WELCOME_CODE_USE), 0, code)
        seasonal = (self.cat.course_code[day] >= 0) & (rng.random(len(cust)) < self.cat.course_code_use[day])
        code = np.where(seasonal, self.cat.course_code[day], code)
        discount = np.where(code >= 0, self.cat.code_percent[np.maximum(code, 0)], 0.0)
        amount = np.round(price * (1 - discount / 100)).astype(np.int64)
        campaign = np.where(is_first, self.campaign[cust], -1)
        attempts, paid, row, _ = self._checkout(rng, cust, t, product=product, amount=amount,
                                             billing_reason=B_PURCHASE, campaign=campaign, code=code,
                                             velocity=velocity, allow_bank_transfer=True)
        self._attempts.append(attempts)
        bought = np.flatnonzero(paid)
        c = cust[bought]
        np.bitwise_or.at(self.owned, c, np.uint64(1) << product[bought].astype(np.uint64))
        self.last_course[c] = np.maximum(self.last_course[c], attempts["t"][row[bought]])
        self.engagement[c] += 0.15

    def _fraud_attempts(self, rng: np.random.Generator, fraudsters: np.ndarray) -> None:
        """Card-testing bursts and stolen-card purchases by this month's fraud accounts."""
        if len(fraudsters) == 0:
            return
        cal = self.cal
        testers = fraudsters[self.fraud[fraudsters] == FRAUD_TESTER]
        if len(testers):
            k = CARD_TEST_ATTEMPTS[0] + rng.poisson(CARD_TEST_ATTEMPTS[1], len(testers))
            cust = np.repeat(testers, k)
            pos = np.arange(len(cust)) - np.repeat(np.cumsum(k) - k, k)
            t0 = self.signup[testers] + rng.uniform(1, 30, len(testers)).astype(np.int64) * MINUTE_US
            span = rng.uniform(*CARD_TEST_BURST_MINUTES, len(testers)) * MINUTE_US
            t = np.repeat(t0, k) + (pos / np.repeat(k, k) * np.repeat(span, k)).astype(np.int64)
            t += rng.integers(0, 20, len(cust)) * SECOND_US
            keep = t < self.cutoff
            cust, t, pos = cust[keep], t[keep], pos[keep]
            n = len(cust)
            product = np.full(n, self.cat.cheapest_course)
            p = self._context(rng, cust, t, product=product, amount=self.cat.price(product, self.country[cust], t),
                              billing_reason=B_PURCHASE, velocity=np.minimum(pos + 1, 10))
            self._fresh_cards(rng, p)
            self._fraud_ip(rng, p, mismatch_share=0.8)
            self._authorize(rng, p)
            self._attempts.append(p)
        stolen = fraudsters[self.fraud[fraudsters] == FRAUD_STOLEN]
        if len(stolen):
            k = rng.integers(STOLEN_CARD_PURCHASES[0], STOLEN_CARD_PURCHASES[1] + 1, len(stolen))
            cust = np.repeat(stolen, k)
            pos = np.arange(len(cust)) - np.repeat(np.cumsum(k) - k, k)
            t0 = self.signup[stolen] + rng.uniform(2, 90, len(stolen)).astype(np.int64) * MINUTE_US
            t = np.repeat(t0, k) + (pos * rng.uniform(3, 15, len(cust)) * MINUTE_US).astype(np.int64)
            keep = t < self.cutoff
            cust, t, pos = cust[keep], t[keep], pos[keep]
            n = len(cust)
            country = self.country[cust]
            day = np.clip(cal.day_index(t), 0, cal.n_days - 1)
            # the most expensive courses on sale
            w = (_PRODUCT_USD[:N_COURSES] ** 3)[None, :] * (
                (self.cat.available_from[:N_COURSES][None, :] <= day[:, None])
                & (day[:, None] < self.cat.available_to[:N_COURSES][None, :]))
            product = _choice_rows(rng, w)
            first_of = pos == 0
            self._stolen_cards(rng, cust[first_of], t[first_of])
            session = self._next("session", n)
            p = self._context(rng, cust, t, product=product, amount=self.cat.price(product, country, t),
                              billing_reason=B_PURCHASE, session=session, velocity=pos + 1)
            self._fraud_ip(rng, p, mismatch_share=STOLEN_CARD_IP_MISMATCH)
            self._authorize(rng, p)
            self._attempts.append(p)
            self._sessions.append({"session": session, "cust": cust, "product": product, "t": t,
                                   "campaign": p["campaign"], "device": p["device"], "country": country,
                                   "method": p["method"], "trial": np.zeros(n, dtype=bool)})
            # after a decline some try a second stolen card
            fail = ~p["success"] & (p["done"] < self.cutoff) & (rng.random(n) < STOLEN_CARD_SECOND_CARD)
            if fail.any():
                idx = np.flatnonzero(fail)
                t2 = p["done"][idx] + rng.integers(30, 300, len(idx)) * SECOND_US
                ok = t2 < self.cutoff
                idx, t2 = idx[ok], t2[ok]
                self._stolen_cards(rng, cust[idx], t2)
                q = self._context(rng, cust[idx], t2, product=product[idx], amount=p["amount"][idx],
                                  billing_reason=B_PURCHASE, session=session[idx], velocity=pos[idx] + 2)
                self._fraud_ip(rng, q, mismatch_share=STOLEN_CARD_IP_MISMATCH)
                self._authorize(rng, q)
                self._attempts.append(q)

    def _stolen_cards(self, rng: np.random.Generator, cust: np.ndarray, us: np.ndarray) -> None:
        """A card never seen before, issued abroad more often than not (overwrites per attempt)."""
        n = len(cust)
        if n == 0:
            return
        fraud_countries = np.array([COUNTRY_CODES.index(c) for c in FRAUD_CARD_COUNTRIES])
        card_country = np.where(rng.random(n) < 0.7, fraud_countries[_choice(rng, n, np.ones(len(fraud_countries)))],
                                self.country[cust])
        self.method[cust] = M_CARD
        self.brand[cust] = _choice(rng, n, (0.55, 0.35, 0.10))
        self.card_country[cust] = card_country
        self.card_seen[cust] = us
        self.card_exp[cust] = _month_number(us) + rng.integers(-3, 40, n)
        self.provider[cust] = self._route(rng, np.full(n, M_CARD), self.brand[cust], card_country, self.country[cust])

    def _fresh_cards(self, rng: np.random.Generator, p: dict[str, np.ndarray]) -> None:
        """A different never-seen card on every attempt (card testing)."""
        n = len(p["cust"])
        fraud_countries = np.array([COUNTRY_CODES.index(c) for c in FRAUD_CARD_COUNTRIES])
        p["method"] = np.full(n, M_CARD)
        p["brand"] = _choice(rng, n, (0.55, 0.35, 0.10))
        p["card_country"] = fraud_countries[_choice(rng, n, np.ones(len(fraud_countries)))]
        p["card_exp"] = _month_number(p["t"]) + rng.integers(-3, 40, n)
        p["provider"] = self._route(rng, p["method"], p["brand"], p["card_country"], p["country"])

    def _fraud_ip(self, rng: np.random.Generator, p: dict[str, np.ndarray], mismatch_share: float) -> None:
        n = len(p["cust"])
        mismatch = rng.random(n) < mismatch_share
        p["ip_country"] = np.where(mismatch, _choice(rng, n, _COUNTRY_WEIGHT), p["ip_country"])
        p["ip"] = np.where(mismatch, rng.integers(0, 2**32, n), p["ip"]).astype(np.int64)
        # stolen and tested cards are new to the platform
        p["card_age"] = np.where(p["method"] == M_CARD, 0, p["card_age"])

    # -- payments and everything that hangs off them ---------------------------------------
    def _emit_payments(self, rng: np.random.Generator, p: dict[str, np.ndarray], mi: int) -> None:
        """Transactions, fees, refunds, disputes, fraud alerts and checkout events."""
        sessions = _concat(self._sessions)
        if not p:
            self._emit_checkout(rng, sessions, {}, mi)
            return
        cutoff = self.cutoff
        n = len(p["cust"])
        settled = p["done"] < cutoff
        success = p["success"] & settled
        failed = ~p["success"] & settled
        status = np.where(success, 1, np.where(failed, 2, 0))  # pending, completed, failed
        is_fraud = p["fraud"] != FRAUD_NONE
        eng = self.engagement[p["cust"]]
        # ---- refunds
        base = np.select(
            [p["plan_type"] == 0, (p["breason"] == B_CREATE) & (p["plan_type"] == 2), p["breason"] == B_CREATE,
             p["plan_type"] == 2],
            [REFUND_RATE_COURSE, REFUND_RATE_SUBSCRIPTION_CREATE_ANNUAL, REFUND_RATE_SUBSCRIPTION_CREATE,
             REFUND_RATE_RENEWAL_ANNUAL], REFUND_RATE_RENEWAL_MONTHLY)
        refund_p = np.where(is_fraud, REFUND_RATE_FRAUD, base * np.exp(-0.4 * eng))
        refunded = success & (rng.random(n) < refund_p)
        window = np.where(p["plan_type"] == 0, REFUND_WINDOW_DAYS_COURSE, REFUND_WINDOW_DAYS_SUBSCRIPTION)
        delay = np.minimum(rng.exponential(REFUND_MEAN_DELAY_DAYS, n), window - 0.1)
        delay = np.where(is_fraud, rng.uniform(0.3, 3, n), delay)
        t_ref = p["done"] + (delay * DAY_US).astype(np.int64)
        refunded &= t_ref < cutoff
        ri = np.flatnonzero(refunded)
        partial = (rng.random(len(ri)) < PARTIAL_REFUND_SHARE) & ~is_fraud[ri]
        r_amount = np.where(partial, np.round(p["amount"][ri] * rng.uniform(0.3, 0.7, len(ri))), p["amount"][ri]).astype(np.int64)
        r_amount = np.maximum(r_amount, 1)
        r_reason = np.where(is_fraud[ri], 2, _choice(rng, len(ri), REFUND_REASON_WEIGHTS))
        r_reason = np.where((r_reason == 3) & (p["plan_type"][ri] != 0), 0, r_reason)
        r_t = t_ref[ri]
        r_status = np.where((cutoff - r_t < 2 * DAY_US) & (rng.random(len(ri)) < 0.5), 1,
                            np.where(rng.random(len(ri)) < REFUND_FAILED_SHARE, 2, 0))
        r_row = ri
        # some partial refunds are followed by a second one
        sec = np.flatnonzero(partial & (rng.random(len(ri)) < SECOND_PARTIAL_REFUND_SHARE))
        t2 = r_t[sec] + rng.uniform(1, 6, len(sec)).astype(np.int64) * DAY_US
        last = p["done"][ri[sec]] + (window[ri[sec]] * DAY_US).astype(np.int64) - HOUR_US
        t2 = np.minimum(t2, last)  # still inside the refund window
        ok = (t2 < cutoff) & (t2 > r_t[sec])
        sec, t2 = sec[ok], t2[ok]
        amount2 = np.maximum((p["amount"][ri[sec]] - r_amount[sec]) // 2, 1)
        r_row = np.concatenate([ri, ri[sec]])
        r_amount = np.concatenate([r_amount, amount2])
        r_reason = np.concatenate([r_reason, r_reason[sec]])
        r_t = np.concatenate([r_t, t2])
        r_status = np.concatenate([r_status, np.where(cutoff - t2 < 2 * DAY_US, 1, 0)])
        refunded_total = np.zeros(n, dtype=np.int64)
        np.add.at(refunded_total, r_row[r_status == 0], r_amount[r_status == 0])
        any_refund = np.zeros(n, dtype=bool)
        any_refund[r_row[r_status != 2]] = True
        # ---- disputes
        d_p = np.select([p["fraud"] == FRAUD_STOLEN, p["fraud"] == FRAUD_TESTER],
                        [DISPUTE_RATE_STOLEN_CARD, DISPUTE_RATE_CARD_TESTING],
                        DISPUTE_RATE_LEGIT * np.where((p["plan_type"] == 2) & (p["breason"] != B_CREATE),
                                                      DISPUTE_ANNUAL_RENEWAL_FACTOR, 1.0))
        disputed = success & ~any_refund & (rng.random(n) < d_p)
        t_disp = p["done"] + (rng.uniform(*DISPUTE_DELAY_DAYS, n) * DAY_US).astype(np.int64)
        disputed &= t_disp < cutoff
        di = np.flatnonzero(disputed)
        d_reason = np.where(is_fraud[di], 0, _choice(rng, len(di), DISPUTE_REASON_WEIGHTS_LEGIT))
        d_reason = np.where((d_reason == 3) & (p["plan_type"][di] == 0), 5, d_reason)
        d_t = t_disp[di]
        evidence = d_t + (rng.uniform(*DISPUTE_EVIDENCE_DAYS, len(di)) * DAY_US).astype(np.int64)
        closed = d_t + (rng.uniform(*DISPUTE_DECISION_DAYS, len(di)) * DAY_US).astype(np.int64)
        won = rng.random(len(di)) < np.where(is_fraud[di], DISPUTE_WIN_RATE_FRAUD, DISPUTE_WIN_RATE_LEGIT)
        is_closed = closed < cutoff
        d_status = np.where(is_closed, np.where(won, 2, 3),
                            np.where((cutoff < evidence) & (rng.random(len(di)) < 0.6), 0, 1))
        # ---- final payment status
        status = np.where(refunded_total >= p["amount"], 4, np.where(refunded_total > 0, 5, status))
        status = np.where(disputed, 6, status)
        for lo in range(0, n, EMIT_SLICE_ROWS):
            part = slice(lo, lo + EMIT_SLICE_ROWS)
            self._emit_transactions({k: v[part] for k, v in p.items()}, status[part], settled[part])
        self._emit_fees(p, success, di, d_t)
        self._emit_refunds(p, r_row, r_amount, r_reason, r_status, r_t)
        self._emit_disputes(p, di, d_reason, d_status, d_t, evidence, closed, is_closed, won)
        self._emit_alerts(rng, p)
        self._emit_checkout(rng, sessions, p, mi)
        # refund requests reach support first
        ticketed = rng.random(len(ri)) < REFUND_TICKET_SHARE
        tr = ri[ticketed]
        t_ticket = np.maximum(t_ref[tr] - (rng.uniform(0.2, 3, len(tr)) * DAY_US).astype(np.int64), p["done"][tr])
        self._tickets.append({"cust": p["cust"][tr], "t": t_ticket, "category": np.full(len(tr), 4)})

    def _emit_transactions(self, p: dict[str, np.ndarray], status: np.ndarray, settled: np.ndarray) -> None:
        success_states = np.isin(status, (1, 4, 5, 6))
        failed = status == 2
        pending = status == 0
        outcome = np.where(pending, 4, np.where(success_states, 0,
                           np.select([p["reason"] == R_FRAUD, p["reason"] == R_PROCESSING], [2, 3], 1)))
        is_card = p["method"] == M_CARD
        exp_days = p["card_exp"].astype("datetime64[M]").astype("datetime64[D]").astype(np.int64)
        flags = p["flags"]
        self.sink.add("transactions", _table("transactions", {
            "transaction_id": _ids("txn_", p["txn"]),
            "customer_id": _ids("cus_", p["cust"]),
            "amount_minor": p["amount"],
            "currency": _labels(CURRENCIES, p["cur"]),
            "status": _labels(("pending", "completed", "failed", "canceled", "refunded",
                               "partially_refunded", "disputed"), status),
            "outcome_type": _labels(("authorized", "issuer_declined", "blocked", "provider_error", "pending"), outcome),
            "payment_method": _labels(METHODS, p["method"]),
            "card_brand": _labels(BRANDS, np.where(is_card, p["brand"], -1)),
            "card_country": _labels(COUNTRY_CODES, p["card_country"]),
            "card_age_days": _opt_int(p["card_age"].astype(np.int32), p["card_age"] >= 0, pa.int32()),
            "card_expiry_month": _opt_int(exp_days.astype(np.int32), is_card & (p["card_exp"] >= 0), pa.date32()),
            "provider": _labels(PROVIDERS, p["provider"]),
            "created_at": _ts(p["t"]),
            "completed_at": _ts(p["done"], success_states),
            "failed_at": _ts(p["done"], failed),
            "failure_reason": _labels(FAILURE_REASONS, np.where(failed, p["reason"], -1)),
            "attempt_number": p["attempt"].astype(np.int32),
            "original_transaction_id": _ids("txn_", p["orig"]),
            "billing_reason": _labels(BILLING_REASONS, p["breason"]),
            "product_id": _labels(PRODUCT_IDS, p["product"]),
            "subscription_id": _ids("sub_", p["sub"]),
            "plan_type": _labels(PLAN_TYPES, p["plan_type"]),
            "country_code": _labels(COUNTRY_CODES, p["country"]),
            "ip_country": _labels(COUNTRY_CODES, p["ip_country"]),
            "ip_hash": self._sha256(_ip_strings(p["ip"])),
            "device_class": _labels(DEVICES, p["device"]),
            "referrer_domain": _labels(REFERRERS, p["referrer"]),
            "campaign_id": _labels(self.campaigns.ids, p["campaign"]),
            "discount_code": _labels(self.cat.code_names, p["code"]),
            "risk_score": p["risk"],
            "fraud_indicators": _indicator_lists(flags),
            "created_month": self.cal.month_labels_of(p["t"]),
        }))

    def _emit_fees(self, p: dict[str, np.ndarray], success: np.ndarray, di: np.ndarray, d_t: np.ndarray) -> None:
        si = np.flatnonzero(success)
        prov = p["provider"][si]
        cur = p["cur"][si]
        amount = p["amount"][si]
        t = p["done"][si]
        terms = [PROVIDER_TERMS[x] for x in PROVIDERS]
        pct = np.array([x.percent for x in terms])[prov]
        xb_pct = np.array([x.cross_border_percent for x in terms])[prov]
        fx_pct = np.array([x.fx_percent for x in terms])[prov]
        settle = np.array([_C[x.settlement_currency] for x in terms])[prov]
        fixed_minor = np.array([x.fixed_minor for x in terms])[prov]
        fixed_cur = np.array([_C[x.fixed_currency] for x in terms])[prov]
        fixed = np.maximum(np.round(fixed_minor * self.usd_per_unit(fixed_cur, t) / self.usd_per_unit(cur, t)), 1)
        home = np.zeros((len(PROVIDERS), len(COUNTRIES)), dtype=bool)
        for k, x in enumerate(terms):
            for c in x.home_countries:
                home[k, COUNTRY_CODES.index(c)] = True
        cross = ~home[prov, p["card_country"][si]] & (p["method"][si] != M_BANK)
        fx_fee = cur != settle
        rows_tx = [si, si, si[cross], si[fx_fee]]
        kinds = [np.zeros(len(si)), np.ones(len(si)), np.full(int(cross.sum()), 2), np.full(int(fx_fee.sum()), 3)]
        amounts = [np.maximum(np.round(amount * pct / 100), 1), fixed,
                   np.maximum(np.round(amount[cross] * xb_pct[cross] / 100), 1),
                   np.maximum(np.round(amount[fx_fee] * fx_pct[fx_fee] / 100), 1)]
        times = [t, t, t[cross], t[fx_fee]]
        # dispute fees, charged when the dispute opens
        dprov = p["provider"][di]
        dcur = p["cur"][di]
        dfee_minor = np.array([x.dispute_fee_minor for x in terms])[dprov]
        dfee_cur = np.array([_C[x.dispute_fee_currency] for x in terms])[dprov]
        dfee = np.round(dfee_minor * self.usd_per_unit(dfee_cur, d_t) / self.usd_per_unit(dcur, d_t))
        rows_tx.append(di)
        kinds.append(np.full(len(di), 4))
        amounts.append(dfee)
        times.append(d_t)
        rows = np.concatenate(rows_tx)
        if len(rows) == 0:
            return
        self.sink.add("fees", _table("fees", {
            "fee_id": _ids("fee_", self._next("fee", len(rows))),
            "transaction_id": _ids("txn_", p["txn"][rows]),
            "fee_type": _labels(("processing", "fixed", "cross_border", "fx", "dispute"), np.concatenate(kinds)),
            "amount_minor": np.concatenate(amounts).astype(np.int64),
            "currency": _labels(CURRENCIES, p["cur"][rows]),
            "provider": _labels(PROVIDERS, p["provider"][rows]),
            "created_at": _ts(np.concatenate(times)),
        }))

    def _emit_refunds(self, p: dict[str, np.ndarray], row: np.ndarray, amount: np.ndarray, reason: np.ndarray,
                      status: np.ndarray, t: np.ndarray) -> None:
        if len(row) == 0:
            return
        self.sink.add("refunds", _table("refunds", {
            "refund_id": _ids("re_", self._next("refund", len(row))),
            "transaction_id": _ids("txn_", p["txn"][row]),
            "customer_id": _ids("cus_", p["cust"][row]),
            "amount_minor": amount,
            "currency": _labels(CURRENCIES, p["cur"][row]),
            "reason": _labels(REFUND_REASONS, reason),
            "status": _labels(("succeeded", "pending", "failed"), status),
            "created_at": _ts(t),
        }))

    def _emit_disputes(self, p: dict[str, np.ndarray], di: np.ndarray, reason: np.ndarray, status: np.ndarray,
                       t: np.ndarray, evidence: np.ndarray, closed: np.ndarray, is_closed: np.ndarray,
                       won: np.ndarray) -> None:
        if len(di) == 0:
            return
        self.sink.add("disputes", _table("disputes", {
            "dispute_id": _ids("dp_", self._next("dispute", len(di))),
            "transaction_id": _ids("txn_", p["txn"][di]),
            "customer_id": _ids("cus_", p["cust"][di]),
            "amount_minor": p["amount"][di],
            "currency": _labels(CURRENCIES, p["cur"][di]),
            "reason": _labels(DISPUTE_REASONS, reason),
            "status": _labels(("needs_response", "under_review", "won", "lost"), status),
            "outcome": _labels(("won", "lost"), np.where(is_closed, np.where(won, 0, 1), -1)),
            "created_at": _ts(t),
            "evidence_due_at": _ts(evidence),
            "closed_at": _ts(closed, is_closed),
        }))

    def _emit_alerts(self, rng: np.random.Generator, p: dict[str, np.ndarray]) -> None:
        rows, kinds = [], []
        for bit in range(len(INDICATORS)):
            hit = np.flatnonzero(p["flags"] & (1 << bit))
            if bit in (1, 2) and len(hit):
                # one velocity / card-testing alert per customer and hour
                key = p["cust"][hit] * 10_000_000 + p["t"][hit] // HOUR_US
                _, first = np.unique(key, return_index=True)
                hit = hit[np.sort(first)]
            rows.append(hit)
            kinds.append(np.full(len(hit), bit))
        row = np.concatenate(rows)
        if len(row) == 0:
            return
        kind = np.concatenate(kinds)
        n = len(row)
        risk = p["risk"][row]
        severity = np.select([risk < 40, risk < HIGH_RISK_SCORE, risk < BLOCK_RISK_SCORE], [0, 1, 2], 3)
        created = p["t"][row] + rng.integers(1, 30, n) * SECOND_US
        reviewed = created + (ALERT_REVIEW_MEDIAN_HOURS * HOUR_US * np.exp(rng.normal(0, 1.0, n))).astype(np.int64)
        is_reviewed = reviewed < self.cutoff
        fraud = p["fraud"][row] != FRAUD_NONE
        confirmed = np.where(fraud, rng.random(n) < ALERT_REVIEW_ACCURACY_FRAUD,
                             rng.random(n) >= ALERT_REVIEW_ACCURACY_LEGIT)
        status = np.where(is_reviewed, np.where(confirmed, 1, 2), 0)
        self.sink.add("fraud_alerts", _table("fraud_alerts", {
            "alert_id": _ids("alr_", self._next("alert", n)),
            "transaction_id": _ids("txn_", p["txn"][row]),
            "customer_id": _ids("cus_", p["cust"][row]),
            "alert_type": _labels(INDICATORS, kind),
            "severity": _labels(("low", "medium", "high", "critical"), severity),
            "risk_score": risk,
            "created_at": _ts(created),
            "status": _labels(("open", "confirmed_fraud", "false_positive"), status),
            "reviewed_at": _ts(reviewed, is_reviewed),
        }))

    def _emit_checkout(self, rng: np.random.Generator, s: dict[str, np.ndarray], p: dict[str, np.ndarray], mi: int) -> None:
        """Funnel events of purchase sessions, plus abandoned sessions in proportion."""
        cols: list[dict[str, np.ndarray]] = []
        if s:
            n = len(s["session"])
            # time spent before submitting: product page -> checkout -> payment form -> submit
            gaps = np.exp(rng.normal(np.log([[75.0, 40.0, 55.0]]), 0.7, size=(n, 3))) * SECOND_US
            enter = s["t"] - gaps[:, 2].astype(np.int64)
            begin = enter - gaps[:, 1].astype(np.int64)
            view = begin - gaps[:, 0].astype(np.int64)
            for step, t in ((0, view), (1, begin), (2, enter)):
                cols.append(self._steps(s, np.arange(n), step, t, np.full(n, -1)))
            trial = np.flatnonzero(s["trial"])
            submit_t = s["t"][trial] - SECOND_US // 5
            cols.append(self._steps(s, trial, 3, submit_t, np.full(len(trial), -1)))
            ok_t = s["t"][trial] + 1500 * 1000
            keep = ok_t < self.cutoff
            cols.append(self._steps(s, trial[keep], 4, ok_t[keep], np.full(int(keep.sum()), -1)))
            if p:
                pos = np.flatnonzero(p["session"] >= 0)
                order = np.argsort(s["session"])
                srow = order[np.searchsorted(s["session"][order], p["session"][pos])]
                cols.append(self._steps(s, srow, 3, p["t"][pos] - SECOND_US // 5, pos, p))
                ok = pos[p["success"][pos] & (p["done"][pos] < self.cutoff)]
                srow_ok = order[np.searchsorted(s["session"][order], p["session"][ok])]
                cols.append(self._steps(s, srow_ok, 4, p["done"][ok], ok, p))
            cols.extend(self._abandoned(rng, s, mi))
        # emitted in slices: a month at benchmark size has millions of funnel events
        for group in _groups(cols, EMIT_SLICE_ROWS):
            events = _concat(group)
            if events:
                self._emit_checkout_events(_take(events, np.flatnonzero(events["t"] < self.cutoff)))

    def _emit_checkout_events(self, events: dict[str, np.ndarray]) -> None:
        n = len(events["t"])
        if n == 0:
            return
        self.sink.add("checkout_events", _table("checkout_events", {
            "event_id": _ids("chk_", self._next("checkout", n)),
            "session_id": _ids("ses_", events["session"]),
            "customer_id": _ids("cus_", events["cust"]),
            "step": _labels(("view_product", "begin_checkout", "enter_payment", "submit_payment",
                             "payment_succeeded"), events["step"]),
            "occurred_at": _ts(events["t"]),
            "product_id": _labels(PRODUCT_IDS, events["product"]),
            "payment_method": _labels(METHODS, np.where(events["step"] >= 2, events["method"], -1)),
            "country_code": _labels(COUNTRY_CODES, events["country"]),
            "device_class": _labels(DEVICES, events["device"]),
            "campaign_id": _labels(self.campaigns.ids, events["campaign"]),
            "transaction_id": _ids("txn_", events["txn"]),
            "occurred_month": self.cal.month_labels_of(events["t"]),
        }))

    @staticmethod
    def _steps(s: dict[str, np.ndarray], srow: np.ndarray, step: int, t: np.ndarray, prow: np.ndarray,
               p: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        n = len(srow)
        method = s["method"][srow] if p is None else p["method"][prow]
        txn = np.full(n, -1, dtype=np.int64) if p is None else p["txn"][prow]
        return {"session": s["session"][srow], "cust": s["cust"][srow], "step": np.full(n, step),
                "t": t.astype(np.int64), "product": s["product"][srow], "method": method,
                "country": s["country"][srow], "device": s["device"][srow], "campaign": s["campaign"][srow],
                "txn": txn}

    def _abandoned(self, rng: np.random.Generator, s: dict[str, np.ndarray], mi: int) -> list[dict[str, np.ndarray]]:
        """Sessions that stop before paying: counts follow the step conversion rates by device."""
        parts = []
        for device in range(len(DEVICES)):
            rows = np.flatnonzero(s["device"] == device)
            if len(rows) == 0:
                continue
            p1, p2, p3 = FUNNEL_CONTINUE[DEVICES[device]]
            n_submit = len(rows)
            n_enter = n_submit / p3
            n_begin = n_enter / p2
            n_view = n_begin / p1
            for last_step, expected in ((0, n_view - n_begin), (1, n_begin - n_enter), (2, n_enter - n_submit)):
                k = rng.poisson(expected)
                if k == 0:
                    continue
                src = rows[rng.integers(0, len(rows), k)]
                lo_day, hi_day = self.cal.month_days(mi)
                days = self.cal.days_between(rng, np.full(k, lo_day), np.full(k, hi_day))
                t0 = self.cal.times_on_days(rng, days)
                session = self._next("session", k)
                cust = np.where(rng.random(k) < 0.45, s["cust"][src], -1)
                gaps = np.exp(rng.normal(np.log([[75.0, 40.0]]), 0.7, size=(k, 2))) * SECOND_US
                times = (t0, t0 + gaps[:, 0].astype(np.int64), t0 + gaps[:, :2].sum(axis=1).astype(np.int64))
                for step in range(last_step + 1):
                    parts.append({"session": session, "cust": cust, "step": np.full(k, step), "t": times[step],
                                  "product": s["product"][src], "method": s["method"][src],
                                  "country": s["country"][src], "device": s["device"][src],
                                  "campaign": s["campaign"][src], "txn": np.full(k, -1, dtype=np.int64)})
        return parts

    def _emit_subscription_events(self) -> None:
        e = _concat(self._events)
        if not e:
            return
        e = _take(e, np.flatnonzero(e["occurred"] < self.cutoff))
        n = len(e["sub"])
        s = self.subs
        self.sink.add("subscription_events", _table("subscription_events", {
            "event_id": _ids("sev_", self._next("sub_event", n)),
            "subscription_id": _ids("sub_", e["sub"]),
            "customer_id": _ids("cus_", s.cust[e["sub"]]),
            "event_type": _labels(EVENT_TYPES, e["kind"]),
            "occurred_at": _ts(e["occurred"]),
            "effective_at": _ts(e["effective"]),
            "product_id": _labels(PRODUCT_IDS, N_COURSES + e["plan"]),
            "previous_product_id": _labels(PRODUCT_IDS, e["previous"]),
            "price_minor": e["price"],
            "currency": _labels(CURRENCIES, s.cur[e["sub"]]),
            "billing_interval_months": _PLAN_INTERVAL[e["plan"]].astype(np.int32),
            "discount_percent": e["discount"],
            "reason": _labels(CANCEL_REASONS, e["reason"]),
        }))

    # -- engagement, activity, support, churn intent ---------------------------------------
    def _behaviour(self, rng: np.random.Generator, mi: int, ms: int, me: int) -> None:
        cal = self.cal
        n = int(self.month_first[mi + 1])
        cust = np.arange(n)
        s = self.subs
        sub = self.cust_sub[:n]
        has_sub = sub >= 0
        sub0 = np.maximum(sub, 0)
        started = np.where(has_sub, s.started[sub0], 0)
        ended = np.where(has_sub, s.ended_at[sub0], 0)
        sub_access = has_sub & (started < me) & ((ended == 0) | (ended > ms))
        last_course = self.last_course[:n]
        course_access = (last_course > 0) & (last_course < me) & (last_course > ms - COURSE_ACCESS_DAYS * DAY_US)
        access = (sub_access | course_access) & (self.fraud[:n] == FRAUD_NONE)
        lo = np.full(n, np.iinfo(np.int64).max)
        hi = np.zeros(n, dtype=np.int64)
        lo = np.where(sub_access, np.maximum(ms, started), lo)
        hi = np.where(sub_access, np.where(ended > 0, np.minimum(ended, me), me), hi)
        lo = np.where(course_access, np.minimum(lo, np.maximum(ms, last_course)), lo)
        hi = np.where(course_access, me, hi)
        # next month's churn intent (activity and tickets already show it this month)
        self.intent[:] = False
        active = self._active_paid()
        active = active[s.cust[active] < n]
        owner = s.cust[active]
        annual = _PLAN_INTERVAL[s.plan[active]] == 12
        next_end = me + 31 * DAY_US
        renewing_next = (s.period_end[active] >= me) & (s.period_end[active] < next_end)
        tenure = np.minimum((ms - s.started[active]) / (30.44 * DAY_US), 12)
        z = (np.where(annual, CHURN_BASE_LOGIT_ANNUAL_RENEWAL, CHURN_BASE_LOGIT_MONTHLY)
             + CHURN_ENGAGEMENT * self.engagement[owner] + CHURN_PER_FAILURE * self.fail_score[owner]
             + CHURN_PER_TICKET * self.ticket_score[owner] + CHURN_TENURE_PER_MONTH * np.maximum(tenure, 0)
             + CHURN_DISCOUNT * (s.discount[active] > 0) + CHURN_MOBILE * (self.device[owner] == 1)
             + _COUNTRY_CHURN[self.country[owner]])
        h = _sigmoid(z) * np.where(annual, renewing_next, 1.0)
        self.intent[owner[rng.random(len(active)) < h]] = True
        intent = self.intent[:n]
        # daily activity
        e = _sigmoid(self.engagement[:n])
        p_day = _sigmoid(ACTIVITY_LOGIT + ACTIVITY_ENGAGEMENT * self.engagement[:n]) * np.where(intent, 0.45, 1.0)
        p_day = p_day * np.where(sub_access, 1.0, ACTIVITY_COURSE_ONLY_FACTOR * np.exp(
            -np.maximum(ms - last_course, 0) / (COURSE_ACCESS_DECAY_DAYS * DAY_US)))
        lo_day, hi_day = cal.month_days(mi)
        days = np.arange(lo_day, hi_day)
        wd = np.asarray(ACTIVITY_WEEKDAY)[cal.weekday[days]]
        day_start = cal.days[days] * DAY_US
        who = np.flatnonzero(access & (hi > lo))
        for b in range(0, len(who), ACTIVITY_BLOCK):
            c = who[b: b + ACTIVITY_BLOCK]
            live = (day_start[None, :] + DAY_US > lo[c, None]) & (day_start[None, :] < hi[c, None])
            hit = live & (rng.random((len(c), len(days))) < p_day[c, None] * wd[None, :])
            r, d = np.nonzero(hit)
            self._emit_activity(rng, c[r], days[d], e)
        # support tickets
        failed = self.failed_this_month[:n] > 0
        t_p = (TICKET_BASE_RATE + TICKET_AFTER_FAILURE * failed + TICKET_BEFORE_CHURN * intent
               + TICKET_LOW_ENGAGEMENT * (1 - e))
        has_ticket = (access | failed) & (rng.random(n) < t_p)
        tc = np.flatnonzero(has_ticket)
        cat_w = np.where(failed[tc, None], [[0.70, 0.10, 0.05, 0.15, 0.0]],
                         np.where(intent[tc, None], [[0.20, 0.35, 0.30, 0.15, 0.0]], [[0.20, 0.35, 0.25, 0.20, 0.0]]))
        t_lo = np.where(hi[tc] > lo[tc], lo[tc], ms)
        t_hi = np.where(hi[tc] > lo[tc], hi[tc], me)
        t_t = t_lo + (rng.random(len(tc)) * (t_hi - t_lo)).astype(np.int64)
        category = _choice_rows(rng, cat_w)
        # follow-ups: an unresolved payment problem, or a customer on the way out, writes again
        # (a geometric number of further tickets later in the month: the long tail of heavy
        # ticket writers, whose count feeds next month's churn hazard through ticket_score)
        fu = self._rng("ticket_follow_ups", mi)
        mean = (TICKET_FOLLOW_UP_BASE + TICKET_FOLLOW_UP_AFTER_FAILURE * failed[tc]
                + TICKET_FOLLOW_UP_BEFORE_CHURN * intent[tc])
        first = np.repeat(np.arange(len(tc)), fu.geometric(1.0 / (1.0 + mean)) - 1)
        t_f = t_t[first] + (fu.random(len(first)) * (t_hi[first] - t_t[first])).astype(np.int64)
        cat_f = np.where(fu.random(len(first)) < TICKET_FOLLOW_UP_SAME_CATEGORY, category[first],
                         _choice_rows(fu, cat_w[first]))
        written = np.concatenate([tc, tc[first]])
        self._tickets.append({"cust": written, "t": np.concatenate([t_t, t_f]),
                              "category": np.concatenate([category, cat_f])})
        self._emit_tickets(rng)
        counts = np.bincount(written, minlength=n)
        self.ticket_score[:n] = 0.5 * self.ticket_score[:n] + counts
        self.fail_score[:n] = 0.6 * self.fail_score[:n] + self.failed_this_month[:n]
        # engagement drifts; people on their way out disengage
        self.engagement[:n] += rng.normal(ENGAGEMENT_DRIFT, ENGAGEMENT_VOLATILITY, n) - ENGAGEMENT_DROP_BEFORE_CHURN * intent
        del cust

    def _emit_activity(self, rng: np.random.Generator, cust: np.ndarray, day: np.ndarray, e: np.ndarray) -> None:
        """Logins, lessons and minutes of active customer-days (more when engaged)."""
        k = len(cust)
        if k == 0:
            return
        ee = e[cust]
        logins = 1 + rng.poisson(0.3 + 0.5 * ee)
        lessons = rng.poisson(0.5 + 4.0 * ee)
        minutes = np.round(lessons * rng.gamma(2.0, 4.0 + 6.0 * ee) + rng.uniform(0, 3, k), 1)
        wants = getattr(self.sink, "wants", None)
        if wants is not None and not wants("user_activity"):
            # skipped table: the draws above happened (same random state), the rows are not built
            self.sink.skipped["user_activity"] = self.sink.skipped.get("user_activity", 0) + k
            return
        cal = self.cal
        self.sink.add("user_activity", _table("user_activity", {
            "customer_id": _ids("cus_", cust),
            "activity_date": pa.array((cal.start_day + day).astype(np.int32), pa.date32()),
            "logins": logins.astype(np.int32),
            "lesson_views": lessons.astype(np.int32),
            "minutes_watched": minutes,
            "activity_month": _labels(cal.month_labels, cal.day_month[day] + 1),
        }))

    def _emit_tickets(self, rng: np.random.Generator) -> None:
        t = _concat(self._tickets)
        if not t:
            return
        keep = np.flatnonzero(t["t"] < self.cutoff)
        t = _take(t, keep)
        n = len(t["t"])
        cat = t["category"]
        prio_w = np.where(np.isin(cat, (0, 4))[:, None], [[0.10, 0.55, 0.30, 0.05]], [[0.25, 0.55, 0.17, 0.03]])
        prio = _choice_rows(rng, prio_w)
        hours = np.asarray(TICKET_RESOLUTION_MEDIAN_HOURS)[prio] * np.exp(rng.normal(0, 0.9, n))
        resolved = t["t"] + (hours * HOUR_US).astype(np.int64)
        is_resolved = resolved < self.cutoff
        closed = resolved < self.cutoff - 4 * DAY_US
        status = np.where(closed, 3, np.where(is_resolved, 2, np.where(rng.random(n) < 0.6, 0, 1)))
        mean = 4.4 - 0.25 * np.log1p(hours / 4) - 0.4 * (cat == 0) - 0.3 * self.intent[t["cust"]]
        score = np.clip(np.round(mean + rng.normal(0, 0.8, n)), 1, 5).astype(np.int32)
        rated = is_resolved & (rng.random(n) < 0.55)
        self.sink.add("support_tickets", _table("support_tickets", {
            "ticket_id": _ids("tkt_", self._next("ticket", n)),
            "customer_id": _ids("cus_", t["cust"]),
            "created_at": _ts(t["t"]),
            "category": _labels(TICKET_CATEGORIES, cat),
            "priority": _labels(TICKET_PRIORITIES, prio),
            "status": _labels(("open", "pending", "solved", "closed"), status),
            "resolved_at": _ts(resolved, is_resolved),
            "satisfaction": _opt_int(score, rated, pa.int32()),
        }))

    # -- static tables ----------------------------------------------------------------------
    def _customers_table(self, idx: np.ndarray) -> pa.Table:
        n = len(idx)
        domains_tr = ("gmail.com", "hotmail.com", "outlook.com", "yandex.com", "icloud.com")
        domains = ("gmail.com", "outlook.com", "yahoo.com", "icloud.com", "hotmail.com", "proton.me")
        d = _scramble(idx, 99).astype(np.int64)
        domain = np.where(self.country[idx] == _TR, d % len(domains_tr), len(domains_tr) + d % len(domains))
        domain = np.where(self.fraud[idx] == FRAUD_TESTER, len(domains_tr) + len(domains), domain)
        local = pc.binary_join_element_wise(
            pa.array(np.full(n, "learner")), pa.array(idx).cast(pa.string()), pa.array(np.full(n, str(self.seed))), ".")
        emails = pc.binary_join_element_wise(local, _labels((*domains_tr, *domains, "mailinator.com"), domain), "@")
        return _table("customers", {
            "customer_id": _ids("cus_", idx),
            "email_hash": self._sha256(emails),
            "country_code": _labels(COUNTRY_CODES, self.country[idx]),
            "signup_at": _ts(self.signup[idx]),
            "acquisition_channel": _labels(CHANNELS, self.channel[idx]),
            "campaign_id": _labels(self.campaigns.ids, self.campaign[idx]),
            "device_class": _labels(DEVICES, self.device[idx]),
            "is_guest": self.guest[idx],
        })

    def _fx_table(self) -> pa.Table:
        n, k = self.fx.shape
        days = np.repeat(self.fx_first_day + np.arange(n), k)
        return _table("fx_rates", {
            "rate_date": pa.array(days.astype(np.int32), pa.date32()),
            "currency": _labels(CURRENCIES, np.tile(np.arange(k), n)),
            "usd_per_unit": self.fx.ravel(),
        })

    def _marketing_table(self) -> pa.Table:
        c = self.campaigns
        camp, day = np.nonzero(c.spend_usd > 0)
        usd = c.spend_usd[camp, day] * self.n_customers
        cur = _COUNTRY_CURRENCY[c.country[camp]]
        us = (self.cal.start_day + day) * DAY_US
        spend = np.maximum(np.round(usd * 100 / self.usd_per_unit(cur, us)), 1).astype(np.int64)
        rng = self._rng("marketing")
        channel = [CHANNELS[x] for x in c.channel[camp]]
        cpm = np.array([CPM_USD[x] for x in channel])
        ctr = np.array([CTR[x] for x in channel])
        impressions = np.maximum(np.round(usd / cpm * 1000 * np.exp(rng.normal(0, 0.1, len(camp)))), 1).astype(np.int64)
        clicks = rng.binomial(impressions, np.clip(ctr * np.exp(rng.normal(0, 0.15, len(camp))), 0, 1))
        return _table("marketing_spend", {
            "spend_date": pa.array((self.cal.start_day + day).astype(np.int32), pa.date32()),
            "campaign_id": _labels(c.ids, camp),
            "channel": _labels(CHANNELS, c.channel[camp]),
            "country_code": _labels(COUNTRY_CODES, c.country[camp]),
            "spend_minor": spend,
            "currency": _labels(CURRENCIES, cur),
            "impressions": impressions,
            "clicks": clicks.astype(np.int64),
        })

    def _subscriptions_table(self) -> pa.Table:
        s = self.subs
        n = s.n
        idx = np.arange(n)
        ended = s.ended_at[:n] > 0
        trialing = (s.trial_end[:n] > 0) & (s.period_end[:n] == 0)
        status = np.select([ended, s.unpaid_since[:n] > 0, s.past_due_since[:n] > 0, trialing],
                           [np.full(n, 3), np.full(n, 4), np.full(n, 2), np.zeros(n, np.int64)], 1)
        has_period = s.period_end[:n] > 0
        return _table("subscriptions", {
            "subscription_id": _ids("sub_", idx),
            "customer_id": _ids("cus_", s.cust[:n]),
            "product_id": _labels(PRODUCT_IDS, N_COURSES + s.plan[:n]),
            "status": _labels(("trialing", "active", "past_due", "canceled", "unpaid"), status),
            "price_minor": s.price[:n],
            "currency": _labels(CURRENCIES, s.cur[:n]),
            "billing_interval_months": _PLAN_INTERVAL[s.plan[:n]].astype(np.int32),
            "discount_percent": s.discount[:n],
            "discount_code": _labels(self.cat.code_names, s.code[:n]),
            "started_at": _ts(s.started[:n]),
            "trial_end_at": _ts(s.trial_end[:n], s.trial_end[:n] > 0),
            "current_period_start": _ts(s.period_start[:n], has_period),
            "current_period_end": _ts(s.period_end[:n], has_period),
            "cancel_at_period_end": s.cancel_pending[:n] & ~ended,
            "canceled_at": _ts(s.canceled_at[:n], s.canceled_at[:n] > 0),
            "ended_at": _ts(s.ended_at[:n], ended),
        })


#: share of sessions continuing view -> begin_checkout, begin -> enter_payment, enter -> submit
FUNNEL_CONTINUE = {
    "desktop": (0.70, 0.85, 0.88),
    "mobile": (0.66, 0.82, 0.72),
    "tablet": (0.68, 0.84, 0.80),
}


def _indicator_lists(flags: np.ndarray) -> pa.Array:
    """list<string> of fired rule names from a bit mask per row."""
    bits = ((flags[:, None] >> np.arange(len(INDICATORS))[None, :]) & 1).astype(bool)
    counts = bits.sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    _, col = np.nonzero(bits)
    values = _labels(INDICATORS, col)
    return pa.ListArray.from_arrays(pa.array(offsets), values)
