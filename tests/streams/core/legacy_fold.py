"""Test-only: the fold and credit as they were before open invoices got their own keys (main at ee42ec9).

`streams/core/credit.py` then `streams/core/fold.py` of that commit, verbatim but for absolute imports
and one module: the reference the new layout must match output for output (test_fold_equivalence.py)
and the "old" side of tests/streams/core/bench_fold.py. Do not change it.
"""

from __future__ import annotations

# ---- streams/core/credit.py ----



from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from streams.core.documents import PAID_STATUS, PARTIALLY_PAID, UNPAID, Allocation
from streams.core.money import ZERO, is_known_currency, is_whole_minor, to_decimal
from streams.core.serde import Plain

_CREDIT_ALL = [
    "CREDIT_HOLD",
    "CREDIT_LIMIT_EXCEEDED",
    "APPLIED",
    "DUPLICATE",
    "REFUSED",
    "OVERPAYMENT",
    "UNKNOWN_INVOICE",
    "CURRENCY_MISMATCH",
    "INVALID_AMOUNT",
    "OpenInvoice",
    "CreditState",
    "CreditCheck",
    "CreditUpdate",
    "PaymentResult",
    "PaymentReceived",
    "check_order",
    "add_invoice",
    "apply_payment",
    "apply_credit_refund",
    "set_terms",
    "validate_payment",
    "validate_customer_credit",
]

CREDIT_HOLD = "CREDIT_HOLD"
CREDIT_LIMIT_EXCEEDED = "CREDIT_LIMIT_EXCEEDED"

APPLIED = "APPLIED"
DUPLICATE = "DUPLICATE"
REFUSED = "REFUSED"

OVERPAYMENT = "OVERPAYMENT"
UNKNOWN_INVOICE = "UNKNOWN_INVOICE"
CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
INVALID_AMOUNT = "INVALID_AMOUNT"

_METHODS = frozenset({"CASH", "CARD", "MOBILE", "BANK"})


@dataclass(frozen=True, slots=True)
class OpenInvoice(Plain):
    """An ON_ACCOUNT invoice with something still due."""

    invoice_id: str
    issued_at: int
    currency: str
    total: Decimal
    paid: Decimal = ZERO
    credited: Decimal = ZERO  # reduced by CREDIT refunds

    @property
    def remaining(self) -> Decimal:
        return self.total - self.paid - self.credited

    @property
    def status(self) -> str:
        if self.remaining == 0:
            return PAID_STATUS
        return PARTIALLY_PAID if self.paid or self.credited else UNPAID


