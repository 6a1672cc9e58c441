"""The fold: one admitted event applied to its tenant's state, in tenant-log order.

Every event of a tenant reaches one fold, in one order, and this function decides it
synchronously against the tenant's current state: stock by SKU, the catalog, credit by
customer, sales by sale_id, payments by payment_id and the event ids seen. It returns the
outputs in the order they must leave; the shell writes the state and sends the outputs
(flushing them before it commits its input offsets). `serial_fold` is the reference: the
worker and the reference are the same function.

Rules (SPEC 2, "Effectively exactly once"):
- An event_id seen again with the same fingerprint (business content) changes nothing and
  emits nothing: its outputs were sent when it was first applied. With other content it is
  refused: a sales.outcomes IDEMPOTENCY_CONFLICT for sales, refunds and payments, a dead
  letter (stage "idempotency") for inventory, catalog and customer events. A refund_id (on
  its sale) or a payment_id received again under another event_id is a duplicate when its
  content is the same, else a conflict; a sale_id under another event_id is always a
  conflict (as before). A duplicate writes again, unchanged, the keys its event wrote
  (FoldConfig.rewrite_duplicates), so a redelivery heals a changelog that lagged the store.
- An order is all or nothing by one decision: lines (unknown, inactive, short of
  available stock), then pricing, then the customer's credit for ON_ACCOUNT. Nothing is
  held: an accepted order is deducted, booked and added to credit at once.
- A sale's outcome is its last output, after every document, level and alert, so a client
  that acts on the outcome (a payment naming the invoice, a refund) meets its effects.
- An accepted order.shipped (SPEC 8) emits its delivery note on ledger.shipments (`SHIP-<shipment_id>`: the
  order, its invoice, location, the event's timestamp, the quantity per SKU) before its outcome.
- A sale that breaks a rule found only here (NO_PRICE, PAYMENT_MISMATCH) is dead-lettered
  and nothing of it is applied; its sale record (status FAILED) is kept so a redelivery
  is recognised and a later sale under that sale_id is a conflict.
- Documents are unique within a tenant (SPEC 2, added 2026-12-04): an event whose document id
  already belongs to another business action is refused (REFUSED, DUPLICATE_DOCUMENT_ID) and
  changes nothing: a sale_id received again under another event id, a refund_id already used on
  another sale (CN-<refund_id>), a payment_id whose PAY-<payment_id> is already a document (a PAID
  sale's PAY-<sale_id>-<n> or another payment), a PAID sale whose payment ids are taken. Accepted
  payment and credit note ids are claimed in `documents`, one key per document id.
- A CREDIT refund gives the sale's customer credit whatever the sale's terms (a PAID sale's: store
  credit, credit.py); without a customer it is refused (NO_CUSTOMER). A document of total zero is
  booked without a journal entry (an entry has at least two lines).
- Atomic: an event's writes reach the state together, each changed key once, only when
  the event is decided (`decide` returns them, `Decision.apply` writes them); an exception
  leaves the state untouched, and `fold_guarded` (the worker's and `serial_fold`'s step)
  dead-letters that event alone as INTERNAL_ERROR.
- Bounded (SPEC 2, "Bounds", stockledger/bounds.py): an event that would take a SKU's on_hand
  beyond +-10^12 or an amount it writes or sends beyond decimal(18,4) is dead-lettered
  (QUANTITY_OUT_OF_RANGE / AMOUNT_OUT_OF_RANGE) and nothing of it is applied.
- Deterministic: no wall clock (`decided_at` is the event's timestamp), no randomness; the
  same inputs in the same order give the same state and outputs.

State values are JSON-plain (Decimal as text). Tables and keys:
stock / catalog `<tenant>:<sku>` (stock: the SKU's head value), stock_chunks `<tenant>:<sku>#<n>` (the
SKU's closed chunks of deltas, stock.py), credit `<tenant>:<customer_ref>` (constant-size), invoices
`<tenant>:<invoice_id>` (each ON_ACCOUNT invoice, chained per customer; and a customer's CREDIT refund
marks, see credit.py), sales `<tenant>:<sale_id>`, payments `<tenant>:<payment_id>`, seen
`<tenant>:<event_id>` -> the event's fingerprint, expiry (the queue that forgets event ids after the
dedup horizon, see `_remember`), documents `<tenant>:<document id>` (PAY-..., CN-...) -> the business
action that owns it, prices `<tenant>:<price_list_id>` -> the list's newest version
(pricelists.py; one bounded value per list), payment_failures `<tenant>:<sale_id>` -> the sale's last
payment.failed (treasury.py), refs `<tenant>:<kind>:<external id>` -> 1 for each customer (kind customer)
and SKU (kind item) a booked document named (seed 000: `ledger.external_refs` gets each the first time),
settings `<tenant>` -> the tenant's settings (settings.py, SPEC 8), groups `<tenant>:<product_group_id>` ->
the group's newest version (catalog.py, issue 20: one bounded value per group; each new version goes out on
`catalog.groups`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from stockledger.bounds import outcome_bounds  # the SPEC's bounds: pure, in the contract package

from .catalog import CatalogEntry, ProductGroup, validate_catalog_update
from .credit import (
    APPLIED,
    CREDIT_HOLD,
    CREDIT_LIMIT_EXCEEDED,
    CreditState,
    PaymentReceived,
    RefundMark,
    add_invoice,
    apply_credit_refund,
    apply_payment,
    check_order,
    due_at_for,
    invoice_key,
    linked_ids,
    open_invoices_of,
    refund_mark_key,
    set_terms,
    validate_customer_credit,
    validate_payment,
)
from .documents import DocumentLine, Invoice, credit_note_id_for, invoice_id_for, payment_id_for
from .idempotency import fingerprint
from .journal import DEFAULT_ACCOUNTS, Accounts
from .ledger import LedgerError, book_payment, book_sale
from .lifecycle import (
    CANCELLATION,
    HELD,
    LIFECYCLE_EVENTS,
    NOT_HELD,
    REASON_CANCELLATION,
    REASON_RELEASE,
    REASON_RESERVATION,
    REASON_SHIPMENT,
    RELEASE,
    SHIPMENT,
    OrderState,
    Refusal,
    cancellation,
    reserve,
    shipment,
    unshipped_refund,
    validate_order_cancelled,
    validate_order_released,
    validate_order_shipped,
)
from .orders import StockAnswer, check_lines
from .outcomes import ACCEPTED, IDEMPOTENCY_CONFLICT, PAYMENT, REFUND, REFUSED, SALE, CreditFigures, Outcome, Reason
from .pricelists import (
    DISCOUNT_NOT_ALLOWED,
    ListPrice,
    PriceList,
    discount_breaches,
    price_list_key,
    validate_price_list,
)
from .pricing import CatalogItem, PricingError, price_lines
from .refunds import (
    UNKNOWN_SALE,
    LineRefunded,
    RefundError,
    RefundLine,
    RefundRequest,
    RefundState,
    book_refund,
    validate_refund,
)
from .sales import ON_ACCOUNT, PAID, Sale, validate_sale
from .serde import Plain, evolve, to_plain
from .serde import to_datum as datum
from .settings import TenantSettings, settings_key, validate_tenant_configured
from .stock import (
    REASON_ADJUSTMENT,
    REASON_CATALOG,
    REASON_COUNT,
    REASON_ORDER,
    REASON_RETURN,
    REASON_SALE,
    RESTOCK,
    STOCK_CHUNK,
    Chunking,
    StockResult,
    StockState,
    apply_absolute,
    apply_delta,
    validate_inventory_change,
)
from .stock import SALE as SALE_DELTA
from .tables import State
from .treasury import (
    MAX_REASON,
    PAYMENT_FAILED,
    PaymentFailure,
    failures_key,
    record_failure,
    sale_id_of_invoice,
    validate_payment_failed,
)

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
    "INTERNAL_ERROR",
    "Decision",
    "decide",
    "fold",
    "fold_guarded",
    "internal_error",
    "serial_fold",
    "stock_of",
    "catalog_of",
    "group_of",
    "credit_of",
    "open_invoices_of",
    "sale_of",
    "payment_of",
    "price_list_of",
    "payment_failures_of",
    "seen_of",
    "datum",
    "document_of",
    "DUPLICATE_DOCUMENT_ID",
    "VALIDATORS",
]

TABLES = ("stock", "stock_chunks", "catalog", "credit", "invoices", "sales", "payments", "seen", "documents",
          "expiry", "prices", "payment_failures", "refs", "settings", "groups")
DUPLICATE_DOCUMENT_ID = "DUPLICATE_DOCUMENT_ID"
REF_CUSTOMER, REF_ITEM = "customer", "item"  # ledger.external_refs kinds of seed 000 (SPEC 9)

DAY_MS = 86_400_000
EXPIRY_CHUNK = 64  # event ids per `expiry` queue value
EXPIRY_SWEEP = 4  # at most this many event ids forgotten per applied event (> 1: the queue drains)

POS, ORDER = "POS", "ORDER"  # SaleRecord.kind: sale.completed / order.placed
INTERNAL_ERROR = "INTERNAL_ERROR"  # the dead-letter code of an event that made our own code fail
FAILED = "FAILED"  # SaleRecord.status of a dead-lettered sale (ACCEPTED and REFUSED as in the outcome)
INVALID_PAYMENT = "INVALID_PAYMENT"  # a sale's payments finer than its (tenant default) currency allows

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
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


@dataclass(frozen=True, slots=True)
class FoldConfig:
    """The process configuration of the fold (stockledger.config.Settings via streams/fold.py `fold_config`).

    A tenant's settings (SPEC 8, settings.py) override the tax, discount, horizon and chart fields for
    that tenant's events: `decide` folds each event with `tenant_config(config, settings)`, where the
    settings are those in the tenant's state as of the event, so a replay decides the same; these
    values are only the fallback of a tenant that has not set them."""

    default_tax_percent: Decimal = Decimal(0)
    # A duplicate writes the current value of every key its event touches again (same value), so a
    # store whose last writes never reached its changelog (a SIGKILL) is healed by the redelivery.
    rewrite_duplicates: bool = True
    # SPEC 2 "Cost does not grow with history" (the tenant's late_count_horizon_days, else Settings):
    # a SKU keeps its deltas this long behind its newest event, then folds them into its base (ms) ...
    late_count_horizon_ms: int | None = 7 * DAY_MS
    # ... and an event id is remembered until the tenant's newest event is this much newer (ms).
    dedup_horizon_ms: int | None = 35 * DAY_MS
    # SPEC 9: a line's discount_percent above it: an order is refused (DISCOUNT_NOT_ALLOWED), a POS sale is
    # booked with a warning on its outcome. None: no limit. (The tenant's max_discount_percent, else
    # Settings.max_discount_percent.)
    max_discount_percent: Decimal | None = None
    # A SKU's head keeps fewer than this many deltas; a full tail is closed into its own `stock_chunks` value
    # (stock.py), so every stored value and every sale's writes are bounded. None: the head keeps them all.
    stock_chunk: int | None = STOCK_CHUNK
    # The chart every journal entry is posted with (the tenant's `accounts` overrides, else SPEC's chart).
    accounts: Accounts = DEFAULT_ACCOUNTS


def tenant_config(config: FoldConfig, settings: TenantSettings) -> FoldConfig:
    """`config` with what the tenant has set (SPEC 8): tax, maximum discount, horizons (days), chart."""
    changes: dict[str, Any] = {}
    if settings.default_tax_percent is not None:
        changes["default_tax_percent"] = settings.default_tax_percent
    if settings.max_discount_percent is not None:
        changes["max_discount_percent"] = settings.max_discount_percent
    if settings.late_count_horizon_days is not None:
        changes["late_count_horizon_ms"] = settings.late_count_horizon_days * DAY_MS
    if settings.dedup_horizon_days is not None:
        changes["dedup_horizon_ms"] = settings.dedup_horizon_days * DAY_MS
    if settings.accounts:
        changes["accounts"] = settings.chart()
    return evolve(config, **changes) if changes else config


_CONFIGS: dict[tuple[int, tuple], tuple[FoldConfig, FoldConfig]] = {}  # memo of _configured: bounded, pure
_CONFIGS_MAX = 1024


def _configured(config: FoldConfig, stored: Mapping[str, Any]) -> FoldConfig:
    """tenant_config of a tenant's stored settings, remembered by their value (each event of a configured
    tenant needs it: ~2 us instead of ~60 us of parsing and replacing)."""
    value = tuple((k, tuple(sorted(v.items())) if isinstance(v, Mapping) else v) for k, v in stored.items())
    key = (id(config), value)
    hit = _CONFIGS.get(key)
    if hit is not None and hit[0] is config:
        return hit[1]
    if len(_CONFIGS) >= _CONFIGS_MAX:
        _CONFIGS.clear()
    got = tenant_config(config, TenantSettings.from_dict(stored))
    _CONFIGS[key] = (config, got)
    return got


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
        if value is None:  # a deletion
            self.tables[table].pop(key, None)
        else:
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
    order: OrderState | None = None  # an accepted order's lines and state (SPEC 8, lifecycle.py)

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
            "order": None if self.order is None else self.order.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SaleRecord:
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
            None if data.get("order") is None else OrderState.from_dict(data["order"]),
        )


def _line_plain(li: DocumentLine) -> dict[str, Any]:
    plain = {"line_no": li.line_no, "sku": li.sku, "quantity": li.quantity,
             "unit_price": format(li.unit_price, "f"), "discount_percent": format(li.discount_percent, "f"),
             "tax_percent": format(li.tax_percent, "f"), "net": format(li.net, "f"),
             "tax": format(li.tax, "f"), "total": format(li.total, "f"),
             "price_source": li.price_source, "price_list_id": li.price_list_id}  # SPEC 9; absent in older states
    return plain


def _invoice_plain(inv: Invoice) -> dict[str, Any]:
    return {
        "tenant_id": inv.tenant_id, "invoice_id": inv.invoice_id, "sale_id": inv.sale_id,
        "customer_ref": inv.customer_ref, "channel": inv.channel, "currency": inv.currency,
        "payment_terms": inv.payment_terms, "issued_at": inv.issued_at,
        "lines": [_line_plain(li) for li in inv.lines],
        "net_total": format(inv.net_total, "f"), "tax_total": format(inv.tax_total, "f"),
        "total": format(inv.total, "f"), "due_date": inv.due_date,
    }


def _invoice_from(data: Mapping[str, Any]) -> Invoice:
    return Invoice(
        data["tenant_id"], data["invoice_id"], data["sale_id"], data.get("customer_ref"), data["channel"],
        data["currency"], data["payment_terms"], data["issued_at"],
        tuple(DocumentLine(li["line_no"], li["sku"], li["quantity"], Decimal(li["unit_price"]),
                           Decimal(li["discount_percent"]), Decimal(li["tax_percent"]), Decimal(li["net"]),
                           Decimal(li["tax"]), Decimal(li["total"]), li.get("price_source"),
                           li.get("price_list_id")) for li in data["lines"]),
        Decimal(data["net_total"]), Decimal(data["tax_total"]), Decimal(data["total"]), data.get("due_date"),
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
    invoice_ids: tuple[str, ...] = ()  # the invoice keys it wrote (APPLIED), for a duplicate's rewrite

    def to_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "payment_id": self.payment_id, "customer_ref": self.customer_ref,
                "event_id": self.event_id, "fingerprint": self.fingerprint, "status": self.status,
                "invoice_ids": list(self.invoice_ids)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PaymentRecord:
        return cls(data["tenant_id"], data["payment_id"], data["customer_ref"], data["event_id"],
                   data["fingerprint"], data["status"], tuple(data.get("invoice_ids", ())))


# -- typed readers ------------------------------------------------------------------------------
def stock_of(state: State, tenant: str, sku: str) -> StockState | None:
    raw = state.get("stock", f"{tenant}:{sku}")
    return None if raw is None else StockState.from_dict(raw)


def catalog_of(state: State, tenant: str, sku: str) -> CatalogEntry | None:
    raw = state.get("catalog", f"{tenant}:{sku}")
    return None if raw is None else CatalogEntry.from_dict(raw)


def group_of(state: State, tenant: str, product_group_id: str) -> ProductGroup | None:
    raw = state.get("groups", f"{tenant}:{product_group_id}")
    return None if raw is None else ProductGroup.from_dict(raw)


def credit_of(state: State, tenant: str, customer_ref: str) -> CreditState | None:
    raw = state.get("credit", f"{tenant}:{customer_ref}")
    return None if raw is None else CreditState.from_dict(raw)


def sale_of(state: State, tenant: str, sale_id: str) -> SaleRecord | None:
    raw = state.get("sales", f"{tenant}:{sale_id}")
    return None if raw is None else SaleRecord.from_dict(raw)


def payment_of(state: State, tenant: str, payment_id: str) -> PaymentRecord | None:
    raw = state.get("payments", f"{tenant}:{payment_id}")
    return None if raw is None else PaymentRecord.from_dict(raw)


def document_of(state: State, tenant: str, document_id: str) -> dict | None:
    """Who owns a document id of the tenant: {"kind": sale|refund|payment, "id", "sale_id", "event_id"}."""
    return state.get("documents", f"{tenant}:{document_id}")


def seen_of(state: State, tenant: str, event_id: str) -> str | None:
    """The fingerprint of the event applied under `event_id`, if any."""
    return state.get("seen", f"{tenant}:{event_id}")


# -- output datums: serde.to_datum (imported here as `datum`) ---------------------------------------


def _millis(value: datetime | int) -> int:
    if isinstance(value, int):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
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
        for n, chunk in result.chunks:
            self.state.put("stock_chunks", f"{key}#{n}", chunk)
        if result.changed:
            self.out.append(Emit("stock.levels", key, new.level()))
        for alert in result.alerts:
            self.out.append(Emit("inventory.alerts", key, datum(alert)))

    def stock(self, sku: str) -> StockState:
        raw = self.state.get("stock", f"{self.tenant}:{sku}")
        return StockState(self.tenant, sku) if raw is None else StockState.from_dict(raw)

    def chunking(self, sku: str) -> Chunking | None:
        """How the SKU's closed chunks of deltas are read (stock.py), None when the head keeps every delta."""
        size = self.config.stock_chunk
        if size is None:
            return None
        get, prefix = self.state.get, f"{self.tenant}:{sku}#"
        return Chunking(size, lambda n: get("stock_chunks", f"{prefix}{n}"))

    def settings(self) -> TenantSettings:
        """The tenant's settings as of this event (SPEC 8; the defaults until a tenant.configured)."""
        return TenantSettings.from_dict(self.state.get("settings", settings_key(self.tenant)))

    def credit(self, customer_ref: str) -> CreditState:
        return credit_of(self.state, self.tenant, customer_ref) or CreditState(self.tenant, customer_ref)

    def store_credit(self, credit: CreditState) -> None:
        self.state.put("credit", f"{self.tenant}:{credit.customer_ref}", credit.to_dict())

    def owner(self, document_id: str) -> dict | None:
        return self.state.get("documents", f"{self.tenant}:{document_id}")

    def claim(self, document_id: str, kind: str, natural_id: str, sale_id: str | None = None) -> None:
        self.state.put("documents", f"{self.tenant}:{document_id}",
                       {"kind": kind, "id": natural_id, "sale_id": sale_id, "event_id": self.event_id})

    def refer(self, kind: str, external_id: str | None) -> None:
        """Seed 000: the first time a booked document names a customer or SKU, ledger.external_refs records
        it (the internal id is the same key: stockledger keeps customers and items under their refs)."""
        if not external_id:
            return
        key = f"{self.tenant}:{kind}:{external_id}"
        if self.state.get("refs", key) is not None:
            return
        self.state.put("refs", key, 1)
        self.emit("ledger.external_refs", key, {"tenant_id": self.tenant, "kind": kind, "external_id": external_id,
                                                 "internal_id": external_id})

    def journal(self, entry: Any) -> tuple[str, ...]:
        """Emit a document's journal entry unless it has no lines (a document of total zero): its ids."""
        if not entry.lines:
            return ()
        self.emit("ledger.journal", f"{self.tenant}:{entry.entry_id}", datum(entry))
        return (entry.entry_id,)


