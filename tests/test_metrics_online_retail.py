"""The metric layer on the real UCI Online Retail data set, against an independent computation.

The file is ingested with the ``online-retail`` source and the metrics are computed through
``analytics_lib.metrics`` (reporting currency GBP, time zone Europe/London). The same numbers are
then computed here with pandas straight from the raw CSV, re-implementing the rules that
docs/sources.md ("online-retail") documents, without calling the source's code:

* a line is kept when its InvoiceNo is digits (sale) or ``C`` + digits (cancellation), it has a
  StockCode, its Country is a known country (``Unspecified`` is not), its Quantity is not 0 and
  has the sign of its invoice kind (positive on sales, negative on cancellations), its UnitPrice
  is positive, and its CustomerID and Country agree with the first kept line of its invoice;
* each sales invoice is one GBP payment of sum(Quantity x UnitPrice) over its kept lines,
  rounded half-even to pence (invoices that round to 0.00 are dropped), created at the earliest
  InvoiceDate of its kept lines (UK local time), in the Country of the invoice;
* the customer is CustomerID, or for a line without one a guest checkout of its own per invoice;
* cancellations become refunds by the documented tie rule (see ``expected_refunds``).

Money is compared to the penny: the independent side sums integer pence.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

import pandas as pd
import pytest

from analytics_lib import metrics as m
from analytics_lib.config import PROJECT_ROOT
from analytics_lib.metrics import MetricSession, Period
from analytics_lib.warehouse import Warehouse
from analytics_lib.warehouse.ingest import ingest

pytestmark = pytest.mark.shared_data

REAL_FILE = PROJECT_ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.csv.gz"
CURRENCY = "GBP"
ZONE = "Europe/London"

PERIODS = {
    "whole window": Period.between("2010-12-01", "2011-12-09", ZONE),
    "2011-11": Period.month(2011, 11, ZONE),
    "2011-06 (summer time)": Period.month(2011, 6, ZONE),
}

#: the data set's country names -> ISO 3166-1 alpha-2, written out here (not the project's table);
#: "Unspecified" is not a country and its lines are rejected
COUNTRY_CODES = {
    "United Kingdom": "GB",
    "Germany": "DE",
    "France": "FR",
    "EIRE": "IE",
    "Spain": "ES",
    "Netherlands": "NL",
    "Belgium": "BE",
    "Switzerland": "CH",
    "Portugal": "PT",
    "Australia": "AU",
    "Norway": "NO",
    "Italy": "IT",
    "Channel Islands": "JE",
    "Finland": "FI",
    "Cyprus": "CY",
    "Sweden": "SE",
    "Austria": "AT",
    "Denmark": "DK",
    "Japan": "JP",
    "Poland": "PL",
    "Israel": "IL",
    "USA": "US",
    "Hong Kong": "HK",
    "Singapore": "SG",
    "Iceland": "IS",
    "Canada": "CA",
    "Greece": "GR",
    "Malta": "MT",
    "United Arab Emirates": "AE",
    "European Community": "EU",
    "RSA": "ZA",
    "Lebanon": "LB",
    "Lithuania": "LT",
    "Brazil": "BR",
    "Czech Republic": "CZ",
    "Bahrain": "BH",
    "Saudi Arabia": "SA",
}


def half_even_pence(milli_pence: int) -> int:
    """Thousandths of a pound -> pence, rounding half to even (as the source documents)."""
    q, r = divmod(milli_pence, 10)
    if r > 5 or (r == 5 and q % 2 == 1):
        q += 1
    return q


# -- the independent computation ---------------------------------------------------------------------


def read_lines() -> pd.DataFrame:
    """Every line of the CSV with parsed values and whether the documented rules keep it."""
    raw = pd.read_csv(REAL_FILE, dtype=str, keep_default_na=False, compression="gzip")
    assert len(raw) == 541_909  # the published row count
    df = pd.DataFrame({"order": range(len(raw))})
    df["invoice"] = raw["InvoiceNo"].str.strip()
    df["is_sale"] = df["invoice"].str.fullmatch(r"\d{1,12}")
    df["is_cancel"] = df["invoice"].str.fullmatch(r"C\d{1,12}")
    df["stock"] = raw["StockCode"].str.strip()
    assert raw["Quantity"].str.fullmatch(r"-?\d+").all()
    df["qty"] = raw["Quantity"].astype("int64")
    # prices have at most 3 decimals in this file, so thousandths of a pound are exact integers
    assert raw["UnitPrice"].str.fullmatch(r"-?\d+(\.\d{1,3})?").all()
    whole = raw["UnitPrice"].str.extract(r"^(-?)(\d+)(?:\.(\d+))?$")
    milli = whole[1].astype("int64") * 1000 + whole[2].fillna("").str.ljust(3, "0").astype("int64")
    df["price_milli"] = milli.where(whole[0] != "-", -milli)
    df["local_time"] = pd.to_datetime(raw["InvoiceDate"], format="%Y-%m-%d %H:%M:%S")
    df["customer"] = raw["CustomerID"].str.strip().str.replace(r"\.0*$", "", regex=True)
    df["country"] = raw["Country"].str.strip().map(COUNTRY_CODES)
    assert set(raw.loc[df["country"].isna(), "Country"]) <= {"Unspecified"}, (
        "a country name this test does not know"
    )

    kept = (
        (df["is_sale"] | df["is_cancel"])
        & (df["stock"] != "")
        & df["country"].notna()
        & (df["qty"] != 0)
        & ((df["is_sale"] & (df["qty"] > 0)) | (df["is_cancel"] & (df["qty"] < 0)))
        & (df["price_milli"] > 0)
    )
    # the first kept line of an invoice fixes its customer and country
    first = df[kept].groupby("invoice")[["customer", "country"]].transform("first")
    agree = (first["customer"] == df.loc[kept, "customer"]) & (
        first["country"] == df.loc[kept, "country"]
    )
    df["kept"] = False
    df.loc[agree[agree].index, "kept"] = True
    return df


def to_utc(local: pd.Series) -> pd.Series:
    return local.dt.tz_localize(ZONE, ambiguous="raise", nonexistent="raise").dt.tz_convert("UTC")


def invoices_of(lines: pd.DataFrame) -> pd.DataFrame:
    """One row per sales invoice that becomes a payment."""
    sales = lines[lines["kept"] & lines["is_sale"]].copy()
    sales["line_milli"] = sales["qty"] * sales["price_milli"]
    inv = sales.groupby("invoice").agg(
        total_milli=("line_milli", "sum"),
        local_time=("local_time", "min"),
        customer=("customer", "first"),
        country=("country", "first"),
    )
    inv["pence"] = [half_even_pence(int(v)) for v in inv["total_milli"]]
    inv = inv[inv["pence"] > 0].copy()
    inv["created_utc"] = to_utc(inv["local_time"])
    inv["number"] = inv.index.astype("int64")
    # a line without CustomerID is a guest checkout: one customer per invoice
    inv["customer_key"] = [
        "retail:" + c if c else "retail-guest:" + n
        for c, n in zip(inv["customer"], inv.index, strict=True)
    ]
    return inv


@dataclass
class Refund:
    cancel: str
    invoice: str
    pence: int
    local_time: pd.Timestamp


@dataclass
class Tie:
    refunds: list[Refund] = field(default_factory=list)
    rejected_lines: int = 0


def expected_refunds(lines: pd.DataFrame, inv: pd.DataFrame) -> Tie:
    """Cancellations -> refunds by the rule docs/sources.md states, written out again here.

    A cancellation invoice does not say which invoice it cancels, so the source ties each of its
    lines to the same customer's most recent invoice, at or before the cancellation, that still has
    at least the cancelled quantity of the same StockCode not cancelled (cancellations in time
    order use quantities up); the lines tied to one invoice form one refund of sum(|Quantity| x
    UnitPrice), rounded half-even to pence, dated at the cancellation's earliest line. Lines
    without CustomerID or without such an invoice are rejected, and a refund that would take an
    invoice's refunds above its amount is rejected (its quantities are given back).

    This tie is a heuristic, not a fact of the data, so it cannot be derived any other way; the
    test also checks bounds that hold whatever the tie (see test_refunds_within_what_was_cancelled).
    """
    sales = lines[lines["kept"] & lines["is_sale"] & lines["invoice"].isin(inv.index)]
    stock_qty = sales.groupby(["invoice", "stock"])["qty"].sum().to_dict()
    # per customer and stock code: the invoices that bought it, oldest first
    bought: dict[tuple[str, str], list[tuple[pd.Timestamp, int, str]]] = defaultdict(list)
    registered = inv[inv["customer"] != ""].sort_values(["created_utc", "number"])
    stocks = sales.groupby("invoice")["stock"].unique().to_dict()
    for number, row in registered.iterrows():
        for stock in stocks[number]:
            bought[(row["customer"], stock)].append((row["created_utc"], row["number"], number))
    cancels = lines[lines["kept"] & lines["is_cancel"]].copy()
    heads = cancels.groupby("invoice").agg(
        local_time=("local_time", "min"), customer=("customer", "first")
    )
    heads["created_utc"] = to_utc(heads["local_time"])
    heads["number"] = heads.index.str[1:].astype("int64")
    items = {k: g for k, g in cancels.groupby("invoice")}
    remaining: dict[tuple[str, str], int] = {}
    refunded: dict[str, int] = defaultdict(int)
    out = Tie()
    for number, head in heads.sort_values(["created_utc", "number"]).iterrows():
        groups: dict[str, list[tuple[str, int, int]]] = {}
        for item in items[number].sort_values("order").itertuples():
            qty = -item.qty
            if not head["customer"]:
                out.rejected_lines += 1
                continue
            chosen = None
            for created, order, sale in reversed(bought.get((head["customer"], item.stock), [])):
                if (created, order) > (head["created_utc"], head["number"]):
                    continue
                left = remaining.get((sale, item.stock), stock_qty[(sale, item.stock)])
                if left >= qty:
                    remaining[(sale, item.stock)] = left - qty
                    chosen = sale
                    break
            if chosen is None:
                out.rejected_lines += 1
                continue
            groups.setdefault(chosen, []).append((item.stock, qty, item.price_milli))
        for sale, tied in groups.items():
            pence = half_even_pence(sum(q * p for _, q, p in tied))
            if refunded[sale] + pence > inv.at[sale, "pence"]:
                for stock, qty, _ in tied:
                    remaining[(sale, stock)] += qty
                out.rejected_lines += len(tied)
                continue
            refunded[sale] += pence
            out.refunds.append(Refund(number, sale, pence, head["local_time"]))
    return out


def in_period(local: pd.Series, period: Period) -> pd.Series:
    """InvoiceDate is UK local time already: the period's local days are compared directly."""
    return (local >= pd.Timestamp(period.start)) & (local < pd.Timestamp(period.end))


