"""Shared fixtures: a throwaway warehouse per test, and helpers to write input files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analytics_lib.config import PROJECT_ROOT
from analytics_lib.warehouse import Warehouse

SHARED_DATA = (PROJECT_ROOT.parent / "shared" / "data").resolve()


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse")


def write_jsonl(path: Path, records: list) -> Path:
    """Write records (dicts, or raw strings written as-is) one per line."""
    with open(path, "w", encoding="utf-8") as handle:
        for rec in records:
            handle.write((rec if isinstance(rec, str) else json.dumps(rec)) + "\n")
    return path


def payment(pid: str = "pay_1", **overrides) -> dict:
    """A valid platform payment record; override any top-level or metadata field."""
    rec = {
        "id": pid,
        "userId": "user_1",
        "amount": 49.99,
        "currency": "USD",
        "status": "completed",
        "paymentMethod": "card",
        "provider": "stripe",
        "createdAt": "2024-05-01T10:00:00Z",
        "completedAt": "2024-05-01T10:00:01.250Z",
        "metadata": {
            "courseId": "course_python",
            "countryCode": "US",
            "ipAddress": "198.51.100.23",
            "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148",
            "referrer": "https://www.google.com/search?q=python+course",
            "campaignId": "cmp_spring",
            "discountCode": "SPRING10",
        },
        "fees": [{"type": "processing", "amount": 1.75, "currency": "USD"}],
        "riskScore": 12.5,
        "fraudIndicators": [],
    }
    meta = {k[9:]: overrides.pop(k) for k in list(overrides) if k.startswith("metadata.")}
    rec.update(overrides)
    rec["metadata"].update(meta)
    return rec