def _owned_by(owner: dict) -> str:
    what = f"{owner['kind']} {owner['id']}"
    if owner["kind"] == "refund" and owner.get("sale_id"):
        what += f" of sale {owner['sale_id']}"
    return f"{what} (event {owner['event_id']})"


@dataclass(frozen=True, slots=True)
class Decision:
    """One event decided and not yet applied: its outputs in order, and its writes (each changed key once)."""

    out: list[Emit | DeadLetter]
    writes: Mapping[tuple[str, str], Any]

    def apply(self, state: State) -> None:
        put = state.put
        for (table, key), value in self.writes.items():
            put(table, key, value)


def decide(state: State, event: Input, config: FoldConfig) -> Decision:
    """Decide one event against the tenant's state (reads only): its outputs and its writes.

    An event that would take a SKU's on_hand beyond +-10^12, or a document or balance beyond
    decimal(18,4) (SPEC 2, "Bounds"), is refused whole: a dead letter QUANTITY_OUT_OF_RANGE /
    AMOUNT_OUT_OF_RANGE and no writes. Raises only on a defect of ours (never on data).
    """
    rec = event.record
    event_type = rec["event_type"]
    handler = _HANDLERS.get(event_type)
    if handler is None:
        raise ValueError(f"the fold cannot apply a {event_type!r} event (topic {event.topic})")
    tenant, event_id, data = rec["tenant_id"], rec["event_id"], rec["data"]
    configured = state.get("settings", settings_key(tenant))
    if configured is not None:  # SPEC 8: what the tenant set, as of this event, wins over the process's
        config = _configured(config, configured)
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
        return Decision(ctx.out, staged.writes)  # a duplicate: applied before, its outputs already sent
    handler(ctx)
    beyond = outcome_bounds(staged.writes, ctx.out)
    if beyond is not None:  # nothing of it is applied, nothing of it is sent
        return Decision([DeadLetter(event, f"{beyond.code}: {beyond.field}: {beyond.message}; refused", "rule")],
                        {})
    staged.put("seen", seen_key, ctx.fp)
    if config.dedup_horizon_ms is not None:
        _remember(staged, tenant, event_id, ctx.ts, config.dedup_horizon_ms)
    return Decision(ctx.out, staged.writes)