@dataclass
class Independent:
    lines: pd.DataFrame
    invoices: pd.DataFrame
    tie: Tie

    def refunds_in(self, period: Period) -> list[Refund]:
        start, end = pd.Timestamp(period.start), pd.Timestamp(period.end)
        return [r for r in self.tie.refunds if start <= r.local_time < end]


@pytest.fixture(scope="module")
def independent() -> Independent:
    if not REAL_FILE.is_file():
        pytest.skip(
            f"shared data set not found: {REAL_FILE} (the UCI Online Retail file lives in ../shared/data)"
        )
    lines = read_lines()
    inv = invoices_of(lines)
    return Independent(lines, inv, expected_refunds(lines, inv))


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> MetricSession:
    if not REAL_FILE.is_file():
        pytest.skip(
            f"shared data set not found: {REAL_FILE} (the UCI Online Retail file lives in ../shared/data)"
        )
    wh = Warehouse(tmp_path_factory.mktemp("online-retail") / "warehouse")
    result = ingest(REAL_FILE, "online-retail", wh)
    assert result.balanced
    with MetricSession.open(wh) as s:
        yield s


def pence(amount: float) -> int:
    """A float amount in pounds (sums of pence / 100) -> pence; must be within a hundredth of a penny."""
    value = round(amount * 100)
    assert abs(amount * 100 - value) < 0.01, amount
    return value


