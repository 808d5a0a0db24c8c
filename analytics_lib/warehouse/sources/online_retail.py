"""``online-retail``: the UCI "Online Retail" data set (one CSV row per invoice line, gzip or plain).

Columns: ``InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID,
Country``. ``InvoiceDate`` is UK local time (Europe/London), written ``2010-12-01 08:26:00`` in the
shared copy (``12/1/2010 8:26``, the spreadsheet spelling, is accepted too).

Mapping (decisions and measured counts in docs/sources.md):

* every sales invoice (number without a letter prefix) is ONE GBP payment
  ``retail:<InvoiceNo>``: amount = sum(Quantity x UnitPrice) of its accepted lines, in Decimal,
  rounded half-even to pence; status completed (refunded / partially_refunded once its
  cancellations are counted), outcome authorized, provider ``online_retail``, payment method
  ``unknown``, billing reason purchase, plan_type and product_id null (an invoice is a basket of
  goods, not a course); created_at = the earliest InvoiceDate of its lines, converted to UTC.
  All lines of an invoice share the record, so each line takes the invoice's outcome;
* a cancellation invoice (``C`` prefix, negative quantities) becomes refunds: each of its lines
  is tied to the customer's most recent earlier invoice that bought at least that quantity of the
  same StockCode (quantities already refunded are used up), and the lines tied to one invoice
  form one refund ``retail:<CInvoice>:<Invoice>`` of sum(|Quantity| x UnitPrice). A line that
  cannot be tied (no CustomerID, bought before the data set starts, service codes such as POST,
  M, D) is rejected as "refund of an unknown payment"; a refund that would take an invoice's
  refunds above its amount is rejected as "refund above the payment";
* customers: ``retail:<CustomerID>`` (CustomerID ``17850.0`` -> ``17850``), or the guest
  ``retail-guest:<InvoiceNo>`` when CustomerID is empty (``is_guest`` true). A customer's
  country is the country of its earliest accepted invoice;
* rejected lines: ``A`` invoices (bad-debt adjustments), zero quantities, negative quantities on
  sales invoices (stock adjustments), positive quantities on cancellations, UnitPrice <= 0,
  non-numeric values, unparsable dates, Country ``Unspecified`` or unknown (country_code is
  required and not guessed), lines whose CustomerID or Country contradicts their invoice's first
  line.

Invoices do not need to be contiguous in the file: lines are grouped by InvoiceNo.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from analytics_lib.warehouse.countries import code_for_name, is_country_code
from analytics_lib.warehouse.currency import to_minor
from analytics_lib.warehouse.sources import base
from analytics_lib.warehouse.sources.base import IngestError, Progress, Record, Reject
from analytics_lib.warehouse.sources.mapped_csv import (
    CsvRecord,
    csv_raw_rows,
    iter_csv,
    read_header,
    wrong_width,
)

PROVIDER = "online_retail"
CURRENCY = "GBP"
LOCAL_ZONE = ZoneInfo("Europe/London")
COLUMNS = ("InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country")

_INVOICE = re.compile(r"^(C?)(\d{1,12})$")
_QUANTITY = re.compile(r"^[+-]?\d{1,9}$")
_PRICE = re.compile(r"^[+-]?\d{1,9}(\.\d{1,6})?$")
_CUSTOMER = re.compile(r"^(\d{1,12})(\.0*)?$")
_DATE_FORMATS = ("%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%d/%m/%Y %H:%M")


class _Sale:
    """Accumulated accepted lines of one sales invoice."""

    __slots__ = ("number", "order", "lines", "total", "created", "customer", "country", "first_line", "stock_qty")

    def __init__(self, number: str, line: int, customer: str | None, country: str) -> None:
        self.number = number
        self.order = int(number)
        self.lines: list[int] = []
        self.total = Decimal(0)
        self.created: datetime | None = None
        self.customer = customer
        self.country = country
        self.first_line = line
        self.stock_qty: dict[str, int] = defaultdict(int)


class _Cancel:
    """Accepted lines of one cancellation invoice (kept whole: they are few)."""

    __slots__ = ("number", "order", "items", "created", "customer", "country", "first_line")

    def __init__(self, number: str, line: int, customer: str | None, country: str) -> None:
        self.number = number
        self.order = int(number[1:])
        self.items: list[tuple[int, str, int, Decimal, str]] = []  # line, stock, |qty|, price, raw
        self.created: datetime | None = None
        self.customer = customer
        self.country = country
        self.first_line = line


class OnlineRetailSource(base.Source):
    name = "online-retail"
    description = "UCI Online Retail invoice lines (CSV or .csv.gz): invoices -> GBP payments, cancellations -> refunds"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._dates: dict[str, datetime | None] = {}
        self._countries: dict[str, str | None] = {}
        self._prices: dict[str, Decimal] = {}
        #: measured facts of the last read (for docs and benchmarks)
        self.stats: dict[str, int] = {}

    def raw_rows(self, path: Path, lines: set[int]) -> dict[int, str]:
        return csv_raw_rows(path, lines)

    # -- value parsing ---------------------------------------------------------------------
    def _date(self, text: str) -> datetime | None:
        """InvoiceDate (UK local time) -> UTC; None when unparsable or out of range (cached)."""
        try:
            return self._dates[text]
        except KeyError:
            pass
        parsed = None
        value = text.strip()
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            for fmt in _DATE_FORMATS:
                try:
                    parsed = datetime.strptime(value, fmt)
                    break
                except ValueError:
                    continue
        out = None
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=LOCAL_ZONE)
            out = parsed.astimezone(UTC)
            if not 2000 <= out.year < 2100:
                out = None
        self._dates[text] = out
        return out

    def _country(self, text: str) -> str | None:
        try:
            return self._countries[text]
        except KeyError:
            code = code_for_name(text) if not base.has_control_chars(text) else None
            self._countries[text] = code if code and is_country_code(code) else None
            return self._countries[text]

    def _price(self, text: str) -> Decimal | None:
        try:
            return self._prices[text]
        except KeyError:
            pass
        value = text.strip()
        if not _PRICE.match(value):
            return None
        try:
            price = Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern admits only plain decimals
            return None
        self._prices[text] = price
        return price

    # -- reading ---------------------------------------------------------------------------
    def read(self, path: Path, progress: Progress | None = None) -> Iterator[Record | Reject]:
        self.rows_read = 0
        records = iter_csv(path, ",", progress)
        header = read_header(records, path)
        idx = {}
        missing = []
        for name in COLUMNS:
            i = header.find(name)
            if i is None:
                missing.append(name)
            idx[name] = i
        if missing:
            raise IngestError(f"{path.name}: missing required columns: {', '.join(missing)} "
                              f"(expected the UCI Online Retail columns {', '.join(COLUMNS)})")
        width = len(header.names)
        rejects: list[Reject] = []
        sales: dict[str, _Sale] = {}
        cancels: dict[str, _Cancel] = {}
        for rec in records:
            self.rows_read += 1
            reason = wrong_width(rec, width) or self._accept(rec, idx, sales, cancels)
            if reason:
                rejects.append(Reject(rec.line, reason, rec.raw))
        if self.rows_read == 0:
            raise IngestError(f"{path.name}: no data rows (only a header)")
        yield from self._build(path, rejects, sales, cancels)

    def _accept(self, rec: CsvRecord, idx: dict[str, int | None], sales: dict[str, _Sale],
                cancels: dict[str, _Cancel]) -> str | None:
        """File one line under its invoice, or return why it is rejected."""
        f = rec.fields
        assert f is not None
        invoice = f[idx["InvoiceNo"]].strip()  # type: ignore[index]
        if not invoice:
            return "InvoiceNo is missing"
        if invoice[0] in "Aa" and invoice[1:].isdigit():
            return "bad-debt adjustment (InvoiceNo starting with A): not a customer payment"
        m = _INVOICE.match(invoice)
        if not m:
            if base.has_control_chars(invoice):
                return "InvoiceNo contains control characters"
            return f"InvoiceNo {invoice[:40]!r} is not an invoice number (digits, C prefix for cancellations)"
        is_cancel = bool(m.group(1))
        stock = f[idx["StockCode"]].strip()  # type: ignore[index]
        if not stock:
            return "StockCode is missing"
        if base.has_control_chars(stock):
            return "StockCode contains control characters"
        qty_text = f[idx["Quantity"]].strip()  # type: ignore[index]
        if not _QUANTITY.match(qty_text):
            return f"Quantity {qty_text[:40]!r} is not a whole number"
        qty = int(qty_text)
        price_text = f[idx["UnitPrice"]]  # type: ignore[index]
        price = self._price(price_text)
        if price is None:
            return f"UnitPrice {price_text.strip()[:40]!r} is not a number"
        date_text = f[idx["InvoiceDate"]]  # type: ignore[index]
        created = self._date(date_text)
        if created is None:
            return f"InvoiceDate {date_text.strip()[:40]!r} is not a date and time (YYYY-MM-DD HH:MM[:SS])"
        cust_text = f[idx["CustomerID"]].strip()  # type: ignore[index]
        customer = None
        if cust_text:
            cm = _CUSTOMER.match(cust_text)
            if not cm:
                return f"CustomerID {cust_text[:40]!r} is not a number"
            customer = str(int(cm.group(1)))
        country_text = f[idx["Country"]].strip()  # type: ignore[index]
        country = self._country(country_text)
        if country is None:
            if not country_text:
                return "Country is missing (country_code is required)"
            return f"Country {country_text[:40]!r} is not a known country (country_code is required, not guessed)"
        if qty == 0:
            return "Quantity is 0"
        if qty < 0 and not is_cancel:
            return "negative Quantity on a sales invoice: a stock adjustment, not a sale"
        if qty > 0 and is_cancel:
            return "positive Quantity on a cancellation invoice"
        if price <= 0:
            return f"UnitPrice must be positive, got {price_text.strip()[:40]}"
        # the invoice's first line fixes its customer and country
        inv: _Sale | _Cancel | None = (cancels if is_cancel else sales).get(invoice)
        if inv is None:
            inv = _Cancel(invoice, rec.line, customer, country) if is_cancel else _Sale(invoice, rec.line, customer, country)
            (cancels if is_cancel else sales)[invoice] = inv  # type: ignore[assignment]
        elif inv.customer != customer:
            return f"CustomerID differs from the first line of invoice {invoice} (line {inv.first_line})"
        elif inv.country != country:
            return f"Country differs from the first line of invoice {invoice} (line {inv.first_line})"
        if inv.created is None or created < inv.created:
            inv.created = created
        if is_cancel:
            inv.items.append((rec.line, stock, -qty, price, rec.raw))  # type: ignore[union-attr]
        else:
            inv.lines.append(rec.line)  # type: ignore[union-attr]
            inv.total += qty * price  # type: ignore[union-attr]
            inv.stock_qty[stock] += qty  # type: ignore[union-attr]
        return None

    # -- invoices -> records ------------------------------------------------------------------
    def _build(self, path: Path, rejects: list[Reject], sales: dict[str, _Sale],
               cancels: dict[str, _Cancel]) -> Iterator[Record | Reject]:
        late_rejects: dict[int, str] = {}  # sales lines rejected at invoice level (raw fetched later)
        amounts: dict[str, int] = {}
        for number, sale in sales.items():
            minor = to_minor(sale.total, CURRENCY)
            if minor <= 0:
                for line in sale.lines:
                    late_rejects[line] = f"invoice total rounds to 0.00 {CURRENCY}"
                continue
            amounts[number] = minor
        # earlier purchases per customer and stock code, oldest first
        bought: dict[str, dict[str, list[_Sale]]] = defaultdict(lambda: defaultdict(list))
        for number in sorted(amounts, key=lambda n: (sales[n].created, sales[n].order)):
            sale = sales[number]
            if sale.customer is not None:
                for stock in sale.stock_qty:
                    bought[sale.customer][stock].append(sale)
        remaining_qty: dict[tuple[str, str], int] = {}
        refunded: dict[str, int] = defaultdict(int)
        refunds: list[Record] = []
        for cancel in sorted(cancels.values(), key=lambda c: (c.created, c.order)):
            groups: dict[str, list[tuple[int, str, int, Decimal, str]]] = defaultdict(list)
            for item in sorted(cancel.items):
                line, stock, qty, _price, raw = item
                if cancel.customer is None:
                    rejects.append(Reject(line, "refund of an unknown payment: cancellation without "
                                                "CustomerID cannot be tied to an invoice", raw))
                    continue
                candidates = [s for s in bought.get(cancel.customer, {}).get(stock, ())
                              if (s.created, s.order) <= (cancel.created, cancel.order)]
                if not candidates:
                    rejects.append(Reject(line, f"refund of an unknown payment: no earlier invoice of "
                                                f"customer {cancel.customer} has stock code {stock!r}", raw))
                    continue
                chosen = None
                for sale in reversed(candidates):
                    key = (sale.number, stock)
                    left = remaining_qty.get(key, sale.stock_qty[stock])
                    if left >= qty:
                        chosen = sale
                        remaining_qty[key] = left - qty
                        break
                if chosen is None:
                    rejects.append(Reject(line, f"refund above the payment: no earlier invoice of customer "
                                                f"{cancel.customer} has {qty} of stock code {stock!r} left "
                                                f"to cancel", raw))
                    continue
                groups[chosen.number].append(item)
            for number, items in groups.items():
                sale = sales[number]
                minor = to_minor(sum((q * p for _, _, q, p, _ in items), Decimal(0)), CURRENCY)
                if refunded[number] + minor > amounts[number]:
                    for line, stock, qty, _p, raw in items:
                        remaining_qty[(number, stock)] += qty  # give the quantity back
                        rejects.append(Reject(line, f"refund above the payment: {refunded[number] + minor} > "
                                                    f"{amounts[number]} minor units of GBP on retail:{number}", raw))
                    continue
                refunded[number] += minor
                refunds.append(Record(
                    lines=tuple(i[0] for i in items),
                    table="refunds",
                    row={
                        "refund_id": f"retail:{cancel.number}:{number}",
                        "transaction_id": f"retail:{number}",
                        "customer_id": f"retail:{cancel.customer}",
                        "amount_minor": minor,
                        "currency": CURRENCY,
                        "reason": None,
                        "status": "succeeded",
                        "created_at": cancel.created,
                    },
                ))
        # customers: country of the earliest accepted invoice
        customer_country: dict[str, str] = {}
        for number in sorted(amounts, key=lambda n: (sales[n].created, sales[n].order)):
            sale = sales[number]
            if sale.customer is not None and sale.customer not in customer_country:
                customer_country[sale.customer] = sale.country
        payments: list[Record] = []
        for number, minor in amounts.items():
            sale = sales[number]
            created = sale.created
            assert created is not None
            if sale.customer is None:
                customer_id, guest, country = f"retail-guest:{number}", True, sale.country
            else:
                customer_id, guest, country = f"retail:{sale.customer}", False, customer_country[sale.customer]
            done = refunded.get(number, 0)
            status = "refunded" if done == minor else "partially_refunded" if done else "completed"
            payments.append(Record(
                lines=tuple(sale.lines),
                table="transactions",
                row=_payment_row(number, customer_id, minor, status, sale.country, created),
                derived=[("customers", {
                    "customer_id": customer_id, "email_hash": None, "country_code": country,
                    "signup_at": None, "acquisition_channel": "unknown", "campaign_id": None,
                    "device_class": None, "is_guest": guest,
                })],
            ))
        if late_rejects:
            late_raw = self.raw_rows(path, set(late_rejects))
            rejects.extend(Reject(line, reason, late_raw.get(line, "")) for line, reason in late_rejects.items())
        self.stats = {
            "rows_read": self.rows_read, "payments": len(payments), "refunds": len(refunds),
            "rejected_lines": len(rejects),
            "customers": len(customer_country),
            "guest_customers": sum(1 for p in payments if p.row["customer_id"].startswith("retail-guest:")),
            "refunded_payments": sum(1 for p in payments if p.row["status"] != "completed"),
        }
        accounted = sum(len(r.lines) for r in payments) + sum(len(r.lines) for r in refunds) + len(rejects)
        if accounted != self.rows_read:  # a bug, not bad input
            raise RuntimeError(f"online-retail: {accounted} lines accounted for, {self.rows_read} read")
        ordered: list[tuple[int, Record | Reject]] = [(r.line, r) for r in rejects]
        ordered += [(min(r.lines), r) for r in payments]
        ordered += [(min(r.lines), r) for r in refunds]
        ordered.sort(key=lambda pair: pair[0])
        for _, out in ordered:
            yield out


def _payment_row(number: str, customer_id: str, minor: int, status: str, country: str,
                 created: datetime) -> dict[str, Any]:
    return {
        "transaction_id": f"retail:{number}",
        "customer_id": customer_id,
        "amount_minor": minor,
        "currency": CURRENCY,
        "status": status,
        "outcome_type": "authorized",
        "payment_method": "unknown",
        "card_brand": None,
        "card_country": None,
        "card_age_days": None,
        "card_expiry_month": None,
        "provider": PROVIDER,
        "created_at": created,
        "completed_at": created,
        "failed_at": None,
        "failure_reason": None,
        "attempt_number": 1,
        "original_transaction_id": None,
        "billing_reason": "purchase",
        "product_id": None,
        "subscription_id": None,
        "plan_type": None,
        "country_code": country,
        "ip_country": None,
        "ip_hash": None,
        "device_class": None,
        "referrer_domain": None,
        "campaign_id": None,
        "discount_code": None,
        "risk_score": None,
        "fraud_indicators": [],
        "created_month": base.month_of(created),
    }