def fold(state: State, event: Input, config: FoldConfig) -> list[Emit | DeadLetter]:
    """Apply one event to the tenant's state (reads and writes through `state`), return its outputs in order.

    Atomic: the event's writes reach `state` together once it is decided, each changed key once; if
    this raises (a bug, never data), `state` is untouched. `fold_guarded` is what the worker and
    `serial_fold` run: it turns such a failure into the event's dead letter.
    """
    decision = decide(state, event, config)
    decision.apply(state)
    return decision.out


def internal_error(exc: BaseException) -> str:
    """The dead-letter reason of an event that made our own code fail."""
    return f"{INTERNAL_ERROR}: {exc!r}"[:2000]


def fold_guarded(state: State, event: Input, config: FoldConfig,
                 check: Callable[[Decision], Any] | None = None) -> tuple[list[Emit | DeadLetter], Any]:
    """Decide one event, run `check` on the decision (the shell encodes its outputs and prepares its state
    writes there), then apply it; return (outputs, what `check` returned).

    Any exception while deciding or checking dead-letters that event alone (INTERNAL_ERROR, stage
    "rule"): none of its outputs, none of its writes, and `check`'s result is None (SPEC 2, "Bad input").
    """
    try:
        decision = decide(state, event, config)
        checked = check(decision) if check is not None else None
    except Exception as exc:  # a defect of ours, or an output our encoder refuses: this event alone fails
        return [DeadLetter(event, internal_error(exc), "rule")], None
    decision.apply(state)
    return decision.out, checked