@dataclass(frozen=True, slots=True)
class CreditState(Plain):
    """Credit of one customer; `CreditState(tenant_id, customer_ref)` is the empty state."""

    tenant_id: str
    customer_ref: str
    credit_limit: Decimal = ZERO  # 0 = no limit
    on_hold: bool = False
    open_invoices: tuple[OpenInvoice, ...] = ()
    credit_balance: Decimal = ZERO  # customer's unallocated credit from CREDIT refunds
    applied: tuple[str, ...] = ()  # "invoice:<id>", "payment:<id>", "refund:<id>"

    def to_dict(self) -> dict[str, Any]:
        """The generic `Plain` form, built directly: a customer may hold many open invoices."""
        return {
            "tenant_id": self.tenant_id, "customer_ref": self.customer_ref,
            "credit_limit": format(self.credit_limit, "f"), "on_hold": self.on_hold,
            "open_invoices": [{"invoice_id": i.invoice_id, "issued_at": i.issued_at, "currency": i.currency,
                               "total": format(i.total, "f"), "paid": format(i.paid, "f"),
                               "credited": format(i.credited, "f")} for i in self.open_invoices],
            "credit_balance": format(self.credit_balance, "f"), "applied": list(self.applied),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CreditState":
        return cls(
            data["tenant_id"], data["customer_ref"], Decimal(data.get("credit_limit", "0")),
            data.get("on_hold", False),
            tuple(OpenInvoice(i["invoice_id"], i["issued_at"], i["currency"], Decimal(i["total"]),
                              Decimal(i.get("paid", "0")), Decimal(i.get("credited", "0")))
                  for i in data.get("open_invoices", ())),
            Decimal(data.get("credit_balance", "0")), tuple(data.get("applied", ())),
        )

    @property
    def outstanding(self) -> Decimal:
        """Unpaid amount of the open invoices, less any credit the customer holds."""
        return sum((i.remaining for i in self.open_invoices), ZERO) - self.credit_balance

    @property
    def unlimited(self) -> bool:
        return self.credit_limit == 0

    @property
    def available(self) -> Decimal | None:
        """credit_limit - outstanding; None when there is no limit."""
        if self.unlimited:
            return None
        return self.credit_limit - self.outstanding


@dataclass(frozen=True, slots=True)
class CreditCheck(Plain):
    """The answer to "may this customer take an order of this amount on account?" (as in 004)."""

    approved: bool
    reason: str | None  # CREDIT_HOLD / CREDIT_LIMIT_EXCEEDED; None when approved
    credit_limit: Decimal
    outstanding: Decimal
    available: Decimal | None
    order_amount: Decimal
    message: str = ""


@dataclass(frozen=True, slots=True)
class CreditUpdate:
    """New state; `changed` False when the operation was a repeat or changed nothing."""

    state: CreditState
    changed: bool


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """APPLIED with allocations, DUPLICATE (already applied: no-op), or REFUSED with a reason."""

    state: CreditState
    status: str
    allocations: tuple[Allocation, ...] = ()
    code: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentReceived(Plain):
    """A payment.received event's data."""

    payment_id: str
    customer_ref: str
    amount: Decimal
    currency: str
    method: str
    invoice_id: str | None = None
    reference: str | None = None

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> PaymentReceived:
        """From the event's `data`; call validate_payment first."""
        return cls(
            payment_id=data["payment_id"],
            customer_ref=data["customer_ref"],
            amount=to_decimal(data["amount"]),
            currency=data["currency"],
            method=data["method"],
            invoice_id=data.get("invoice_id"),
            reference=data.get("reference"),
        )


def _figures(state: CreditState, amount: Decimal, approved: bool, reason: str | None, message: str) -> CreditCheck:
    return CreditCheck(approved, reason, state.credit_limit, state.outstanding, state.available, amount, message)


def check_order(state: CreditState, order_amount: Decimal) -> CreditCheck:
    """Refused when on hold (CREDIT_HOLD) or when the order exceeds available credit
    (CREDIT_LIMIT_EXCEEDED); an order using exactly what is available is approved."""
    if state.on_hold:
        return _figures(state, order_amount, False, CREDIT_HOLD, f"Customer {state.customer_ref} is on credit hold")
    available = state.available
    if available is not None and order_amount > available:
        message = f"Insufficient credit. Available: {available}, Required: {order_amount}"
        return _figures(state, order_amount, False, CREDIT_LIMIT_EXCEEDED, message)
    return _figures(state, order_amount, True, None, "")


def _remember(state: CreditState, *marks: str) -> tuple[str, ...]:
    return state.applied + marks


def add_invoice(
    state: CreditState,
    invoice_id: str,
    issued_at: int,
    currency: str,
    total: Decimal,
) -> CreditUpdate:
    """An ON_ACCOUNT invoice becomes outstanding (a fact: never refused)."""
    mark = f"invoice:{invoice_id}"
    if mark in state.applied:
        return CreditUpdate(state, False)
    if total < 0:
        raise ValueError(f"invoice total cannot be negative: {total}")
    invoices = state.open_invoices
    if total > 0:
        invoices = invoices + (OpenInvoice(invoice_id, issued_at, currency, total),)
    return CreditUpdate(replace(state, open_invoices=invoices, applied=_remember(state, mark)), True)


def _refuse(state: CreditState, code: str, reason: str) -> PaymentResult:
    return PaymentResult(state, REFUSED, (), code, reason)


def apply_payment(
    state: CreditState, payment_id: str, amount: Decimal, invoice_id: str | None, currency: str
) -> PaymentResult:
    """Apply a payment to `invoice_id`, else to the oldest unpaid invoices first (issued_at,
    then id). Paying more than is due (on that invoice, or in total) is refused and nothing
    is applied; so is an unknown invoice or another currency."""
    mark = f"payment:{payment_id}"
    if mark in state.applied:
        return PaymentResult(state, DUPLICATE)
    if amount <= 0:
        return _refuse(state, INVALID_AMOUNT, f"payment amount must be positive, got {amount}")
    if invoice_id is not None:
        target = next((i for i in state.open_invoices if i.invoice_id == invoice_id), None)
        if target is None:
            return _refuse(
                state, UNKNOWN_INVOICE, f"{invoice_id} is not an open invoice of customer {state.customer_ref}"
            )
        if target.currency != currency:
            return _refuse(
                state, CURRENCY_MISMATCH, f"payment in {currency} for {invoice_id} in {target.currency}"
            )
        if amount > target.remaining:
            return _refuse(
                state, OVERPAYMENT, f"payment of {amount} exceeds the {target.remaining} due on {invoice_id}"
            )
        candidates = [target]
    else:
        candidates = sorted(
            (i for i in state.open_invoices if i.currency == currency and i.remaining > 0),
            key=lambda i: (i.issued_at, i.invoice_id),
        )
        due = sum((i.remaining for i in candidates), ZERO)
        if amount > due:
            return _refuse(
                state,
                OVERPAYMENT,
                f"payment of {amount} {currency} exceeds the {due} due on customer {state.customer_ref}'s open invoices",
            )
    left = amount
    updated: dict[str, OpenInvoice] = {}
    allocations: list[Allocation] = []
    for inv in candidates:
        if left == 0:
            break
        take = min(left, inv.remaining)
        new = replace(inv, paid=inv.paid + take)
        updated[inv.invoice_id] = new
        allocations.append(Allocation(inv.invoice_id, take, new.status, new.paid))
        left -= take
    invoices = tuple(
        updated.get(i.invoice_id, i) for i in state.open_invoices if updated.get(i.invoice_id, i).remaining > 0
    )
    new_state = replace(state, open_invoices=invoices, applied=_remember(state, mark))
    return PaymentResult(new_state, APPLIED, tuple(allocations))


def apply_credit_refund(state: CreditState, refund_id: str, invoice_id: str, amount: Decimal) -> CreditUpdate:
    """A CREDIT refund lowers what is due on `invoice_id`; any excess becomes credit_balance."""
    mark = f"refund:{refund_id}"
    if mark in state.applied:
        return CreditUpdate(state, False)
    if amount < 0:
        raise ValueError(f"refund amount cannot be negative: {amount}")
    invoices: list[OpenInvoice] = []
    excess = amount
    for inv in state.open_invoices:
        if inv.invoice_id == invoice_id:
            take = min(excess, inv.remaining)
            inv = replace(inv, credited=inv.credited + take)
            excess -= take
        if inv.remaining > 0:
            invoices.append(inv)
    new = replace(
        state,
        open_invoices=tuple(invoices),
        credit_balance=state.credit_balance + excess,
        applied=_remember(state, mark),
    )
    return CreditUpdate(new, amount != 0)


def set_terms(state: CreditState, credit_limit: Decimal, on_hold: bool) -> CreditUpdate:
    """customer.credit: set the limit (0 = no limit) and the hold flag."""
    if credit_limit < 0:
        raise ValueError(f"credit_limit cannot be negative: {credit_limit}")
    if credit_limit == state.credit_limit and on_hold == state.on_hold:
        return CreditUpdate(state, False)
    return CreditUpdate(replace(state, credit_limit=credit_limit, on_hold=on_hold), True)


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _amount(value: Any, what: str, reasons: list[str]) -> Decimal | None:
    try:
        return to_decimal(value)
    except (TypeError, ValueError):
        reasons.append(f"{what} must be a decimal number, got {value!r}")
        return None


def validate_payment(data: Mapping[str, Any]) -> list[str]:
    """Readable reasons why a payment.received `data` breaks the rules; empty when valid."""
    reasons: list[str] = []
    for name in ("payment_id", "customer_ref"):
        if not _nonempty_str(data.get(name)):
            reasons.append(f"{name} is missing or empty")
    if data.get("invoice_id") is not None and not _nonempty_str(data.get("invoice_id")):
        reasons.append("invoice_id, when given, must not be empty")
    currency = data.get("currency")
    if not is_known_currency(currency):
        reasons.append(f"unknown currency {currency!r}")
    if data.get("method") not in _METHODS:
        reasons.append(f"method must be one of CASH, CARD, MOBILE, BANK, got {data.get('method')!r}")
    amount = _amount(data.get("amount"), "amount", reasons)
    if amount is not None:
        if amount <= 0:
            reasons.append(f"amount must be positive, got {amount}")
        elif is_known_currency(currency) and not is_whole_minor(amount, currency):
            reasons.append(f"amount {amount} has more decimals than {currency} allows")
    return reasons


def validate_customer_credit(data: Mapping[str, Any]) -> list[str]:
    """Readable reasons why a customer.credit `data` breaks the rules; empty when valid."""
    reasons: list[str] = []
    if not _nonempty_str(data.get("customer_ref")):
        reasons.append("customer_ref is missing or empty")
    limit = _amount(data.get("credit_limit"), "credit_limit", reasons)
    if limit is not None and limit < 0:
        reasons.append(f"credit_limit must not be negative, got {limit}")
    if not isinstance(data.get("on_hold"), bool):
        reasons.append(f"on_hold must be true or false, got {data.get('on_hold')!r}")
    return reasons


# ---- streams/core/fold.py ----



import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Protocol

from streams.core.catalog import CatalogEntry, validate_catalog_update
from streams.core.documents import DocumentLine, Invoice
from streams.core.idempotency import fingerprint
from streams.core.ledger import LedgerError, book_payment, book_sale
from streams.core.orders import StockAnswer, check_lines
from streams.core.outcomes import (ACCEPTED, IDEMPOTENCY_CONFLICT, PAYMENT, REFUND, REFUSED, SALE, CreditFigures, Outcome,
                       Reason)
from streams.core.pricing import CatalogItem, PricingError, price_lines
from streams.core.refunds import UNKNOWN_SALE, LineRefunded, RefundError, RefundRequest, RefundState, book_refund, validate_refund
from streams.core.sales import ON_ACCOUNT, PAID, Sale, validate_sale
from streams.core.serde import Plain
from streams.core.stock import (REASON_ADJUSTMENT, REASON_CATALOG, REASON_COUNT, REASON_ORDER, REASON_RETURN, REASON_SALE,
                    RESTOCK)
from streams.core.stock import SALE as SALE_DELTA
from streams.core.stock import StockResult, StockState, apply_absolute, apply_delta, validate_inventory_change

__all__ = [
    "TABLES",
    "POS",
    "ORDER",
    "ACCEPTED",
    "REFUSED",
    "FAILED",
    "Input",
    "Emit",
    "DeadLetter",
    "State",
    "DictState",
    "FoldConfig",
    "RefundResult",
    "SaleRecord",
    "PaymentRecord",
    "fold",
    "serial_fold",
    "stock_of",
    "catalog_of",
    "credit_of",
    "sale_of",
    "payment_of",
    "seen_of",
    "datum",
    "VALIDATORS",
]

TABLES = ("stock", "catalog", "credit", "sales", "payments", "seen")

POS, ORDER = "POS", "ORDER"  # SaleRecord.kind: sale.completed / order.placed
FAILED = "FAILED"  # SaleRecord.status of a dead-lettered sale (ACCEPTED and REFUSED as in the outcome)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLI = timedelta(milliseconds=1)


# -- the interface ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Input:
    """One admitted event, in tenant-log order."""

    topic: str  # contract input topic: catalog.updates, inventory.changes, sales, refunds, payments, customers
    partition: int  # where it was read (for the DLQ record)
    offset: int
    key: bytes | None  # original key bytes
    value: bytes  # original value bytes (for the DLQ record)
    record: Mapping[str, Any]  # the decoded envelope (timestamp a tz-aware datetime or epoch millis; Decimal money)


@dataclass(frozen=True, slots=True)
class Emit:
    """One output record: an Avro datum for `topic`'s schema, ready for Codec.encode."""

    topic: str
    key: str
    value: dict


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The event breaks a rule found only in the fold; nothing of it was applied."""

    input: Input
    error: str  # readable, starting with the code: "PAYMENT_MISMATCH: ..."
    stage: str  # "rule" or "idempotency"


class State(Protocol):
    """The tenant's state as the shell holds it; values are JSON-plain."""

    def get(self, table: str, key: str) -> Any | None: ...

    def put(self, table: str, key: str, value: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class FoldConfig:
    default_tax_percent: Decimal = Decimal(0)
    # A duplicate writes the current value of every key its event touches again (same value), so a
    # store whose last writes never reached its changelog (a SIGKILL) is healed by the redelivery.
    rewrite_duplicates: bool = True


class DictState:
    """A dict-backed State (tests, the serial reference): `.tables[table][key] -> value`."""

    __slots__ = ("tables",)

    def __init__(self, tables: Mapping[str, Mapping[str, Any]] | None = None):
        self.tables: dict[str, dict[str, Any]] = {t: {} for t in TABLES}
        for table, rows in (tables or {}).items():
            self.tables[table] = dict(rows)

    def get(self, table: str, key: str) -> Any | None:
        return self.tables[table].get(key)

    def put(self, table: str, key: str, value: Any) -> None:
        if table not in self.tables:
            raise KeyError(f"unknown table {table!r}; the fold uses {TABLES}")
        self.tables[table][key] = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DictState) and self.tables == other.tables

    def __repr__(self) -> str:
        return f"DictState({ {t: len(rows) for t, rows in self.tables.items()} })"


# -- what the fold keeps ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RefundResult(Plain):
    """A refund decided on a sale: how to recognise it again and what was answered."""

    refund_id: str
    event_id: str
    fingerprint: str
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class SaleRecord(Plain):
    """A sale as decided (the `sales` table); there are no pending states."""

    tenant_id: str
    sale_id: str
    event_id: str
    fingerprint: str
    kind: str  # POS / ORDER
    status: str  # ACCEPTED / REFUSED / FAILED
    currency: str
    decided_at: int  # the sale event's timestamp, epoch millis
    payment_terms: str = PAID
    customer_ref: str | None = None
    location_id: str | None = None
    outcome: Outcome | None = None  # None when FAILED (no outcome is sent: the event went to the DLQ)
    error: str | None = None  # FAILED: the dead-letter reason
    document_ids: tuple[str, ...] = ()  # invoice, payments, journal entry (ACCEPTED)
    invoice: Invoice | None = None  # ACCEPTED: what refunds are checked and priced against
    refunds: RefundState = RefundState()
    refund_results: tuple[RefundResult, ...] = ()  # in the order they were decided

    def refund_result(self, refund_id: str) -> RefundResult | None:
        for r in self.refund_results:
            if r.refund_id == refund_id:
                return r
        return None

    def to_dict(self) -> dict[str, Any]:
        """The generic `Plain` form, built directly: every sale writes one."""
        outcome, invoice, refunds = self.outcome, self.invoice, self.refunds
        return {
            "tenant_id": self.tenant_id, "sale_id": self.sale_id, "event_id": self.event_id,
            "fingerprint": self.fingerprint, "kind": self.kind, "status": self.status, "currency": self.currency,
            "decided_at": self.decided_at, "payment_terms": self.payment_terms, "customer_ref": self.customer_ref,
            "location_id": self.location_id, "outcome": None if outcome is None else outcome.to_dict(),
            "error": self.error, "document_ids": list(self.document_ids),
            "invoice": None if invoice is None else _invoice_plain(invoice),
            "refunds": {"refunded": [{"line_no": r.line_no, "quantity": r.quantity, "net": format(r.net, "f"),
                                      "tax": format(r.tax, "f")} for r in refunds.refunded],
                        "refund_ids": list(refunds.refund_ids)},
            "refund_results": [{"refund_id": r.refund_id, "event_id": r.event_id, "fingerprint": r.fingerprint,
                                "outcome": r.outcome.to_dict()} for r in self.refund_results],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SaleRecord":
        outcome, invoice, refunds = data.get("outcome"), data.get("invoice"), data.get("refunds")
        return cls(
            data["tenant_id"], data["sale_id"], data["event_id"], data["fingerprint"], data["kind"], data["status"],
            data["currency"], data["decided_at"], data.get("payment_terms", PAID), data.get("customer_ref"),
            data.get("location_id"), None if outcome is None else Outcome.from_dict(outcome), data.get("error"),
            tuple(data.get("document_ids", ())), None if invoice is None else _invoice_from(invoice),
            RefundState(tuple(LineRefunded(r["line_no"], r["quantity"], Decimal(r["net"]), Decimal(r["tax"]))
                              for r in refunds.get("refunded", ())), tuple(refunds.get("refund_ids", ())))
            if refunds else RefundState(),
            tuple(RefundResult(r["refund_id"], r["event_id"], r["fingerprint"], Outcome.from_dict(r["outcome"]))
                  for r in data.get("refund_results", ())),
        )


def _invoice_plain(inv: Invoice) -> dict[str, Any]:
    return {
        "tenant_id": inv.tenant_id, "invoice_id": inv.invoice_id, "sale_id": inv.sale_id,
        "customer_ref": inv.customer_ref, "channel": inv.channel, "currency": inv.currency,
        "payment_terms": inv.payment_terms, "issued_at": inv.issued_at,
        "lines": [{"line_no": li.line_no, "sku": li.sku, "quantity": li.quantity,
                   "unit_price": format(li.unit_price, "f"), "discount_percent": format(li.discount_percent, "f"),
                   "tax_percent": format(li.tax_percent, "f"), "net": format(li.net, "f"),
                   "tax": format(li.tax, "f"), "total": format(li.total, "f")} for li in inv.lines],
        "net_total": format(inv.net_total, "f"), "tax_total": format(inv.tax_total, "f"),
        "total": format(inv.total, "f"),
    }


def _invoice_from(data: Mapping[str, Any]) -> Invoice:
    return Invoice(
        data["tenant_id"], data["invoice_id"], data["sale_id"], data.get("customer_ref"), data["channel"],
        data["currency"], data["payment_terms"], data["issued_at"],
        tuple(DocumentLine(li["line_no"], li["sku"], li["quantity"], Decimal(li["unit_price"]),
                           Decimal(li["discount_percent"]), Decimal(li["tax_percent"]), Decimal(li["net"]),
                           Decimal(li["tax"]), Decimal(li["total"])) for li in data["lines"]),
        Decimal(data["net_total"]), Decimal(data["tax_total"]), Decimal(data["total"]),
    )


@dataclass(frozen=True, slots=True)
class PaymentRecord(Plain):
    """A payment.received as decided (the `payments` table): recognised again by payment_id."""

    tenant_id: str
    payment_id: str
    customer_ref: str
    event_id: str
    fingerprint: str
    status: str  # APPLIED / REFUSED (credit.apply_payment's status)

    def to_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "payment_id": self.payment_id, "customer_ref": self.customer_ref,
                "event_id": self.event_id, "fingerprint": self.fingerprint, "status": self.status}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PaymentRecord":
        return cls(data["tenant_id"], data["payment_id"], data["customer_ref"], data["event_id"],
                   data["fingerprint"], data["status"])


# -- typed readers ------------------------------------------------------------------------------
def stock_of(state: State, tenant: str, sku: str) -> StockState | None:
    raw = state.get("stock", f"{tenant}:{sku}")
    return None if raw is None else StockState.from_dict(raw)


def catalog_of(state: State, tenant: str, sku: str) -> CatalogEntry | None:
    raw = state.get("catalog", f"{tenant}:{sku}")
    return None if raw is None else CatalogEntry.from_dict(raw)


def credit_of(state: State, tenant: str, customer_ref: str) -> CreditState | None:
    raw = state.get("credit", f"{tenant}:{customer_ref}")
    return None if raw is None else CreditState.from_dict(raw)


def sale_of(state: State, tenant: str, sale_id: str) -> SaleRecord | None:
    raw = state.get("sales", f"{tenant}:{sale_id}")
    return None if raw is None else SaleRecord.from_dict(raw)


def payment_of(state: State, tenant: str, payment_id: str) -> PaymentRecord | None:
    raw = state.get("payments", f"{tenant}:{payment_id}")
    return None if raw is None else PaymentRecord.from_dict(raw)


def seen_of(state: State, tenant: str, event_id: str) -> str | None:
    """The fingerprint of the event applied under `event_id`, if any."""
    return state.get("seen", f"{tenant}:{event_id}")


# -- output datums ------------------------------------------------------------------------------
_NAMES: dict[type, tuple[str, ...]] = {}
_SCALARS = frozenset({str, int, bool, float, Decimal, type(None)})


def datum(value: Any) -> Any:
    """A core dataclass (document, journal entry, alert) as an Avro datum: dicts and lists,
    Decimal money and int epoch-millis kept as they are."""
    cls = value.__class__
    if cls in _SCALARS:
        return value
    names = _NAMES.get(cls)
    if names is None:
        if cls is tuple or cls is list:
            return [v if v.__class__ in _SCALARS else datum(v) for v in value]
        if isinstance(value, Mapping):
            return {k: datum(v) for k, v in value.items()}
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            return value
        names = _NAMES[cls] = tuple(f.name for f in dataclasses.fields(value))
    out = {}
    for name in names:
        v = getattr(value, name)
        out[name] = v if v.__class__ in _SCALARS else datum(v)
    return out


def _millis(value: datetime | int) -> int:
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - _EPOCH) // _MILLI


