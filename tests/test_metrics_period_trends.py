"""Periods in the business time zone, and the statistics behind trend significance."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from scipy import stats

from analytics_lib.metrics import Period, PeriodError
from analytics_lib.metrics import trends as tr

TODAY = date(2024, 5, 15)  # a Wednesday


@pytest.mark.parametrize(
    ("text", "start", "end", "kind", "label"),
    [
        ("2024-05-03", date(2024, 5, 3), date(2024, 5, 4), "day", "2024-05-03"),
        ("2024-W18", date(2024, 4, 29), date(2024, 5, 6), "week", "2024-W18"),
        ("2024-05", date(2024, 5, 1), date(2024, 6, 1), "month", "2024-05"),
        ("2024-q2", date(2024, 4, 1), date(2024, 7, 1), "quarter", "2024-Q2"),
        ("2024", date(2024, 1, 1), date(2025, 1, 1), "year", "2024"),
        ("yesterday", date(2024, 5, 14), date(2024, 5, 15), "day", "2024-05-14"),
        ("last-week", date(2024, 5, 6), date(2024, 5, 13), "week", "2024-W19"),
        ("last_month", date(2024, 4, 1), date(2024, 5, 1), "month", "2024-04"),
        ("last-quarter", date(2024, 1, 1), date(2024, 4, 1), "quarter", "2024-Q1"),
        ("mtd", date(2024, 5, 1), date(2024, 5, 16), "custom", "2024-05-01..2024-05-15"),
        ("last-30-days", date(2024, 4, 15), date(2024, 5, 15), "custom", "2024-04-15..2024-05-14"),
    ],
)
def test_parse(text, start, end, kind, label):
    p = Period.parse(text, "Europe/Istanbul", today=TODAY)
    assert (p.start, p.end, p.kind, p.label) == (start, end, kind, label)


@pytest.mark.parametrize("bad", ["", "2024-13", "2024-W60", "next-year", "2024-02-30", "last-0-days", "'; DROP"])
def test_parse_refuses(bad):
    with pytest.raises(PeriodError):
        Period.parse(bad, today=TODAY)


def test_bounds_are_local_midnights():
    may = Period.month(2024, 5, "Europe/Istanbul")
    assert may.start_utc == datetime(2024, 4, 30, 21, tzinfo=UTC)
    assert may.end_utc == datetime(2024, 5, 31, 21, tzinfo=UTC)
    # a DST month in London has 743 hours
    march = Period.month(2024, 3, "Europe/London")
    assert (march.end_utc - march.start_utc).total_seconds() / 3600 == 743


def test_previous_and_last_year():
    assert Period.month(2024, 3).previous() == Period.month(2024, 2)
    assert Period.quarter(2024, 1).previous() == Period.quarter(2023, 4)
    custom = Period.between("2024-05-10", "2024-05-16")
    assert (custom.previous().start, custom.previous().end) == (date(2024, 5, 3), date(2024, 5, 10))
    week = Period.parse("2024-W18")
    assert week.same_period_last_year().label == "2023-W18"
    leap = Period.day(date(2024, 2, 29))
    assert leap.same_period_last_year().start == date(2023, 2, 28)


def test_bad_periods():
    with pytest.raises(PeriodError, match="after its start"):
        Period(date(2024, 5, 2), date(2024, 5, 1))
    with pytest.raises(PeriodError, match="longer than"):
        Period.between("1900-01-01", "2099-12-31")
    with pytest.raises(PeriodError, match="time zone"):
        Period.month(2024, 5, "Mars/Olympus")


def test_two_proportion_matches_the_textbook():
    # z = (0.6 - 0.5) / sqrt(0.55 * 0.45 * (2/200)) = 2.0100756; p = 2 * (1 - Phi(z))
    p = tr.two_proportion_p(120, 200, 100, 200)
    assert p == pytest.approx(2 * stats.norm.sf(0.1 / (0.55 * 0.45 * 0.01) ** 0.5))
    assert p == pytest.approx(0.04443, abs=1e-4)
    assert tr.two_proportion_p(5, 10, 5, 10) == pytest.approx(1.0)
    assert tr.two_proportion_p(0, 0, 1, 1) is None


def test_poisson_counts_allow_for_exposure():
    # the same daily rate in a 30 and a 31 day month is not a change
    assert tr.poisson_counts_p(300, 30, 310, 31) == pytest.approx(1.0)
    # 130 vs 100 in equal periods: binomial test of 130 of 230 at p = 0.5
    assert tr.poisson_counts_p(130, 30, 100, 30) == pytest.approx(stats.binomtest(130, 230, 0.5).pvalue)
    assert tr.poisson_counts_p(0, 30, 0, 30) is None


def test_welch_from_moments_equals_welch_on_samples():
    a = [10.0, 12.5, 9.0, 14.0, 11.0]
    b = [20.0, 18.5, 25.0, 22.0]
    from_moments = tr.welch_from_moments(len(a), sum(a), sum(x * x for x in a), len(b), sum(b), sum(x * x for x in b))
    assert from_moments == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert tr.welch_samples(a, b) == pytest.approx(from_moments)
    assert tr.welch_from_moments(1, 5, 25, 3, 3, 3) is None


def test_trend_direction_and_significance():
    up = tr.make_trend("success_rate", 0.6, 0.5, 0.004, "two_proportion_z")
    assert (up.trend, up.significance, up.change_percent) == ("up", "high", pytest.approx(0.2))
    noisy = tr.make_trend("revenue", 130.0, 100.0, 0.2, "welch_t_daily")
    assert (noisy.trend, noisy.significance) == ("up", "low"), "a large change can still be noise"
    flat = tr.make_trend("revenue", 100.4, 100.0, 0.03, "welch_t_daily")
    assert (flat.trend, flat.significance) == ("stable", "medium")
    assert tr.make_trend("x", 5.0, 0.0, None, "t").trend == "up"
    assert tr.make_trend("x", None, 1.0, None, "t").change is None