def _remember(state: State, tenant: str, event_id: str, ts: int, horizon: int) -> None:
    """Queue an applied event id for expiry and forget at most EXPIRY_SWEEP that fell behind the horizon.

    Table `expiry`: `<tenant>:#` -> {"mark": the tenant's newest event timestamp, "head", "tail": the
    queue's bounds, "due": the timestamp of the id at its head, "open": the last up to EXPIRY_CHUNK
    [event_id, ts] (entries from tail - len(open))}; each full chunk i of EXPIRY_CHUNK entries (in the
    order applied) is stored once as `<tenant>:<i>`. An id is forgotten (its `seen` key deleted) from
    the head once its timestamp is more than `horizon` behind the mark; the sweep stops at the first id
    still within it, so no id is forgotten early (a late event waits behind it). An event reads and
    writes the one queue value (and a chunk every EXPIRY_CHUNK events, or while sweeping); as the sweep
    takes more than one, the queue holds no more than the ids within the horizon and a few more.
    """
    head_key = f"{tenant}:#"
    meta = state.get("expiry", head_key)
    if meta is None:
        mark, head, tail, due, open_ids = ts, 0, 0, ts, []
    else:
        mark, head, tail, due, open_ids = meta["mark"], meta["head"], meta["tail"], meta["due"], meta["open"]
        if ts > mark:
            mark = ts
        if head == tail:
            due = ts
    open_ids = [*open_ids, [event_id, ts]]  # a new list: stored values are never mutated
    tail += 1
    if len(open_ids) == EXPIRY_CHUNK:
        state.put("expiry", f"{tenant}:{(tail - 1) // EXPIRY_CHUNK}", open_ids)
        open_ids = []
    limit = mark - horizon
    if due < limit:
        chunk_no, chunk = -1, None
        for _ in range(EXPIRY_SWEEP):
            if head >= tail:
                break
            c = head // EXPIRY_CHUNK
            if c == tail // EXPIRY_CHUNK:
                old_id, due = open_ids[head - (tail - len(open_ids))]
            else:
                if c != chunk_no:
                    chunk_no, chunk = c, state.get("expiry", f"{tenant}:{c}")
                assert chunk is not None  # every full chunk between head and tail is stored
                old_id, due = chunk[head % EXPIRY_CHUNK]
            if due >= limit:
                break
            state.put("seen", f"{tenant}:{old_id}", None)
            head += 1
            if head % EXPIRY_CHUNK == 0:
                state.put("expiry", f"{tenant}:{c}", None)
    state.put("expiry", head_key, {"mark": mark, "head": head, "tail": tail, "due": due, "open": open_ids})


def serial_fold(inputs: Iterable[Input], config: FoldConfig = FoldConfig(),
                check: Callable[[Decision], Any] | None = None) -> tuple[DictState, list[Emit | DeadLetter]]:
    """The reference: every input folded in order over an empty state, failures treated as the worker does."""
    state = DictState()
    outputs: list[Emit | DeadLetter] = []
    for event in inputs:
        outputs.extend(fold_guarded(state, event, config, check)[0])
    return state, outputs


# -- inventory and catalog ----------------------------------------------------------------------
def _inventory(ctx: _Ctx) -> None:
    data = ctx.data
    before = ctx.stock(data["sku"])
    location, reason = data.get("location_id"), data.get("reason")
    if data.get("new_quantity") is not None:
        result = apply_absolute(before, data["new_quantity"], ctx.ts, ctx.event_id, location,
                                reason or REASON_COUNT, ctx.config.late_count_horizon_ms, ctx.chunking(data["sku"]))
    else:
        result = apply_delta(before, data["quantity_change"], ctx.ts, ctx.event_id, location,
                             reason=reason or REASON_ADJUSTMENT, horizon=ctx.config.late_count_horizon_ms,
                             chunking=ctx.chunking(data["sku"]))
    ctx.store_stock(before, result)


def _catalog(ctx: _Ctx) -> None:
    data = ctx.data
    gkey = f"{ctx.tenant}:{data['product_group_id']}"
    current = ctx.state.get("groups", gkey)
    if current is None or current["updated_at"] <= ctx.ts:  # an older version arriving late does not win
        last = None if current is None else ProductGroup.from_dict(current)
        group = ProductGroup.from_event(ctx.tenant, data, ctx.ts, ctx.event_id, 1 if last is None else last.version)
        if last is not None and group.content() != last.content():
            group = evolve(group, version=last.version + 1)
        ctx.state.put("groups", gkey, group.to_dict())
        if last is None or group.version != last.version:
            ctx.emit("catalog.groups", gkey, group.datum())
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
            ctx.store_stock(before, apply_absolute(before, qty, ctx.ts, ctx.event_id, None, REASON_CATALOG,
                                                  ctx.config.late_count_horizon_ms, ctx.chunking(sku)))


def _price_list(ctx: _Ctx) -> None:
    new = PriceList.from_event(ctx.tenant, ctx.data, ctx.ts, ctx.event_id)
    key = price_list_key(ctx.tenant, new.price_list_id)
    current = ctx.state.get("prices", key)
    if current is None or current["updated_at"] <= ctx.ts:  # an older version arriving late does not win
        ctx.state.put("prices", key, new.to_dict())


def price_list_of(state: State, tenant: str, price_list_id: str) -> PriceList | None:
    raw = state.get("prices", price_list_key(tenant, price_list_id))
    return None if raw is None else PriceList.from_dict(raw)


def _configure(ctx: _Ctx) -> None:
    """tenant.configured: the tenant's settings with the given fields replaced (SPEC 8); emits nothing."""
    key = settings_key(ctx.tenant)
    before = TenantSettings.from_dict(ctx.state.get("settings", key))
    ctx.state.put("settings", key, before.configured(ctx.data).to_dict())


def _conflict_letter(ctx: _Ctx, why: str) -> None:
    ctx.dead_letter(f"IDEMPOTENCY_CONFLICT: {why}; refused", "idempotency")