# -- the fold -----------------------------------------------------------------------------------
_MISSING = object()


class _Staged:
    """The event's writes, kept apart until it is decided: an event is applied whole or not at all
    (an exception leaves the state untouched), and each key it changes is written once."""

    __slots__ = ("base", "writes")

    def __init__(self, base: State):
        self.base = base
        self.writes: dict[tuple[str, str], Any] = {}

    def get(self, table: str, key: str) -> Any | None:
        value = self.writes.get((table, key), _MISSING)
        return self.base.get(table, key) if value is _MISSING else value

    def put(self, table: str, key: str, value: Any) -> None:
        self.writes[(table, key)] = value

    def flush(self) -> None:
        put = self.base.put
        for (table, key), value in self.writes.items():
            put(table, key, value)


@dataclass(slots=True)
class _Ctx:
    state: State
    input: Input
    config: FoldConfig
    tenant: str
    event_id: str
    event_type: str
    ts: int
    fp: str
    data: Mapping[str, Any]
    out: list = field(default_factory=list)

    def emit(self, topic: str, key: str, value: dict) -> None:
        self.out.append(Emit(topic, key, value))

    def dead_letter(self, error: str, stage: str) -> None:
        self.out.append(DeadLetter(self.input, error, stage))

    def store_stock(self, before: StockState, result: StockResult) -> None:
        """Write a SKU's new state and emit its level (when it changed) and alerts."""
        new = result.state
        key = f"{self.tenant}:{new.sku}"
        if new is not before:
            self.state.put("stock", key, new.to_dict())
        if result.changed:
            self.out.append(Emit("stock.levels", key, new.level()))
        for alert in result.alerts:
            self.out.append(Emit("inventory.alerts", key, datum(alert)))

    def stock(self, sku: str) -> StockState:
        raw = self.state.get("stock", f"{self.tenant}:{sku}")
        return StockState(self.tenant, sku) if raw is None else StockState.from_dict(raw)

    def credit(self, customer_ref: str) -> CreditState:
        return credit_of(self.state, self.tenant, customer_ref) or CreditState(self.tenant, customer_ref)

    def store_credit(self, credit: CreditState) -> None:
        self.state.put("credit", f"{self.tenant}:{credit.customer_ref}", credit.to_dict())


