"""Customer credit: limit, on-hold flag, open ON_ACCOUNT invoices, payments against them.

SPEC 2: outstanding = the unpaid amount of the customer's ON_ACCOUNT invoices;
available = credit_limit - outstanding; a limit of 0 means no limit.

Choices where SPEC is silent:
- Unlimited credit has `available = None` (JSON null), never a sentinel number.
- A CREDIT refund reduces its invoice's remaining amount; any excess (the
  invoice was already paid, a PAID sale's invoice is never kept here) becomes
  `credit_balance`: store credit the customer holds, unallocated (as Odoo's
  "outstanding credits"), which lowers outstanding (it can go below 0) and so
  raises available credit. Payments still pay invoices (their overpayment rule
  is against what the invoices owe): the balance stays on the account.
- An invoice's status counts what settled it: payments and CREDIT refunds alike.
  Nothing left and settled by credit notes alone: CREDITED; nothing left: PAID;
  something paid or credited: PARTIALLY_PAID; else UNPAID (the sink derives the
  same from payment allocations and CREDIT credit notes).
- Receivables (SPEC 9): `customer.credit` sets payment_terms_days (default 0)
  and price_list_id; an ON_ACCOUNT invoice is due at midnight UTC of its issue
  day + the terms in force when it was issued (`due_at`, epoch millis). The
  customer's first and last payment.received times are kept (constant size).
- Nothing is held for an order: the fold checks an order's credit and adds
  its invoice in one decision, so two orders cannot both spend the same credit.
- A payment applies only to invoices in its own currency. A customer is
  assumed to trade in one currency: outstanding sums invoices as they are.
- A payment.received, sale or refund is applied once (the fold's seen, sales and
  payments tables); an invoice already kept is not added again, and a CREDIT
  refund leaves a RefundMark per customer and refund_id, so a refund_id
  credited before to the customer (on another of its sales) credits nothing again.

State layout (a sale, payment or refund touches O(1) keys of its customer, O(log n) expected
to place an invoice among n open ones):
- `credit` `<tenant>:<customer_ref>` -> CreditState, constant-size: limit, hold,
  credit_balance, the count of open invoices, the ends (oldest, newest) of their
  chain, the newest open invoice of each express lane (`lanes`, at most MAX_LEVEL)
  and per currency what they still owe (Due).
- `invoices` `<tenant>:<invoice_id>` -> InvoiceEntry: every ON_ACCOUNT invoice with
  total, paid, credited and the prev/next links of the customer's open invoices
  ordered by (issued_at, invoice_id). A paid-off invoice leaves the chain, keeps
  its key (status PAID): a payment naming it is refused as UNKNOWN_INVOICE.
- `invoices` `<tenant>:refund:<customer_ref>:<refund_id>` -> RefundMark.

The chain is the bottom lane of a deterministic skip list (issue 17: an invoice arriving out of
order must not walk its customer's history). An invoice linked by this code gets a level L from
a stable hash of its id (`level_of`: blake2b, each level with probability 1/4, at most MAX_LEVEL)
and is also linked, with its own prev/next, in express lanes 1..L (`up`, in the dict form a flat
list [prev1, next1, prev2, next2, ...], absent at level 0, so three in four entries are as before).
Finding an invoice's place walks back from the newest end of the top lane, down lane by lane:
O(log n) reads expected whatever the arrival order. The order, and so every allocation, status and
message, is the bottom chain's, as before. An entry written before express lanes (no `up`) is level
0 and stays correct: the search ends at the bottom lane, which still holds every open invoice. A
paid-off invoice leaves every lane it was in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from hashlib import blake2b
from typing import Any

from .documents import CREDITED, PAID_STATUS, PARTIALLY_PAID, UNPAID, Allocation
from .money import ZERO, is_known_currency, is_whole_minor, to_decimal
from .serde import Plain, evolve
from .tables import State

__all__ = [
    "shown_amount",
    "CREDIT_HOLD",
    "CREDIT_LIMIT_EXCEEDED",
    "APPLIED",
    "REFUSED",
    "OVERPAYMENT",
    "UNKNOWN_INVOICE",
    "CURRENCY_MISMATCH",
    "INVALID_AMOUNT",
    "CREDIT",
    "INVOICES",
    "credit_key",
    "invoice_key",
    "refund_mark_key",
    "OpenInvoice",
    "InvoiceEntry",
    "Due",
    "CreditState",
    "RefundMark",
    "CreditCheck",
    "CreditUpdate",
    "PaymentResult",
    "PaymentReceived",
    "invoice_of",
    "open_invoices_of",
    "level_of",
    "linked_ids",
    "MAX_LEVEL",
    "check_order",
    "add_invoice",
    "apply_payment",
    "apply_credit_refund",
    "set_terms",
    "due_at_for",
    "invoice_status",
    "validate_payment",
    "validate_customer_credit",
]

CREDIT_HOLD = "CREDIT_HOLD"
CREDIT_LIMIT_EXCEEDED = "CREDIT_LIMIT_EXCEEDED"

APPLIED = "APPLIED"
REFUSED = "REFUSED"

OVERPAYMENT = "OVERPAYMENT"
UNKNOWN_INVOICE = "UNKNOWN_INVOICE"
CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
INVALID_AMOUNT = "INVALID_AMOUNT"

CREDIT, INVOICES = "credit", "invoices"  # the tables credit keeps

_METHODS = frozenset({"CASH", "CARD", "MOBILE", "BANK"})
DAY_MS = 86_400_000
MAX_TERMS_DAYS = 36_500  # a century: a due date beyond it is a typo, not terms
MAX_LEVEL = 8  # express lanes of the invoice chain: 4**8 = 65,536 open invoices per customer before it thins


def level_of(invoice_id: str) -> int:
    """The express level an invoice gets when linked: L with probability (3/4)(1/4)**L (capped at
    MAX_LEVEL), from a stable hash of its id (never Python's salted hash()), so a replay builds the same lanes."""
    h = int.from_bytes(blake2b(invoice_id.encode("utf-8", "surrogatepass"), digest_size=4).digest(), "little")
    if h == 0:
        return MAX_LEVEL
    return min(MAX_LEVEL, ((h & -h).bit_length() - 1) >> 1)  # pairs of trailing zero bits


def due_at_for(issued_at: int, terms_days: int) -> int:
    """An invoice's due date (epoch millis of its midnight UTC): the issue day plus the terms."""
    return (issued_at // DAY_MS + terms_days) * DAY_MS


def invoice_status(total: Decimal, paid: Decimal, credited: Decimal) -> str:
    """UNPAID / PARTIALLY_PAID / PAID / CREDITED (credit notes alone covered it); the sink's SQL is the same."""
    if total - paid - credited == 0:
        return CREDITED if paid == 0 and credited > 0 else PAID_STATUS
    return PARTIALLY_PAID if paid or credited else UNPAID


def credit_key(tenant_id: str, customer_ref: str) -> str:
    return f"{tenant_id}:{customer_ref}"


def invoice_key(tenant_id: str, invoice_id: str) -> str:
    return f"{tenant_id}:{invoice_id}"


def refund_mark_key(tenant_id: str, customer_ref: str, refund_id: str) -> str:
    """A customer's CREDIT refund, in `invoices` beside the invoices (ids INV-..., never "refund:...")."""
    return f"{tenant_id}:refund:{customer_ref}:{refund_id}"


@dataclass(frozen=True, slots=True)
class OpenInvoice(Plain):
    """An ON_ACCOUNT invoice with something still due."""

    invoice_id: str
    issued_at: int
    currency: str
    total: Decimal
    paid: Decimal = ZERO
    credited: Decimal = ZERO  # reduced by CREDIT refunds
    due_at: int | None = None  # epoch millis of the due date (midnight UTC)

    @property
    def remaining(self) -> Decimal:
        return self.total - self.paid - self.credited

    @property
    def status(self) -> str:
        return invoice_status(self.total, self.paid, self.credited)


@dataclass(frozen=True, slots=True)
class InvoiceEntry(Plain):
    """An ON_ACCOUNT invoice as kept (`invoices` `<tenant>:<invoice_id>`); open while something is due.

    The open invoices of a customer form a chain ordered by (issued_at, invoice_id): `prev` is the
    next older open invoice, `next` the next newer (None at the ends). `up[k - 1]` is its (prev, next)
    in express lane k, for k = 1..its level (the skip list of the module docstring; () at level 0).
    A paid-off invoice leaves the chain and every lane (all None, `up` ()) and keeps its key: status PAID."""

    tenant_id: str
    customer_ref: str
    invoice_id: str
    issued_at: int
    currency: str
    total: Decimal
    paid: Decimal = ZERO
    credited: Decimal = ZERO
    prev: str | None = None
    next: str | None = None
    due_at: int | None = None  # epoch millis of the due date (midnight UTC)
    up: tuple[tuple[str | None, str | None], ...] = ()  # (prev, next) in express lanes 1..level

    @property
    def remaining(self) -> Decimal:
        return self.total - self.paid - self.credited

    @property
    def level(self) -> int:
        return len(self.up)

    def prev_at(self, k: int) -> str | None:
        return self.prev if k == 0 else self.up[k - 1][0]

    def next_at(self, k: int) -> str | None:
        return self.next if k == 0 else self.up[k - 1][1]

    def with_prev(self, k: int, invoice_id: str | None) -> InvoiceEntry:
        if k == 0:
            return evolve(self, prev=invoice_id)
        up = self.up
        return evolve(self, up=(*up[:k - 1], (invoice_id, up[k - 1][1]), *up[k:]))

    def with_next(self, k: int, invoice_id: str | None) -> InvoiceEntry:
        if k == 0:
            return evolve(self, next=invoice_id)
        up = self.up
        return evolve(self, up=(*up[:k - 1], (up[k - 1][0], invoice_id), *up[k:]))

    @property
    def is_open(self) -> bool:
        return self.remaining > 0

    @property
    def status(self) -> str:
        return invoice_status(self.total, self.paid, self.credited)

    def view(self) -> OpenInvoice:
        return OpenInvoice(self.invoice_id, self.issued_at, self.currency, self.total, self.paid, self.credited,
                           self.due_at)

    def to_dict(self) -> dict[str, Any]:
        plain = {"tenant_id": self.tenant_id, "customer_ref": self.customer_ref, "invoice_id": self.invoice_id,
                 "issued_at": self.issued_at, "currency": self.currency, "total": format(self.total, "f"),
                 "paid": format(self.paid, "f"), "credited": format(self.credited, "f"), "prev": self.prev,
                 "next": self.next, "due_at": self.due_at}
        if self.up:  # level 0 (three in four, and every entry written before the lanes): no key
            plain["up"] = [link for pair in self.up for link in pair]
        return plain

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InvoiceEntry:
        flat = data.get("up") or ()
        return cls(data["tenant_id"], data["customer_ref"], data["invoice_id"], data["issued_at"], data["currency"],
                   Decimal(data["total"]), Decimal(data["paid"]), Decimal(data["credited"]), data.get("prev"),
                   data.get("next"), data.get("due_at"), tuple(zip(flat[::2], flat[1::2], strict=True)))


@dataclass(frozen=True, slots=True)
class Due(Plain):
    """What a customer's open invoices in one currency still owe: the sum of their remaining amounts,
    with the exponent that sum has when added up invoice by invoice (the smallest exponent among them,
    and 0), so figures and messages read exactly as they always did. `scales` counts the open
    invoices by the exponent of their remaining amount: (exponent, count), sorted."""

    currency: str
    amount: Decimal
    scales: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class CreditState(Plain):
    """Credit of one customer (`credit` `<tenant>:<customer_ref>`), constant-size: its open invoices
    live in their own keys (InvoiceEntry), linked from `oldest` to `newest`; `lanes[k - 1]` is the
    newest open invoice in express lane k (k = 1..at most MAX_LEVEL; none past the top nonempty lane).
    `CreditState(tenant_id, customer_ref)` is the empty state."""

    tenant_id: str
    customer_ref: str
    credit_limit: Decimal = ZERO  # 0 = no limit
    on_hold: bool = False
    credit_balance: Decimal = ZERO  # customer's unallocated credit from CREDIT refunds
    open_count: int = 0  # open invoices
    oldest: str | None = None  # the ends of the chain of open invoices
    newest: str | None = None
    due: tuple[Due, ...] = ()  # by currency, in order of first appearance; none for a currency owing nothing
    payment_terms_days: int = 0  # SPEC 9: an ON_ACCOUNT invoice is due this many days after its issue day
    price_list_id: str | None = None
    first_payment_at: int | None = None  # the customer's first and last applied payment.received (epoch millis)
    last_payment_at: int | None = None
    lanes: tuple[str, ...] = ()  # the newest open invoice of each express lane 1..len(lanes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id, "customer_ref": self.customer_ref,
            "credit_limit": format(self.credit_limit, "f"), "on_hold": self.on_hold,
            "credit_balance": format(self.credit_balance, "f"), "open_count": self.open_count,
            "oldest": self.oldest, "newest": self.newest,
            "due": [{"currency": d.currency, "amount": format(d.amount, "f"), "scales": [list(s) for s in d.scales]}
                    for d in self.due],
            "payment_terms_days": self.payment_terms_days, "price_list_id": self.price_list_id,
            "first_payment_at": self.first_payment_at, "last_payment_at": self.last_payment_at,
            "lanes": list(self.lanes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CreditState:
        if "open_invoices" in data:
            raise ValueError(f"credit of {data.get('customer_ref')!r} is in the layout before open invoices got "
                             "their own keys (open_invoices inside the value); rebuild the state from the tenant log")
        return cls(
            data["tenant_id"], data["customer_ref"], Decimal(data.get("credit_limit", "0")),
            data.get("on_hold", False), Decimal(data.get("credit_balance", "0")), data.get("open_count", 0),
            data.get("oldest"), data.get("newest"),
            tuple(Due(d["currency"], Decimal(d["amount"]), tuple((e, n) for e, n in d["scales"]))
                  for d in data.get("due", ())),
            data.get("payment_terms_days", 0), data.get("price_list_id"), data.get("first_payment_at"),
            data.get("last_payment_at"), tuple(data.get("lanes", ())),
        )

    def due_in(self, currency: str) -> Decimal:
        """What the open invoices in `currency` still owe."""
        for d in self.due:
            if d.currency == currency:
                return d.amount
        return ZERO

    @property
    def outstanding(self) -> Decimal:
        """Unpaid amount of the open invoices, less any credit the customer holds."""
        total = ZERO
        for d in self.due:
            total += d.amount
        return total - self.credit_balance

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
class RefundMark(Plain):
    """A CREDIT refund applied to a customer (`invoices` refund_mark_key): the same refund_id on
    another of the customer's sales credits nothing again. `invoice_ids`: the invoice keys it wrote."""

    tenant_id: str
    customer_ref: str
    refund_id: str
    invoice_id: str
    invoice_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "customer_ref": self.customer_ref, "refund_id": self.refund_id,
                "invoice_id": self.invoice_id, "invoice_ids": list(self.invoice_ids)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RefundMark:
        return cls(data["tenant_id"], data["customer_ref"], data["refund_id"], data["invoice_id"],
                   tuple(data.get("invoice_ids", ())))


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
    """New state; `changed` False when the operation was a repeat or changed nothing.
    `invoice_ids`: the invoice keys the operation wrote."""

    state: CreditState
    changed: bool
    invoice_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """APPLIED with allocations, or REFUSED with a reason (nothing written).
    `invoice_ids`: the invoice keys an applied payment wrote."""

    state: CreditState
    status: str
    allocations: tuple[Allocation, ...] = ()
    code: str | None = None
    reason: str | None = None
    invoice_ids: tuple[str, ...] = ()


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


# -- reading ------------------------------------------------------------------------------------
def invoice_of(store: State, tenant_id: str, invoice_id: str) -> InvoiceEntry | None:
    raw = store.get(INVOICES, invoice_key(tenant_id, invoice_id))
    return None if raw is None else InvoiceEntry.from_dict(raw)


def open_invoices_of(store: State, tenant_id: str, customer_ref: str) -> list[OpenInvoice]:
    """The customer's open invoices, oldest first (issued_at, then id): a walk of the chain (reads only)."""
    raw = store.get(CREDIT, credit_key(tenant_id, customer_ref))
    out: list[OpenInvoice] = []
    at = None if raw is None else raw.get("oldest")
    while at is not None:
        entry = invoice_of(store, tenant_id, at)
        if entry is None:
            raise ValueError(f"open invoice {at} of customer {customer_ref} is missing from the state")
        out.append(entry.view())
        at = entry.next
    return out


def linked_ids(entry: Mapping[str, Any]) -> list[str]:
    """The invoices an entry (its dict form) is linked to, in the chain and in its express lanes: those its
    linking wrote, if they are still its neighbours (a duplicate's rewrite, fold._touched)."""
    links = [entry.get("prev"), entry.get("next"), *(entry.get("up") or ())]
    return [i for i in links if i is not None]


# -- the chain ----------------------------------------------------------------------------------
_MISSING: Any = object()
_UNITS: dict[int, Decimal] = {}


def _unit(exponent: int) -> Decimal:
    unit = _UNITS.get(exponent)
    if unit is None:
        unit = _UNITS[exponent] = Decimal((0, (1,), exponent))
    return unit


class _Book:
    """The invoices one operation reads and changes: each read once, each changed one written once."""

    __slots__ = ("store", "tenant", "entries", "changed")

    def __init__(self, store: State, tenant: str):
        self.store, self.tenant = store, tenant
        self.entries: dict[str, InvoiceEntry | None] = {}
        self.changed: dict[str, None] = {}  # ordered set

    def entry(self, invoice_id: str) -> InvoiceEntry | None:
        entry = self.entries.get(invoice_id, _MISSING)
        if entry is _MISSING:
            entry = self.entries[invoice_id] = invoice_of(self.store, self.tenant, invoice_id)
        return entry

    def linked(self, invoice_id: str) -> InvoiceEntry:
        entry = self.entry(invoice_id)
        if entry is None:
            raise ValueError(f"open invoice {invoice_id} is missing from the state")
        return entry

    def set(self, entry: InvoiceEntry) -> None:
        self.entries[entry.invoice_id] = entry
        self.changed[entry.invoice_id] = None

    def write(self) -> tuple[str, ...]:
        put, tenant = self.store.put, self.tenant
        for invoice_id in self.changed:
            entry = self.entries[invoice_id]
            assert entry is not None
            put(INVOICES, invoice_key(tenant, invoice_id), entry.to_dict())
        return tuple(self.changed)


def _adjust(due: tuple[Due, ...], currency: str, before: Decimal | None, after: Decimal | None) -> tuple[Due, ...]:
    """`due` with one open invoice's remaining amount changed from `before` to `after` (None: not open)."""
    at = next((n for n, d in enumerate(due) if d.currency == currency), len(due))
    old = due[at] if at < len(due) else Due(currency, ZERO)
    counts = dict(old.scales)
    amount = old.amount
    if before is not None:
        e = before.as_tuple().exponent
        counts[e] -= 1  # type: ignore[index]
        if not counts[e]:  # type: ignore[index]
            del counts[e]  # type: ignore[arg-type]
        amount -= before
    if after is not None:
        e = after.as_tuple().exponent
        counts[e] = counts.get(e, 0) + 1  # type: ignore[call-overload,index,arg-type]
        amount += after
    if not counts:
        return due[:at] + due[at + 1:]
    amount = amount.quantize(_unit(min(0, *counts)))  # type: ignore[type-var]
    new = Due(currency, amount, tuple(sorted(counts.items())))  # type: ignore[arg-type]
    return due[:at] + (new,) + due[at + 1:]


_Places = list[tuple[str | None, str | None]]


def _place(book: _Book, credit: CreditState, order: tuple[int, str], level: int) -> _Places:
    """Where an invoice ordered `order` goes in lanes 0..`level`: per lane, (after, before), the open
    invoices it goes between (older, newer; None past an end). From the newest end of the top lane
    down: in each lane, walk back from the oldest invoice found newer in the lane above. An invoice
    newer than the newest (in order, the usual case) reads only the newest."""
    heads = (credit.newest, *credit.lanes)
    places: _Places = [(None, None)] * (max(level, len(heads) - 1) + 1)
    if heads[0] is None:
        return places[:level + 1]
    last = book.linked(heads[0])
    if (last.issued_at, last.invoice_id) < order:  # after the newest of every lane
        return [(at, None) for at in heads[:level + 1]] + places[len(heads):level + 1]
    newer: InvoiceEntry | None = None  # the oldest invoice found so far that is newer than `order`
    for k in range(len(heads) - 1, -1, -1):
        at = heads[k] if newer is None else newer.prev_at(k)
        while at is not None:
            cur = book.linked(at)
            if (cur.issued_at, cur.invoice_id) < order:
                break
            newer, at = cur, cur.prev_at(k)
        places[k] = (at, None if newer is None else newer.invoice_id)
    return places[:level + 1]


def _link(book: _Book, credit: CreditState, entry: InvoiceEntry) -> CreditState:
    """Insert an open invoice in its place in the chain and in the express lanes of its level."""
    level = level_of(entry.invoice_id)
    places = _place(book, credit, (entry.issued_at, entry.invoice_id), level)
    (prev, nxt), up = places[0], tuple(places[1:])
    book.set(evolve(entry, prev=prev, next=nxt, up=up))
    heads = [credit.newest, *credit.lanes]
    heads += [None] * (level + 1 - len(heads))
    oldest = credit.oldest
    for k, (after, before) in enumerate(places):
        if after is None:
            if k == 0:
                oldest = entry.invoice_id
        else:
            book.set(book.linked(after).with_next(k, entry.invoice_id))
        if before is None:
            heads[k] = entry.invoice_id
        else:
            book.set(book.linked(before).with_prev(k, entry.invoice_id))
    return evolve(credit, oldest=oldest, newest=heads[0], lanes=_lanes(heads),
                   open_count=credit.open_count + 1)


def _lanes(heads: list[str | None]) -> tuple[str, ...]:
    """The express lanes' newest invoices from lane heads 0..n: up to the top nonempty lane (an empty lane
    has nothing above it: an invoice in a lane is in every lane below)."""
    top = len(heads)
    while top > 1 and heads[top - 1] is None:
        top -= 1
    lanes = tuple(h for h in heads[1:top] if h is not None)
    if len(lanes) != top - 1:
        raise ValueError(f"express lanes of the invoice chain are broken: {heads}")
    return lanes


def _unlink(book: _Book, credit: CreditState, entry: InvoiceEntry) -> CreditState:
    """Take a (now paid-off) invoice out of the chain and its express lanes; it keeps its key, unlinked."""
    heads: list[str | None] = [credit.newest, *credit.lanes]
    if entry.level >= len(heads):
        raise ValueError(f"invoice {entry.invoice_id} is in express lane {entry.level}, above the customer's lanes")
    oldest = credit.oldest
    for k in range(entry.level + 1):
        prev, nxt = entry.prev_at(k), entry.next_at(k)
        if prev is None:
            if k == 0:
                oldest = nxt
        else:
            book.set(book.linked(prev).with_next(k, nxt))
        if nxt is None:
            heads[k] = prev
        else:
            book.set(book.linked(nxt).with_prev(k, prev))
    book.set(evolve(entry, prev=None, next=None, up=()))
    return evolve(credit, oldest=oldest, newest=heads[0], lanes=_lanes(heads), open_count=credit.open_count - 1)


def _settle(book: _Book, credit: CreditState, before: InvoiceEntry, after: InvoiceEntry) -> CreditState:
    """An open invoice paid or credited: its new amounts, out of the chain when nothing is left."""
    still_open = after.is_open
    credit = evolve(credit, due=_adjust(credit.due, before.currency, before.remaining,
                                         after.remaining if still_open else None))
    if still_open:
        book.set(after)
        return credit
    return _unlink(book, credit, after)


# -- operations ---------------------------------------------------------------------------------
def _figures(state: CreditState, amount: Decimal, approved: bool, reason: str | None, message: str) -> CreditCheck:
    return CreditCheck(approved, reason, state.credit_limit, state.outstanding, state.available, amount, message)


def shown_amount(amount: Decimal) -> Decimal:
    """An amount as seed 004's message shows it: 2 decimals when nothing is lost (2000.0000 -> 2000.00)."""
    cents = amount.quantize(Decimal("0.01"))
    return cents if cents == amount else amount.normalize()


def check_order(state: CreditState, order_amount: Decimal) -> CreditCheck:
    """Refused when on hold (CREDIT_HOLD) or when the order exceeds available credit
    (CREDIT_LIMIT_EXCEEDED); an order using exactly what is available is approved."""
    if state.on_hold:
        return _figures(state, order_amount, False, CREDIT_HOLD, f"Customer {state.customer_ref} is on credit hold")
    available = state.available
    if available is not None and order_amount > available:
        shown = shown_amount
        message = f"Insufficient credit. Available: {shown(available)}, Required: {shown(order_amount)}"
        return _figures(state, order_amount, False, CREDIT_LIMIT_EXCEEDED, message)
    return _figures(state, order_amount, True, None, "")


def add_invoice(
    store: State,
    state: CreditState,
    invoice_id: str,
    issued_at: int,
    currency: str,
    total: Decimal,
    due_at: int | None = None,
) -> CreditUpdate:
    """An ON_ACCOUNT invoice becomes outstanding (a fact: never refused): its key is written and,
    when something is due, linked in the customer's chain. An invoice already kept is a no-op."""
    if total < 0:
        raise ValueError(f"invoice total cannot be negative: {total}")
    book = _Book(store, state.tenant_id)
    if book.entry(invoice_id) is not None:
        return CreditUpdate(state, False)
    entry = InvoiceEntry(state.tenant_id, state.customer_ref, invoice_id, issued_at, currency, total,
                         due_at=due_at)
    if entry.is_open:
        state = _link(book, evolve(state, due=_adjust(state.due, currency, None, entry.remaining)), entry)
    else:
        book.set(entry)  # nothing due (a zero total): kept, PAID, never in the chain
    return CreditUpdate(state, True, book.write())


def _refuse(state: CreditState, code: str, reason: str) -> PaymentResult:
    return PaymentResult(state, REFUSED, (), code, reason)


def apply_payment(
    store: State, state: CreditState, amount: Decimal, invoice_id: str | None, currency: str,
    received_at: int | None = None,
) -> PaymentResult:
    """Apply a payment to `invoice_id`, else to the oldest unpaid invoices first (issued_at,
    then id). Paying more than is due (on that invoice, or in total) is refused and nothing
    is applied; so is an unknown (or paid-off, or another customer's) invoice or another currency.
    Reads the named invoice, or walks the chain from the oldest end only as far as the amount goes."""
    if amount <= 0:
        return _refuse(state, INVALID_AMOUNT, f"payment amount must be positive, got {amount}")
    book = _Book(store, state.tenant_id)
    if invoice_id is not None:
        target = book.entry(invoice_id)
        if target is None or target.customer_ref != state.customer_ref or not target.is_open:
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
    else:
        due = state.due_in(currency)
        if amount > due:
            return _refuse(
                state,
                OVERPAYMENT,
                f"payment of {amount} {currency} exceeds the {due} due on customer {state.customer_ref}'s "
                "open invoices",
            )
    left = amount
    allocations: list[Allocation] = []
    at = invoice_id if invoice_id is not None else state.oldest
    while at is not None and left != 0:
        inv = book.linked(at)
        at = None if invoice_id is not None else inv.next
        if inv.currency != currency:
            continue
        take = min(left, inv.remaining)
        new = evolve(inv, paid=inv.paid + take)
        allocations.append(Allocation(inv.invoice_id, take, new.status, new.paid))
        left -= take
        state = _settle(book, state, inv, new)
    if received_at is not None:
        first = state.first_payment_at
        state = evolve(state, first_payment_at=received_at if first is None else min(first, received_at),
                        last_payment_at=max(state.last_payment_at or received_at, received_at))
    return PaymentResult(state, APPLIED, tuple(allocations), invoice_ids=book.write())


def apply_credit_refund(
    store: State, state: CreditState, refund_id: str, invoice_id: str, amount: Decimal
) -> CreditUpdate:
    """A CREDIT refund lowers what is due on `invoice_id`; any excess becomes credit_balance.
    A refund_id already credited to this customer credits nothing again (its RefundMark)."""
    mark = refund_mark_key(state.tenant_id, state.customer_ref, refund_id)
    if store.get(INVOICES, mark) is not None:
        return CreditUpdate(state, False)
    if amount < 0:
        raise ValueError(f"refund amount cannot be negative: {amount}")
    book = _Book(store, state.tenant_id)
    excess = amount
    inv = book.entry(invoice_id)
    if inv is not None and inv.customer_ref == state.customer_ref and inv.is_open:
        take = min(excess, inv.remaining)
        excess -= take
        state = _settle(book, state, inv, evolve(inv, credited=inv.credited + take))
    state = evolve(state, credit_balance=state.credit_balance + excess)
    written = book.write()
    store.put(INVOICES, mark, RefundMark(state.tenant_id, state.customer_ref, refund_id, invoice_id,
                                         written).to_dict())
    return CreditUpdate(state, amount != 0, written)


def set_terms(state: CreditState, credit_limit: Decimal, on_hold: bool, payment_terms_days: int = 0,
              price_list_id: str | None = None) -> CreditUpdate:
    """customer.credit: set the limit (0 = no limit), the hold flag, the payment terms and the price list."""
    if credit_limit < 0:
        raise ValueError(f"credit_limit cannot be negative: {credit_limit}")
    if (credit_limit, on_hold, payment_terms_days, price_list_id) == (
            state.credit_limit, state.on_hold, state.payment_terms_days, state.price_list_id):
        return CreditUpdate(state, False)
    return CreditUpdate(evolve(state, credit_limit=credit_limit, on_hold=on_hold,
                                payment_terms_days=payment_terms_days, price_list_id=price_list_id), True)


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
    days = data.get("payment_terms_days", 0)
    if days is not None and (isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= MAX_TERMS_DAYS):
        reasons.append(f"payment_terms_days must be a whole number of days from 0 to {MAX_TERMS_DAYS}, got {days!r}")
    plist = data.get("price_list_id")
    if plist is not None and not _nonempty_str(plist):
        reasons.append("price_list_id, when given, must not be empty")
    return reasons