# -- customers and payments ---------------------------------------------------------------------
def _customer(ctx: _Ctx) -> None:
    data = ctx.data
    raw = ctx.state.get("credit", f"{ctx.tenant}:{data['customer_ref']}")
    before = CreditState(ctx.tenant, data["customer_ref"]) if raw is None else CreditState.from_dict(raw)
    update = set_terms(before, Decimal(data["credit_limit"]), data["on_hold"], data.get("payment_terms_days") or 0,
                       data.get("price_list_id"))
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
    owner = ctx.owner(payment_id_for(received.payment_id))
    if owner is not None:
        _payment_outcome(ctx, REFUSED, (Reason(DUPLICATE_DOCUMENT_ID, (
            f"{payment_id_for(received.payment_id)} is already the document of {_owned_by(owner)}")),),
            total=received.amount, currency=received.currency)
        ctx.state.put("payments", pkey, PaymentRecord(ctx.tenant, received.payment_id, received.customer_ref,
                                                      ctx.event_id, ctx.fp, REFUSED).to_dict())
        return
    result = apply_payment(ctx.state, credit, received.amount, received.invoice_id, received.currency, ctx.ts)
    if result.status == APPLIED:
        booking = book_payment(ctx.tenant, received, result.allocations, ctx.ts, ctx.config.accounts)
        pay, entry = booking.payment, booking.journal
        ctx.store_credit(result.state)
        ctx.claim(pay.payment_id, "payment", received.payment_id)
        ctx.emit("ledger.payments", f"{ctx.tenant}:{pay.payment_id}", datum(pay))
        journal = ctx.journal(entry)
        ctx.refer(REF_CUSTOMER, received.customer_ref)
        _payment_outcome(ctx, ACCEPTED, documents=(pay.payment_id, *journal), total=received.amount,
                         currency=received.currency)
    else:
        _payment_outcome(ctx, REFUSED, (Reason(result.code or REFUSED, result.reason or ""),), total=received.amount,
                         currency=received.currency)
    record = PaymentRecord(ctx.tenant, received.payment_id, received.customer_ref, ctx.event_id, ctx.fp,
                           result.status, result.invoice_ids)
    ctx.state.put("payments", pkey, record.to_dict())


def _payment_failed(ctx: _Ctx) -> None:
    """A payment that failed at the provider (treasury.py): recorded on its sale, nothing booked."""
    data = ctx.data
    sale_id = sale_id_of_invoice(data["invoice_id"]) or ""
    record = sale_of(ctx.state, ctx.tenant, sale_id)
    key = f"{ctx.tenant}:{sale_id}"
    if record is None or record.status != ACCEPTED:
        outcome = Outcome(ctx.tenant, PAYMENT, data["payment_id"], ctx.event_id, REFUSED, ctx.ts, sale_id=sale_id,
                          customer_ref=data["customer_ref"], total=data["amount"], currency=data["currency"],
                          reasons=(Reason(UNKNOWN_SALE, f"sale {sale_id} of {data['invoice_id']} is not booked"),))
        ctx.emit("sales.outcomes", key, outcome.datum())
        return
    why = data["failure_reason"][:MAX_REASON]
    failure = PaymentFailure(data["payment_id"], ctx.event_id, ctx.ts, why, data["amount"], data["currency"])
    fkey = failures_key(ctx.tenant, sale_id)
    ctx.state.put("payment_failures", fkey, record_failure(ctx.state.get("payment_failures", fkey), failure))
    outcome = Outcome(ctx.tenant, PAYMENT, data["payment_id"], ctx.event_id, REFUSED, ctx.ts, sale_id=sale_id,
                      customer_ref=record.customer_ref, total=data["amount"], currency=data["currency"],
                      reasons=(Reason(PAYMENT_FAILED, why),))
    ctx.emit("sales.outcomes", key, outcome.datum())


def payment_failures_of(state: State, tenant: str, sale_id: str) -> list[PaymentFailure]:
    """The sale's last failed payments, oldest first."""
    return [PaymentFailure.from_dict(f) for f in state.get("payment_failures", failures_key(tenant, sale_id)) or ()]


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
            outcome = Outcome(tenant, SALE, data["sale_id"], ctx.event_id, REFUSED, ctx.ts, sale_id=data["sale_id"],
                              customer_ref=data.get("customer_ref"), currency=data.get("currency") or None,
                              reasons=(Reason(DUPLICATE_DOCUMENT_ID, f"sale {data['sale_id']} was already received "
                                                                     f"as event {existing['event_id']}"),))
            ctx.emit("sales.outcomes", key, outcome.datum())
        elif existing["fingerprint"] != ctx.fp:
            _sale_conflict(ctx, f"event_id {ctx.event_id} was used before with different content")
        return
    invalid: list[str] = []
    if not data.get("currency"):  # SPEC 8: none named (an import): the tenant's default currency, as of now
        ctx.data = data = {**data, "currency": ctx.settings().default_currency}
        invalid = validate_sale(data)  # the payments' decimals, now that the currency is known
    sale = Sale.from_event(tenant, data)
    kind = POS if ctx.event_type == "sale.completed" else ORDER
    record = SaleRecord(tenant, sale.sale_id, ctx.event_id, ctx.fp, kind, REFUSED, sale.currency, ctx.ts,
                        sale.payment_terms, sale.customer_ref, sale.location_id)
    if invalid:  # as a NO_PRICE sale: dead-lettered, its record kept (FAILED)
        error = f"{INVALID_PAYMENT}: {'; '.join(invalid)}"
        ctx.state.put("sales", key, evolve(record, status=FAILED, error=error).to_dict())
        ctx.dead_letter(error, "rule")
        return
    _decide_sale(ctx, sale, record, release=False)