def fold(state: State, event: Input, config: FoldConfig) -> list[Emit | DeadLetter]:
    """Apply one event to the tenant's state (reads and writes through `state`), return its outputs in order.

    Atomic: the event's writes reach `state` together once it is decided, each changed key once; if
    this raises (a bug, never data), `state` is untouched and the shell may dead-letter the input.
    """
    rec = event.record
    event_type = rec["event_type"]
    handler = _HANDLERS.get(event_type)
    if handler is None:
        raise ValueError(f"the fold cannot apply a {event_type!r} event (topic {event.topic})")
    tenant, event_id, data = rec["tenant_id"], rec["event_id"], rec["data"]
    staged = _Staged(state)
    ctx = _Ctx(staged, event, config, tenant, event_id, event_type, _millis(rec["timestamp"]),
               fingerprint(event_type, tenant, data), data)
    seen_key = f"{tenant}:{event_id}"
    stored = state.get("seen", seen_key)
    if stored is not None:
        if stored != ctx.fp:
            _CONFLICTS[event_type](ctx, f"event_id {event_id} was used before with different content")
        elif config.rewrite_duplicates:
            _rewrite(ctx, seen_key)
            staged.flush()
        return ctx.out  # a duplicate: applied before, its outputs already sent
    handler(ctx)
    staged.put("seen", seen_key, ctx.fp)
    staged.flush()
    return ctx.out