# -- the tests ----------------------------------------------------------------------------------------


def test_independent_side_matches_the_published_facts(independent: Independent) -> None:
    """Guard the pandas side itself with what docs/sources.md measured on this file."""
    lines, inv = independent.lines, independent.invoices
    assert len(inv) == 19_946
    assert int(inv["pence"].sum()) == 1_065_087_269
    assert len(independent.tie.refunds) == 3_764
    assert sum(r.pence for r in independent.tie.refunds) == 46_059_038
    kept_sales_lines = int((lines["kept"] & lines["is_sale"]).sum())
    kept_cancel_lines = int((lines["kept"] & lines["is_cancel"]).sum())
    assert kept_sales_lines == 529_657
    assert kept_cancel_lines - independent.tie.rejected_lines == 7_473


@pytest.mark.parametrize("label", list(PERIODS))
def test_payments_revenue_and_customers(
    session: MetricSession, independent: Independent, label: str
) -> None:
    period = PERIODS[label]
    inv = independent.invoices[in_period(independent.invoices["local_time"], period)]
    t = m.transaction_analytics(session, period, currency=CURRENCY).summary
    r = m.revenue_analytics(session, period, currency=CURRENCY, with_growth=False).summary
    c = m.customer_analytics(session, period, currency=CURRENCY).summary

    # every invoice is a captured payment: all attempts are successful
    assert (
        t["total_transactions"]
        == t["successful_transactions"]
        == r["successful_payments"]
        == len(inv)
    )
    assert pence(t["total_volume"]) == pence(r["gross_revenue"]) == int(inv["pence"].sum())

    # Paying customers: registered customers are counted once however many invoices they have;
    # a guest checkout has no CustomerID, so nothing ties two guest invoices together, and the
    # source makes each guest invoice its own customer. The independent count therefore is
    # distinct CustomerIDs + one per guest invoice of the period.
    registered = inv.loc[inv["customer"] != "", "customer"].nunique()
    guests = int((inv["customer"] == "").sum())
    assert r["paying_customers"] == c["total_customers"] == registered + guests
    # new customers: first invoice ever (in the data set) inside the period; a guest is always new
    first_seen = independent.invoices.groupby("customer_key")["local_time"].min()
    paying = set(inv["customer_key"])
    new = sum(1 for key in paying if first_seen[key] >= pd.Timestamp(period.start))
    assert c["new_customers"] == new
    assert c["returning_customers"] == len(paying) - new

    refunds = independent.refunds_in(period)
    assert r["refund_count"] == len(refunds)
    assert pence(r["refunds"]) == sum(x.pence for x in refunds)
    assert r["chargebacks"] == 0 and r["fees"] == 0
    assert pence(r["net_revenue"]) == int(inv["pence"].sum()) - sum(x.pence for x in refunds)