def _decide_sale(ctx: _Ctx, sale: Sale, record: SaleRecord, release: bool) -> None:
    """Decide a sale or order (and book it when accepted). `release`: an order.released deciding a held
    order again (SPEC 8): the credit is approved, its outcome is a RELEASE, and a refusal or failure leaves
    the order held."""
    tenant, kind = ctx.tenant, record.kind
    key = f"{tenant}:{sale.sale_id}"
    out_kind = RELEASE if release else SALE
    wanted: dict[str, int] = {}
    for line in sale.lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    catalog = {sku: catalog_of(ctx.state, tenant, sku) for sku in wanted}
    stock = {sku: ctx.stock(sku) for sku in wanted}

    def refuse(reasons: tuple[Reason, ...], credit: CreditFigures | None = None) -> None:
        outcome = Outcome(tenant, out_kind, sale.sale_id, ctx.event_id, REFUSED, ctx.ts, sale_id=sale.sale_id,
                          customer_ref=sale.customer_ref, reasons=reasons, credit=credit, currency=sale.currency)
        if not release:
            ctx.state.put("sales", key, evolve(record, outcome=outcome).to_dict())
        ctx.emit("sales.outcomes", key, outcome.datum())

    def fail(code: str, reason: str) -> None:
        error = f"{code}: {reason}"
        if not release:
            ctx.state.put("sales", key, evolve(record, status=FAILED, error=error).to_dict())
        ctx.dead_letter(error, "rule")

    breaches = tuple(Reason(DISCOUNT_NOT_ALLOWED, b.message, b.sku)
                     for b in discount_breaches(sale.lines, ctx.config.max_discount_percent))
    if kind == ORDER:
        answers = {}
        for sku in wanted:
            entry = catalog[sku]
            answers[sku] = StockAnswer(sku, entry is not None, entry is not None and entry.is_active,
                                       stock[sku].available)
        refusals = check_lines(sale.lines, answers)
        if refusals or breaches:
            refuse(tuple(Reason(r.code, r.message, r.sku, r.requested, r.available) for r in refusals) + breaches)
            return

    def lookup(sku: str) -> CatalogItem | None:
        entry = catalog.get(sku)
        return None if entry is None else entry.item()

    plist = None
    if sale.customer_ref:
        list_id = ctx.credit(sale.customer_ref).price_list_id
        plist = None if list_id is None else price_list_of(ctx.state, tenant, list_id)

    def list_price(sku: str, quantity: int) -> ListPrice | None:
        return None if plist is None else plist.price_for(sku, quantity, sale.currency, ctx.ts)

    priced = price_lines(sale.lines, sale.currency, lookup, ctx.config.default_tax_percent, list_price)
    if isinstance(priced, PricingError):
        fail(priced.code, priced.reason)
        return
    figures = None
    settings = ctx.settings()
    if kind == ORDER and sale.payment_terms == ON_ACCOUNT and not release:
        check = check_order(ctx.credit(sale.customer_ref or ""), priced.total)
        figures = CreditFigures.of(check)
        if not check.approved:
            reasons = (Reason(check.reason or "CREDIT_REFUSED", check.message),)
            if settings.holds and check.reason in (CREDIT_HOLD, CREDIT_LIMIT_EXCEEDED):  # SPEC 8: HELD, not REFUSED
                held = Outcome(tenant, SALE, sale.sale_id, ctx.event_id, HELD, ctx.ts, sale_id=sale.sale_id,
                               customer_ref=sale.customer_ref, reasons=reasons, credit=figures, total=priced.total,
                               currency=sale.currency)
                lines = tuple((li.sku, li.quantity) for li in sale.lines)
                waiting = OrderState.placed(settings.order_fulfilment, lines, held=True,
                                            request=to_plain(dict(ctx.data)))
                ctx.state.put("sales", key, evolve(record, status=HELD, outcome=held,
                                                                order=waiting).to_dict())
                ctx.emit("sales.outcomes", key, held.datum())
                return
            refuse(reasons, figures)
            return
    due_date = None
    if sale.payment_terms == ON_ACCOUNT:
        due_date = due_at_for(ctx.ts, ctx.credit(sale.customer_ref or "").payment_terms_days)
    booking = book_sale(sale, priced, ctx.ts, ctx.config.accounts, due_date=due_date)
    if isinstance(booking, LedgerError):
        fail(booking.code, booking.reason)
        return
    taken = [(p.payment_id, o) for p in booking.payments if (o := ctx.owner(p.payment_id)) is not None]
    if taken:
        refuse(tuple(Reason(DUPLICATE_DOCUMENT_ID, f"{pid} is already the document of {_owned_by(o)}")
                     for pid, o in taken), figures)
        return
    inv, je = booking.invoice, booking.journal
    ctx.emit("ledger.invoices", f"{tenant}:{inv.invoice_id}", datum(inv))
    for pay in booking.payments:
        ctx.claim(pay.payment_id, "sale", sale.sale_id, sale.sale_id)
        ctx.emit("ledger.payments", f"{tenant}:{pay.payment_id}", datum(pay))
    journal = ctx.journal(je)
    ctx.emit("ledger.external_refs", f"{tenant}:sale:{sale.sale_id}",
             {"tenant_id": tenant, "kind": "sale", "external_id": sale.sale_id, "internal_id": inv.invoice_id})
    ctx.refer(REF_CUSTOMER, sale.customer_ref)
    for sku in wanted:
        ctx.refer(REF_ITEM, sku)
    reason = REASON_SALE if kind == POS else REASON_ORDER
    order: OrderState | None = None
    if kind == ORDER:  # SPEC 8: RESERVE reserves the lines, IMMEDIATE deducts them as if shipped in full
        order = OrderState.placed(settings.order_fulfilment, tuple((li.sku, li.quantity) for li in sale.lines),
                                  refund_method=booking.payments[0].method if booking.payments else None)
    for sku, qty in wanted.items():
        before = stock[sku]
        if order is not None and order.reserves:
            ctx.store_stock(before, reserve(before, qty, ctx.ts, ctx.event_id, sale.location_id, REASON_RESERVATION))
        else:
            ctx.store_stock(before, apply_delta(before, -qty, ctx.ts, ctx.event_id, sale.location_id, SALE_DELTA,
                                                reason, ctx.config.late_count_horizon_ms, ctx.chunking(sku)))
    if sale.payment_terms == ON_ACCOUNT:
        credit = ctx.credit(sale.customer_ref or "")
        update = add_invoice(ctx.state, credit, inv.invoice_id, inv.issued_at, inv.currency, inv.total, due_date)
        ctx.store_credit(update.state)
    documents = (inv.invoice_id, *(p.payment_id for p in booking.payments), *journal)
    outcome = Outcome(tenant, out_kind, sale.sale_id, ctx.event_id, ACCEPTED, ctx.ts, sale_id=sale.sale_id,
                      customer_ref=sale.customer_ref, credit=figures, document_ids=documents, total=inv.total,
                      currency=sale.currency, reasons=breaches)  # a POS sale's discount warnings
    ctx.state.put("sales", key, evolve(record, status=ACCEPTED, outcome=outcome,
                                                    document_ids=documents, invoice=inv, order=order).to_dict())
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
        ctx.state.put("sales", key, evolve(
            record, refunds=refunds, refund_results=record.refund_results + (result,)).to_dict())

    note_id = credit_note_id_for(request.refund_id)
    owner = ctx.owner(note_id)
    if owner is not None:  # the refund_id was used on another sale (on this one it has a refund result)
        outcome = _refund_outcome(ctx, record, REFUSED, (Reason(
            DUPLICATE_DOCUMENT_ID, f"{note_id} is already the document of {_owned_by(owner)}"),))
        if record is not None:
            remember(outcome, record.refunds)
        return

    if record is None or record.status != ACCEPTED or record.invoice is None:
        why = "unknown" if record is None else ("refused" if record.status == REFUSED else "not booked (failed)")
        outcome = _refund_outcome(ctx, record, REFUSED, (Reason(
            UNKNOWN_SALE, f"sale {request.sale_id} is {why}; nothing to refund"),))
        if record is not None:
            remember(outcome, record.refunds)
        return
    invoice = record.invoice
    if record.order is not None:  # SPEC 8: under RESERVE a refund counts against shipped quantities only
        unshipped = unshipped_refund(record.order, ctx.data["lines"], _refunded_only(record))
        if unshipped is not None:
            remember(_refund_outcome(ctx, record, REFUSED, (_reason(unshipped),), currency=invoice.currency),
                     record.refunds)
            return
    booking = book_refund(invoice, record.refunds, request, ctx.ts, ctx.config.accounts)
    if isinstance(booking, RefundError):
        reasons = tuple(Reason(booking.code, r.message, r.sku, r.requested, r.refundable) for r in booking.lines) \
            or (Reason(booking.code, booking.reason),)
        remember(_refund_outcome(ctx, record, REFUSED, reasons, currency=invoice.currency), record.refunds)
        return
    note, entry = booking.credit_note, booking.journal
    ctx.claim(note.credit_note_id, "refund", request.refund_id, request.sale_id)
    ctx.emit("ledger.credit_notes", f"{tenant}:{note.credit_note_id}", datum(note))
    journal = ctx.journal(entry)
    ctx.emit("ledger.external_refs", f"{tenant}:refund:{request.refund_id}",
             {"tenant_id": tenant, "kind": "refund", "external_id": request.refund_id,
              "internal_id": note.credit_note_id})
    for sku, qty in booking.restock:
        before = ctx.stock(sku)
        ctx.store_stock(before, apply_delta(before, qty, ctx.ts, ctx.event_id, record.location_id, RESTOCK,
                                            REASON_RETURN, ctx.config.late_count_horizon_ms, ctx.chunking(sku)))
    if request.refund_method == "CREDIT" and invoice.customer_ref:  # on account, or a PAID sale's store credit
        credit = ctx.credit(invoice.customer_ref)
        update = apply_credit_refund(ctx.state, credit, request.refund_id, invoice.invoice_id, note.total)
        if update.state is not credit:
            ctx.store_credit(update.state)
    outcome = _refund_outcome(ctx, record, ACCEPTED, documents=(note.credit_note_id, *journal),
                              total=note.total, currency=note.currency)
    remember(outcome, booking.state)


# -- the order lifecycle (SPEC 8; the rules in lifecycle.py) -----------------------------------------
def _reason(refusal: Refusal) -> Reason:
    return Reason(refusal.code, refusal.message, refusal.sku, refusal.requested, refusal.available)