def serial_fold(inputs: Iterable[Input],
                config: FoldConfig = FoldConfig()) -> tuple[DictState, list[Emit | DeadLetter]]:
    """The reference: every input folded in order over an empty state."""
    state = DictState()
    outputs: list[Emit | DeadLetter] = []
    for event in inputs:
        outputs.extend(fold(state, event, config))
    return state, outputs


# -- inventory and catalog ----------------------------------------------------------------------
def _inventory(ctx: _Ctx) -> None:
    data = ctx.data
    before = ctx.stock(data["sku"])
    location, reason = data.get("location_id"), data.get("reason")
    if data.get("new_quantity") is not None:
        result = apply_absolute(before, data["new_quantity"], ctx.ts, ctx.event_id, location,
                                reason or REASON_COUNT)
    else:
        result = apply_delta(before, data["quantity_change"], ctx.ts, ctx.event_id, location,
                             reason=reason or REASON_ADJUSTMENT)
    ctx.store_stock(before, result)


def _catalog(ctx: _Ctx) -> None:
    data = ctx.data
    for variant in data["variants"]:
        sku = variant["sku"]
        key = f"{ctx.tenant}:{sku}"
        current = ctx.state.get("catalog", key)
        if current is None or current["updated_at"] <= ctx.ts:  # an older update arriving late does not win
            entry = CatalogEntry.from_variant(ctx.tenant, data, variant, ctx.ts, ctx.event_id)
            ctx.state.put("catalog", key, entry.to_dict())
        qty = variant.get("stock_quantity")
        if qty is not None:
            before = ctx.stock(sku)
            ctx.store_stock(before, apply_absolute(before, qty, ctx.ts, ctx.event_id, None, REASON_CATALOG))