@pytest.mark.parametrize("label", list(PERIODS))
def test_revenue_and_transactions_per_country(
    session: MetricSession, independent: Independent, label: str
) -> None:
    period = PERIODS[label]
    inv = independent.invoices[in_period(independent.invoices["local_time"], period)]
    countries = (
        m.geography(session, period, currency=CURRENCY)
        .tables["countries"]
        .set_index("country_code")
    )
    expected = inv.groupby("country").agg(
        transactions=("pence", "size"),
        pence=("pence", "sum"),
        customers=("customer_key", "nunique"),
    )
    assert set(countries.index) == set(expected.index)
    for code, row in expected.iterrows():
        got = countries.loc[code]
        assert int(got["transactions"]) == int(got["successful"]) == row["transactions"], code
        assert pence(got["volume"]) == row["pence"], code
        assert int(got["customers"]) == row["customers"], code
    # the same through a country filter, for the biggest markets
    for code in expected.sort_values("pence", ascending=False).index[:3]:
        t = m.transaction_analytics(session, period, {"country": code}, CURRENCY).summary
        assert t["total_transactions"] == expected.at[code, "transactions"], code
        assert pence(t["total_volume"]) == expected.at[code, "pence"], code


def test_refunds_within_what_was_cancelled(
    session: MetricSession, independent: Independent
) -> None:
    """Bounds that hold whatever invoice a cancellation is tied to (no heuristic involved)."""
    lines = independent.lines
    cancels = lines[lines["kept"] & lines["is_cancel"] & (lines["customer"] != "")].copy()
    cancels["milli"] = -cancels["qty"] * cancels["price_milli"]
    for label, period in PERIODS.items():
        heads = cancels.groupby("invoice").agg(
            local_time=("local_time", "min"), milli=("milli", "sum")
        )
        heads = heads[in_period(heads["local_time"], period)]
        r = m.revenue_analytics(session, period, currency=CURRENCY, with_growth=False).summary
        # at most what the period's cancellations with a customer cancelled (to within rounding of
        # each refund to pence), and no more refunds than (cancellation, invoice) pairs could make
        assert (
            pence(r["refunds"]) <= half_even_pence(int(heads["milli"].sum())) + r["refund_count"]
        ), label
        period_lines = cancels[cancels["invoice"].isin(heads.index)]
        assert r["refund_count"] <= len(period_lines), label  # every refund is made of >= 1 line
    # and never more refunded on an invoice than it was paid (summed over the whole window)
    whole = m.revenue_analytics(
        session, PERIODS["whole window"], currency=CURRENCY, with_growth=False
    ).summary
    assert whole["refunds"] <= whole["gross_revenue"]
    by_invoice: dict[str, int] = defaultdict(int)
    for refund in independent.tie.refunds:
        by_invoice[refund.invoice] += refund.pence
    assert all(by_invoice[k] <= independent.invoices.at[k, "pence"] for k in by_invoice)


def test_period_edges_follow_uk_local_time(
    session: MetricSession, independent: Independent
) -> None:
    """Days are UK local days: the sum of the daily revenue over the window is the window's revenue,
    and every day's revenue matches the invoices of that local day."""
    period = PERIODS["2011-06 (summer time)"]
    daily = m.revenue_analytics(session, period, currency=CURRENCY, with_growth=False).tables[
        "daily"
    ]
    inv = independent.invoices[in_period(independent.invoices["local_time"], period)]
    expected = inv.groupby(inv["local_time"].dt.date)["pence"].sum()
    got = {
        d: pence(v)
        for d, v in zip(pd.to_datetime(daily["day"]).dt.date, daily["revenue"], strict=True)
    }
    assert len(got) == 30
    for day, value in got.items():
        assert value == int(expected.get(day, 0)), day
    assert date(2011, 6, 1) in got and date(2011, 6, 30) in got