def _refunded_only(record: SaleRecord) -> dict[str, int]:
    """Units refunded per SKU by refunds (the refund state also counts cancellations, booked like refunds)."""
    out: dict[str, int] = {}
    if record.invoice is None:  # held or refused: nothing was booked, nothing refunded
        return out
    for li in record.invoice.lines:
        out[li.sku] = out.get(li.sku, 0) + record.refunds.of_line(li.line_no).quantity
    if record.order is not None:
        for sku, qty in record.order.by_sku("cancelled").items():
            out[sku] = out.get(sku, 0) - qty
    return out


def _lifecycle_outcome(ctx: _Ctx, kind: str, natural_id: str, record: SaleRecord | None, outcome: str,
                       reasons: tuple[Reason, ...] = (), documents: tuple[str, ...] = (),
                       total: Decimal | None = None) -> None:
    data = ctx.data
    result = Outcome(ctx.tenant, kind, natural_id, ctx.event_id, outcome, ctx.ts, sale_id=data["sale_id"],
                     customer_ref=None if record is None else record.customer_ref, reasons=reasons,
                     document_ids=documents, total=total, currency=None if record is None else record.currency)
    ctx.emit("sales.outcomes", f"{ctx.tenant}:{data['sale_id']}", result.datum())


def _lifecycle_conflict(ctx: _Ctx, why: str) -> None:
    kind, natural = _LIFECYCLE_ID[ctx.event_type]
    record = sale_of(ctx.state, ctx.tenant, ctx.data["sale_id"])
    _lifecycle_outcome(ctx, kind, ctx.data.get(natural) or ctx.data["sale_id"], record, IDEMPOTENCY_CONFLICT,
                       (Reason(IDEMPOTENCY_CONFLICT, why),))


def _ship(ctx: _Ctx) -> None:
    tenant, data = ctx.tenant, ctx.data
    shipment_id = data["shipment_id"]
    record = sale_of(ctx.state, tenant, data["sale_id"])
    doc = f"SHIP-{shipment_id}"
    owner = ctx.owner(doc)
    if owner is not None:
        _lifecycle_outcome(ctx, SHIPMENT, shipment_id, record, REFUSED, (Reason(
            DUPLICATE_DOCUMENT_ID, f"{doc} is already the document of {_owned_by(owner)}"),))
        return
    if record is not None and record.kind == POS:
        decided: tuple[OrderState, dict[str, int]] | Refusal = Refusal(
            "ALREADY_SHIPPED", f"sale {record.sale_id} is a POS sale: it left the shop when it was sold")
    else:
        decided = shipment(None if record is None else record.order,
                           record is not None and record.status == ACCEPTED, data["lines"])
    if isinstance(decided, Refusal):
        _lifecycle_outcome(ctx, SHIPMENT, shipment_id, record, REFUSED, (_reason(decided),))
        return
    assert record is not None
    order, shipped = decided
    location = data.get("location_id") or record.location_id
    for sku, qty in shipped.items():
        before = ctx.stock(sku)
        moved = apply_delta(before, -qty, ctx.ts, ctx.event_id, location, SALE_DELTA, REASON_SHIPMENT,
                            ctx.config.late_count_horizon_ms, ctx.chunking(sku))
        released = reserve(moved.state, -qty, ctx.ts, ctx.event_id, location, REASON_SHIPMENT)
        ctx.store_stock(before, StockResult(released.state, True, moved.alerts, moved.chunks))
    ctx.claim(doc, "shipment", shipment_id, record.sale_id)
    ctx.emit("ledger.shipments", f"{tenant}:{doc}", {  # the delivery note the sink books (PostgreSQL shipments)
        "tenant_id": tenant, "shipment_id": doc, "source_shipment_id": shipment_id, "sale_id": record.sale_id,
        "invoice_id": None if record.invoice is None else record.invoice.invoice_id, "location_id": location,
        "shipped_at": ctx.ts,
        "lines": [{"line_no": n, "sku": sku, "quantity": qty} for n, (sku, qty) in enumerate(shipped.items(), 1)]})
    ctx.state.put("sales", f"{tenant}:{record.sale_id}", evolve(record, order=order).to_dict())
    _lifecycle_outcome(ctx, SHIPMENT, shipment_id, record, ACCEPTED)


def _cancel(ctx: _Ctx) -> None:
    tenant, data = ctx.tenant, ctx.data
    cancellation_id = data["cancellation_id"]
    key = f"{tenant}:{data['sale_id']}"
    record = sale_of(ctx.state, tenant, data["sale_id"])
    note_id = credit_note_id_for(cancellation_id)
    owner = ctx.owner(note_id)
    if owner is not None:
        _lifecycle_outcome(ctx, CANCELLATION, cancellation_id, record, REFUSED, (Reason(
            DUPLICATE_DOCUMENT_ID, f"{note_id} is already the document of {_owned_by(owner)}"),))
        return
    decided = cancellation(None if record is None else record.order,
                           record is not None and record.status == ACCEPTED, data.get("lines"),
                           {} if record is None else _refunded_only(record))
    if isinstance(decided, Refusal):
        _lifecycle_outcome(ctx, CANCELLATION, cancellation_id, record, REFUSED, (_reason(decided),))
        return
    assert record is not None and record.order is not None
    order, cancelled = decided
    if record.invoice is None:  # a held order: nothing was reserved or booked
        ctx.state.put("sales", key, evolve(record, order=order).to_dict())
        _lifecycle_outcome(ctx, CANCELLATION, cancellation_id, record, ACCEPTED)
        return
    invoice = record.invoice
    method = "CREDIT" if record.payment_terms == ON_ACCOUNT else (record.order.refund_method or "CASH")
    request = RefundRequest(cancellation_id, record.sale_id,
                            tuple(RefundLine(sku, qty) for sku, qty in cancelled.items()),
                            not record.order.reserves, method, data.get("reason"))
    booking = book_refund(invoice, record.refunds, request, ctx.ts, ctx.config.accounts)
    if isinstance(booking, RefundError):  # cannot happen after `cancellation`; refused all the same
        _lifecycle_outcome(ctx, CANCELLATION, cancellation_id, record, REFUSED, (Reason(booking.code, booking.reason),))
        return
    note = booking.credit_note
    ctx.claim(note.credit_note_id, "cancellation", cancellation_id, record.sale_id)
    ctx.emit("ledger.credit_notes", f"{tenant}:{note.credit_note_id}", datum(note))
    journal = ctx.journal(evolve(booking.journal,
                                              description=f"cancellation {cancellation_id} of order {record.sale_id}"))
    ctx.emit("ledger.external_refs", f"{tenant}:cancellation:{cancellation_id}",
             {"tenant_id": tenant, "kind": "cancellation", "external_id": cancellation_id,
              "internal_id": note.credit_note_id})
    for sku, qty in cancelled.items():
        before = ctx.stock(sku)
        if record.order.reserves:
            ctx.store_stock(before, reserve(before, -qty, ctx.ts, ctx.event_id, record.location_id, REASON_RELEASE))
        else:
            ctx.store_stock(before, apply_delta(before, qty, ctx.ts, ctx.event_id, record.location_id, RESTOCK,
                                                REASON_CANCELLATION, ctx.config.late_count_horizon_ms,
                                                ctx.chunking(sku)))
    if method == "CREDIT" and invoice.customer_ref:
        credit = ctx.credit(invoice.customer_ref)
        update = apply_credit_refund(ctx.state, credit, cancellation_id, invoice.invoice_id, note.total)
        if update.state is not credit:
            ctx.store_credit(update.state)
    ctx.state.put("sales", key, evolve(record, order=order, refunds=booking.state).to_dict())
    _lifecycle_outcome(ctx, CANCELLATION, cancellation_id, record, ACCEPTED, documents=(note.credit_note_id, *journal),
                       total=note.total)