def _conflict_letter(ctx: _Ctx, why: str) -> None:
    ctx.dead_letter(f"IDEMPOTENCY_CONFLICT: {why}; refused", "idempotency")


# -- customers and payments ---------------------------------------------------------------------
def _customer(ctx: _Ctx) -> None:
    data = ctx.data
    raw = ctx.state.get("credit", f"{ctx.tenant}:{data['customer_ref']}")
    before = CreditState(ctx.tenant, data["customer_ref"]) if raw is None else CreditState.from_dict(raw)
    update = set_terms(before, Decimal(data["credit_limit"]), data["on_hold"])
    if raw is None or update.changed:
        ctx.store_credit(update.state)


def _payment_outcome(ctx: _Ctx, outcome: str, reasons: tuple[Reason, ...] = (), documents: tuple[str, ...] = (),
                     total: Decimal | None = None, currency: str | None = None) -> None:
    data = ctx.data
    record = Outcome(ctx.tenant, PAYMENT, data["payment_id"], ctx.event_id, outcome, ctx.ts,
                     customer_ref=data["customer_ref"], reasons=reasons, document_ids=documents, total=total,
                     currency=currency)
    ctx.emit("sales.outcomes", f"{ctx.tenant}:{data['customer_ref']}", record.datum())


def _payment_conflict(ctx: _Ctx, why: str) -> None:
    _payment_outcome(ctx, IDEMPOTENCY_CONFLICT, (Reason(IDEMPOTENCY_CONFLICT, why),))


def _payment(ctx: _Ctx) -> None:
    received = PaymentReceived.from_event(ctx.data)
    pkey = f"{ctx.tenant}:{received.payment_id}"
    done = ctx.state.get("payments", pkey)
    if done is not None:
        if done["fingerprint"] != ctx.fp:
            _payment_conflict(ctx, f"payment {received.payment_id} was received before with other content")
        return
    credit = ctx.credit(received.customer_ref)
    result = apply_payment(credit, received.payment_id, received.amount, received.invoice_id, received.currency)
    if result.status == APPLIED:
        booking = book_payment(ctx.tenant, received, result.allocations, ctx.ts)
        pay, entry = booking.payment, booking.journal
        ctx.store_credit(result.state)
        ctx.emit("ledger.payments", f"{ctx.tenant}:{pay.payment_id}", datum(pay))
        ctx.emit("ledger.journal", f"{ctx.tenant}:{entry.entry_id}", datum(entry))
        _payment_outcome(ctx, ACCEPTED, documents=(pay.payment_id, entry.entry_id), total=received.amount,
                         currency=received.currency)
    else:
        _payment_outcome(ctx, REFUSED, (Reason(result.code or REFUSED, result.reason or ""),), total=received.amount,
                         currency=received.currency)
    record = PaymentRecord(ctx.tenant, received.payment_id, received.customer_ref, ctx.event_id, ctx.fp,
                           result.status)
    ctx.state.put("payments", pkey, record.to_dict())


# -- sales --------------------------------------------------------------------------------------
def _sale_conflict(ctx: _Ctx, why: str) -> None:
    data = ctx.data
    outcome = Outcome(ctx.tenant, SALE, data["sale_id"], ctx.event_id, IDEMPOTENCY_CONFLICT, ctx.ts,
                      sale_id=data["sale_id"], customer_ref=data.get("customer_ref"),
                      reasons=(Reason(IDEMPOTENCY_CONFLICT, why),))
    ctx.emit("sales.outcomes", f"{ctx.tenant}:{data['sale_id']}", outcome.datum())


def _sale(ctx: _Ctx) -> None:
    tenant, data = ctx.tenant, ctx.data
    key = f"{tenant}:{data['sale_id']}"
    existing = ctx.state.get("sales", key)
    if existing is not None:
        if existing["event_id"] != ctx.event_id:
            _sale_conflict(ctx, f"sale {data['sale_id']} was already received as event {existing['event_id']}")
        elif existing["fingerprint"] != ctx.fp:
            _sale_conflict(ctx, f"event_id {ctx.event_id} was used before with different content")
        return
    sale = Sale.from_event(tenant, data)
    kind = POS if ctx.event_type == "sale.completed" else ORDER
    record = SaleRecord(tenant, sale.sale_id, ctx.event_id, ctx.fp, kind, REFUSED, sale.currency, ctx.ts,
                        sale.payment_terms, sale.customer_ref, sale.location_id)
    wanted: dict[str, int] = {}
    for line in sale.lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    catalog = {sku: catalog_of(ctx.state, tenant, sku) for sku in wanted}
    stock = {sku: ctx.stock(sku) for sku in wanted}

    def refuse(reasons: tuple[Reason, ...], credit: CreditFigures | None = None) -> None:
        outcome = Outcome(tenant, SALE, sale.sale_id, ctx.event_id, REFUSED, ctx.ts, sale_id=sale.sale_id,
                          customer_ref=sale.customer_ref, reasons=reasons, credit=credit, currency=sale.currency)
        ctx.state.put("sales", key, dataclasses.replace(record, outcome=outcome).to_dict())
        ctx.emit("sales.outcomes", key, outcome.datum())

    def fail(code: str, reason: str) -> None:
        error = f"{code}: {reason}"
        ctx.state.put("sales", key, dataclasses.replace(record, status=FAILED, error=error).to_dict())
        ctx.dead_letter(error, "rule")

    if kind == ORDER:
        answers = {}
        for sku in wanted:
            entry = catalog[sku]
            answers[sku] = StockAnswer(sku, entry is not None, entry is not None and entry.is_active,
                                       stock[sku].available)
        refusals = check_lines(sale.lines, answers)
        if refusals:
            refuse(tuple(Reason(r.code, r.message, r.sku, r.requested, r.available) for r in refusals))
            return

    def lookup(sku: str) -> CatalogItem | None:
        entry = catalog.get(sku)
        return None if entry is None else entry.item()

    priced = price_lines(sale.lines, sale.currency, lookup, ctx.config.default_tax_percent)
    if isinstance(priced, PricingError):
        fail(priced.code, priced.reason)
        return
    figures = None
    if kind == ORDER and sale.payment_terms == ON_ACCOUNT:
        check = check_order(ctx.credit(sale.customer_ref or ""), priced.total)
        figures = CreditFigures.of(check)
        if not check.approved:
            refuse((Reason(check.reason or "CREDIT_REFUSED", check.message),), figures)
            return
    booking = book_sale(sale, priced, ctx.ts)
    if isinstance(booking, LedgerError):
        fail(booking.code, booking.reason)
        return
    inv, entry = booking.invoice, booking.journal
    ctx.emit("ledger.invoices", f"{tenant}:{inv.invoice_id}", datum(inv))
    for pay in booking.payments:
        ctx.emit("ledger.payments", f"{tenant}:{pay.payment_id}", datum(pay))
    ctx.emit("ledger.journal", f"{tenant}:{entry.entry_id}", datum(entry))
    ctx.emit("ledger.external_refs", f"{tenant}:sale:{sale.sale_id}",
             {"tenant_id": tenant, "kind": "sale", "external_id": sale.sale_id, "internal_id": inv.invoice_id})
    reason = REASON_SALE if kind == POS else REASON_ORDER
    for sku, qty in wanted.items():
        before = stock[sku]
        ctx.store_stock(before, apply_delta(before, -qty, ctx.ts, ctx.event_id, sale.location_id, SALE_DELTA,
                                            reason))
    if sale.payment_terms == ON_ACCOUNT:
        credit = ctx.credit(sale.customer_ref or "")
        update = add_invoice(credit, inv.invoice_id, inv.issued_at, inv.currency, inv.total)
        ctx.store_credit(update.state)
    documents = (inv.invoice_id, *(p.payment_id for p in booking.payments), entry.entry_id)
    outcome = Outcome(tenant, SALE, sale.sale_id, ctx.event_id, ACCEPTED, ctx.ts, sale_id=sale.sale_id,
                      customer_ref=sale.customer_ref, credit=figures, document_ids=documents, total=inv.total,
                      currency=sale.currency)
    ctx.state.put("sales", key, dataclasses.replace(record, status=ACCEPTED, outcome=outcome,
                                                    document_ids=documents, invoice=inv).to_dict())
    ctx.emit("sales.outcomes", key, outcome.datum())


# -- refunds ------------------------------------------------------------------------------------
def _refund_outcome(ctx: _Ctx, record: SaleRecord | None, outcome: str, reasons: tuple[Reason, ...] = (),
                    documents: tuple[str, ...] = (), total: Decimal | None = None,
                    currency: str | None = None) -> Outcome:
    data = ctx.data
    result = Outcome(ctx.tenant, REFUND, data["refund_id"], ctx.event_id, outcome, ctx.ts, sale_id=data["sale_id"],
                     customer_ref=None if record is None else record.customer_ref, reasons=reasons,
                     document_ids=documents, total=total, currency=currency)
    ctx.emit("sales.outcomes", f"{ctx.tenant}:{data['sale_id']}", result.datum())
    return result


def _refund_conflict(ctx: _Ctx, why: str) -> None:
    record = sale_of(ctx.state, ctx.tenant, ctx.data["sale_id"])
    _refund_outcome(ctx, record, IDEMPOTENCY_CONFLICT, (Reason(IDEMPOTENCY_CONFLICT, why),))