def _release(ctx: _Ctx) -> None:
    """order.released: a held order decided again against current stock, its credit approved (SPEC 8)."""
    record = sale_of(ctx.state, ctx.tenant, ctx.data["sale_id"])
    if record is None or record.order is None or not record.order.held or record.order.request is None:
        state = "unknown" if record is None else (record.order.state if record.order else record.status)
        _lifecycle_outcome(ctx, RELEASE, ctx.data["sale_id"], record, REFUSED, (Reason(
            NOT_HELD, f"order {ctx.data['sale_id']} is {state}, not HELD; nothing to release"),))
        return
    _decide_sale(ctx, Sale.from_event(ctx.tenant, record.order.request), record, release=True)


_LIFECYCLE_ID = {"order.shipped": (SHIPMENT, "shipment_id"), "order.cancelled": (CANCELLATION, "cancellation_id"),
                 "order.released": (RELEASE, "sale_id")}


def _touched(ctx: _Ctx) -> list[tuple[str, str]]:
    """The (table, key) pairs an event's first application may have written."""
    tenant, data, et = ctx.tenant, ctx.data, ctx.event_type
    if et == "inventory.change":
        return [("stock", f"{tenant}:{data['sku']}")]
    if et == "catalog.update":
        return [(t, f"{tenant}:{v['sku']}") for v in data["variants"] for t in ("catalog", "stock")] + [
            ("groups", f"{tenant}:{data['product_group_id']}")]
    if et == "customer.credit":
        return [("credit", f"{tenant}:{data['customer_ref']}")]
    if et == "payment.failed":
        return [("payment_failures", failures_key(tenant, sale_id_of_invoice(data["invoice_id"]) or ""))]
    if et == "price_list.updated":
        return [("prices", price_list_key(tenant, data["price_list_id"]))]
    if et == "tenant.configured":
        return [("settings", settings_key(tenant))]
    if et in LIFECYCLE_EVENTS:
        keys = [("sales", f"{tenant}:{data['sale_id']}")]
        record = ctx.state.get("sales", f"{tenant}:{data['sale_id']}")
        if record is not None:
            keys += [("stock", f"{tenant}:{li[1]}") for li in (record.get("order") or {}).get("lines", ())]
            keys += [("stock", f"{tenant}:{li['sku']}") for li in (record.get("invoice") or {}).get("lines", ())]
        if et == "order.released" and record is not None and record.get("customer_ref"):
            keys.append(("credit", f"{tenant}:{record['customer_ref']}"))
            ikey = invoice_key(tenant, invoice_id_for(data["sale_id"]))
            entry = ctx.state.get("invoices", ikey)
            if entry is not None:
                keys.append(("invoices", ikey))
                keys += [("invoices", invoice_key(tenant, n)) for n in linked_ids(entry)]
        if et == "order.shipped":
            keys.append(("documents", f"{tenant}:SHIP-{data['shipment_id']}"))
        if et == "order.cancelled":
            keys.append(("documents", f"{tenant}:{credit_note_id_for(data['cancellation_id'])}"))
            if record is not None and record.get("customer_ref"):
                keys.append(("credit", f"{tenant}:{record['customer_ref']}"))
                mark_key = refund_mark_key(tenant, record["customer_ref"], data["cancellation_id"])
                mark = ctx.state.get("invoices", mark_key)
                if mark is not None:
                    keys.append(("invoices", mark_key))
                    keys += [("invoices", invoice_key(tenant, i)) for i in RefundMark.from_dict(mark).invoice_ids]
        return keys
    if et == "payment.received":
        keys = [("credit", f"{tenant}:{data['customer_ref']}"), ("payments", f"{tenant}:{data['payment_id']}"),
                ("documents", f"{tenant}:{payment_id_for(data['payment_id'])}"),
                ("refs", f"{tenant}:{REF_CUSTOMER}:{data['customer_ref']}")]
        done = ctx.state.get("payments", f"{tenant}:{data['payment_id']}")
        if done is not None:
            keys += [("invoices", invoice_key(tenant, i)) for i in done.get("invoice_ids", ())]
        return keys
    if et == "refund.issued":
        keys = [("sales", f"{tenant}:{data['sale_id']}"),
                ("documents", f"{tenant}:{credit_note_id_for(data['refund_id'])}")]
        keys += [("stock", f"{tenant}:{line['sku']}") for line in data["lines"]]
        record = ctx.state.get("sales", f"{tenant}:{data['sale_id']}")
        if record is not None and record.get("customer_ref"):
            keys.append(("credit", f"{tenant}:{record['customer_ref']}"))
            mark_key = refund_mark_key(tenant, record["customer_ref"], data["refund_id"])
            mark = ctx.state.get("invoices", mark_key)
            if mark is not None:
                keys.append(("invoices", mark_key))
                keys += [("invoices", invoice_key(tenant, i)) for i in RefundMark.from_dict(mark).invoice_ids]
        return keys
    keys = [("sales", f"{tenant}:{data['sale_id']}")]
    keys += [("stock", f"{tenant}:{line['sku']}") for line in data["line_items"]]
    keys += [("refs", f"{tenant}:{REF_ITEM}:{line['sku']}") for line in data["line_items"]]
    if data.get("customer_ref"):
        keys.append(("refs", f"{tenant}:{REF_CUSTOMER}:{data['customer_ref']}"))
    record = ctx.state.get("sales", f"{tenant}:{data['sale_id']}")
    if record is not None and record.get("event_id") == ctx.event_id:
        keys += [("documents", f"{tenant}:{d}") for d in record.get("document_ids", ()) if d.startswith("PAY-")]
    if data.get("customer_ref"):
        keys.append(("credit", f"{tenant}:{data['customer_ref']}"))
        ikey = invoice_key(tenant, invoice_id_for(data["sale_id"]))
        entry = ctx.state.get("invoices", ikey)
        if entry is not None:  # the invoice, and the neighbours it was linked between in each lane (if still open)
            keys.append(("invoices", ikey))
            keys += [("invoices", invoice_key(tenant, n)) for n in linked_ids(entry)]
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
            if table == "stock" and value.get("chunks") and value["chunks"][1] < value["chunks"][2]:
                newest = f"{key}#{value['chunks'][2] - 1}"  # the chunk the event may have closed
                chunk = ctx.state.get("stock_chunks", newest)
                if chunk is not None:
                    ctx.state.put("stock_chunks", newest, chunk)
    ctx.state.put("seen", seen_key, ctx.fp)


_HANDLERS: dict[str, Callable[[_Ctx], None]] = {
    "inventory.change": _inventory,
    "catalog.update": _catalog,
    "customer.credit": _customer,
    "payment.received": _payment,
    "sale.completed": _sale,
    "order.placed": _sale,
    "refund.issued": _refund,
    "price_list.updated": _price_list,
    "payment.failed": _payment_failed,
    "tenant.configured": _configure,
    "order.shipped": _ship,
    "order.cancelled": _cancel,
    "order.released": _release,
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
    "price_list.updated": validate_price_list,
    "payment.failed": lambda data: validate_payment_failed(data, validate_payment),
    "tenant.configured": validate_tenant_configured,
    "order.shipped": validate_order_shipped,
    "order.cancelled": validate_order_cancelled,
    "order.released": validate_order_released,
}

_CONFLICTS: dict[str, Callable[[_Ctx, str], None]] = {
    "inventory.change": _conflict_letter,
    "catalog.update": _conflict_letter,
    "customer.credit": _conflict_letter,
    "payment.received": _payment_conflict,
    "sale.completed": _sale_conflict,
    "order.placed": _sale_conflict,
    "refund.issued": _refund_conflict,
    "price_list.updated": _conflict_letter,
    "payment.failed": _payment_conflict,
    "tenant.configured": _conflict_letter,
    "order.shipped": _lifecycle_conflict,
    "order.cancelled": _lifecycle_conflict,
    "order.released": _lifecycle_conflict,
}