def _refund(ctx: _Ctx) -> None:
    tenant = ctx.tenant
    request = RefundRequest.from_event(ctx.data)
    key = f"{tenant}:{request.sale_id}"
    record = sale_of(ctx.state, tenant, request.sale_id)
    if record is not None:
        done = record.refund_result(request.refund_id)
        if done is not None:
            if done.fingerprint != ctx.fp:
                _refund_outcome(ctx, record, IDEMPOTENCY_CONFLICT, (Reason(
                    IDEMPOTENCY_CONFLICT, f"refund {request.refund_id} was received before with other content"),))
            return

    def remember(outcome: Outcome, refunds: RefundState) -> None:
        assert record is not None
        result = RefundResult(request.refund_id, ctx.event_id, ctx.fp, outcome)
        ctx.state.put("sales", key, dataclasses.replace(
            record, refunds=refunds, refund_results=record.refund_results + (result,)).to_dict())

    if record is None or record.status != ACCEPTED or record.invoice is None:
        why = "unknown" if record is None else ("refused" if record.status == REFUSED else "not booked (failed)")
        outcome = _refund_outcome(ctx, record, REFUSED, (Reason(
            UNKNOWN_SALE, f"sale {request.sale_id} is {why}; nothing to refund"),))
        if record is not None:
            remember(outcome, record.refunds)
        return
    invoice = record.invoice
    booking = book_refund(invoice, record.refunds, request, ctx.ts)
    if isinstance(booking, RefundError):
        reasons = tuple(Reason(booking.code, r.message, r.sku, r.requested, r.refundable) for r in booking.lines) \
            or (Reason(booking.code, booking.reason),)
        remember(_refund_outcome(ctx, record, REFUSED, reasons, currency=invoice.currency), record.refunds)
        return
    note, entry = booking.credit_note, booking.journal
    ctx.emit("ledger.credit_notes", f"{tenant}:{note.credit_note_id}", datum(note))
    ctx.emit("ledger.journal", f"{tenant}:{entry.entry_id}", datum(entry))
    ctx.emit("ledger.external_refs", f"{tenant}:refund:{request.refund_id}",
             {"tenant_id": tenant, "kind": "refund", "external_id": request.refund_id,
              "internal_id": note.credit_note_id})
    for sku, qty in booking.restock:
        before = ctx.stock(sku)
        ctx.store_stock(before, apply_delta(before, qty, ctx.ts, ctx.event_id, record.location_id, RESTOCK,
                                            REASON_RETURN))
    if request.refund_method == "CREDIT" and invoice.payment_terms == ON_ACCOUNT and invoice.customer_ref:
        credit = ctx.credit(invoice.customer_ref)
        update = apply_credit_refund(credit, request.refund_id, invoice.invoice_id, note.total)
        if update.state is not credit:
            ctx.store_credit(update.state)
    outcome = _refund_outcome(ctx, record, ACCEPTED, documents=(note.credit_note_id, entry.entry_id),
                              total=note.total, currency=note.currency)
    remember(outcome, booking.state)


def _touched(ctx: _Ctx) -> list[tuple[str, str]]:
    """The (table, key) pairs an event's first application may have written."""
    tenant, data, et = ctx.tenant, ctx.data, ctx.event_type
    if et == "inventory.change":
        return [("stock", f"{tenant}:{data['sku']}")]
    if et == "catalog.update":
        return [(t, f"{tenant}:{v['sku']}") for v in data["variants"] for t in ("catalog", "stock")]
    if et == "customer.credit":
        return [("credit", f"{tenant}:{data['customer_ref']}")]
    if et == "payment.received":
        return [("credit", f"{tenant}:{data['customer_ref']}"), ("payments", f"{tenant}:{data['payment_id']}")]
    if et == "refund.issued":
        keys = [("sales", f"{tenant}:{data['sale_id']}")]
        keys += [("stock", f"{tenant}:{line['sku']}") for line in data["lines"]]
        record = ctx.state.get("sales", f"{tenant}:{data['sale_id']}")
        if record is not None and record.get("customer_ref"):
            keys.append(("credit", f"{tenant}:{record['customer_ref']}"))
        return keys
    keys = [("sales", f"{tenant}:{data['sale_id']}")]
    keys += [("stock", f"{tenant}:{line['sku']}") for line in data["line_items"]]
    if data.get("customer_ref"):
        keys.append(("credit", f"{tenant}:{data['customer_ref']}"))
    return keys


def _rewrite(ctx: _Ctx, seen_key: str) -> None:
    """Write again, unchanged, what a duplicate's first application wrote (see FoldConfig)."""
    done: set[tuple[str, str]] = set()
    for table, key in _touched(ctx):
        if (table, key) in done:
            continue
        done.add((table, key))
        value = ctx.state.get(table, key)
        if value is not None:
            ctx.state.put(table, key, value)
    ctx.state.put("seen", seen_key, ctx.fp)


_HANDLERS: dict[str, Callable[[_Ctx], None]] = {
    "inventory.change": _inventory,
    "catalog.update": _catalog,
    "customer.credit": _customer,
    "payment.received": _payment,
    "sale.completed": _sale,
    "order.placed": _sale,
    "refund.issued": _refund,
}

# What admission checks before an event may enter the tenant log: event_type -> readable reasons (empty = valid).
VALIDATORS: Mapping[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "inventory.change": validate_inventory_change,
    "catalog.update": validate_catalog_update,
    "customer.credit": validate_customer_credit,
    "payment.received": validate_payment,
    "sale.completed": validate_sale,
    "order.placed": validate_sale,
    "refund.issued": validate_refund,
}

_CONFLICTS: dict[str, Callable[[_Ctx, str], None]] = {
    "inventory.change": _conflict_letter,
    "catalog.update": _conflict_letter,
    "customer.credit": _conflict_letter,
    "payment.received": _payment_conflict,
    "sale.completed": _sale_conflict,
    "order.placed": _sale_conflict,
    "refund.issued": _refund_conflict,
}

__all__ = __all__ + [n for n in _CREDIT_ALL if n not in __all__]
