"""Double-entry journal: chart of accounts, entries, and the posting rules of SPEC 2.

Every entry is built through `make_entry`, which merges lines per account,
drops zero lines and refuses to return an entry whose debits and credits
differ by anything at all (exact Decimal equality).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from decimal import Decimal

from .documents import CreditNote, Invoice, Payment, entry_id_for
from .money import ZERO
from .serde import Plain

__all__ = [
    "ACCOUNT_NAMES",
    "Accounts",
    "DEFAULT_ACCOUNTS",
    "JournalLine",
    "JournalEntry",
    "UnbalancedEntry",
    "assert_balanced",
    "make_entry",
    "post_sale",
    "post_payment",
    "post_refund",
]

ACCOUNT_NAMES: Mapping[str, str] = {
    "1000": "Cash",
    "1010": "Card and mobile clearing",
    "1020": "Bank",
    "1100": "Accounts receivable",
    "2100": "Tax payable",
    "4000": "Sales revenue",
    "4010": "Sales returns",
}


@dataclass(frozen=True, slots=True)
class Accounts(Plain):
    """Account code per role; the defaults are SPEC's chart, a tenant may override any role."""

    cash: str = "1000"
    clearing: str = "1010"  # card and mobile
    bank: str = "1020"
    receivable: str = "1100"
    tax_payable: str = "2100"
    revenue: str = "4000"
    returns: str = "4010"

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, str]) -> Accounts:
        """Default chart with some roles replaced, e.g. {"bank": "1030"}; unknown roles are refused."""
        roles = {f.name for f in fields(cls)}
        unknown = set(overrides) - roles
        if unknown:
            raise ValueError(f"unknown account roles {sorted(unknown)}; known: {sorted(roles)}")
        return replace(cls(), **overrides)

    def role_of(self, account: str) -> str | None:
        """The role this chart gives an account code (a valid chart gives each code one role)."""
        return next((f.name for f in fields(self) if getattr(self, f.name) == account), None)

    def for_method(self, method: str) -> str:
        """Where money moves for a payment or refund method (CREDIT = the customer's account)."""
        if method == "CASH":
            return self.cash
        if method in ("CARD", "MOBILE"):
            return self.clearing
        if method == "BANK":
            return self.bank
        if method == "CREDIT":
            return self.receivable
        raise ValueError(f"unknown payment method {method!r}")


DEFAULT_ACCOUNTS = Accounts()


@dataclass(frozen=True, slots=True)
class JournalLine(Plain):
    """One account movement; exactly one of debit and credit is non-zero."""

    account: str
    debit: Decimal
    credit: Decimal
    role: str | None = None  # the account's role in the chart it was posted with (Accounts field name)


@dataclass(frozen=True, slots=True)
class JournalEntry(Plain):
    tenant_id: str
    entry_id: str
    document_id: str
    document_type: str  # invoice / payment / credit_note
    currency: str
    posted_at: int
    lines: tuple[JournalLine, ...]
    description: str | None = None

    @property
    def total_debit(self) -> Decimal:
        return sum((line.debit for line in self.lines), ZERO)

    @property
    def total_credit(self) -> Decimal:
        return sum((line.credit for line in self.lines), ZERO)


class UnbalancedEntry(ValueError):
    """An entry whose debits and credits differ, or with a malformed line: a bug, never data."""


def assert_balanced(entry: JournalEntry) -> JournalEntry:
    """Raise UnbalancedEntry unless debits == credits exactly and every line is one-sided and >= 0."""
    for line in entry.lines:
        if line.debit < 0 or line.credit < 0:
            raise UnbalancedEntry(f"{entry.entry_id}: negative amount on account {line.account}")
        if line.debit and line.credit:
            raise UnbalancedEntry(f"{entry.entry_id}: account {line.account} both debited and credited")
    if entry.total_debit != entry.total_credit:
        raise UnbalancedEntry(
            f"{entry.entry_id}: debits {entry.total_debit} != credits {entry.total_credit}"
        )
    return entry


def make_entry(
    tenant_id: str,
    document_id: str,
    document_type: str,
    currency: str,
    posted_at: int,
    movements: Iterable[tuple[str, Decimal, Decimal]],
    description: str | None = None,
    accounts: Accounts | None = None,
) -> JournalEntry:
    """(account, debit, credit) movements -> a balanced entry, one line per account
    (netted to one side, in order of first appearance), zero lines dropped; each line names its role
    in `accounts` (the chart posted with), so the books reconcile by role whatever the codes."""
    order: list[str] = []
    net: dict[str, Decimal] = {}
    for account, debit, credit in movements:
        if account not in net:
            order.append(account)
            net[account] = ZERO
        net[account] += debit - credit
    def role(account: str) -> str | None:
        return None if accounts is None else accounts.role_of(account)

    lines = tuple(
        JournalLine(a, net[a], ZERO, role(a)) if net[a] > 0 else JournalLine(a, ZERO, -net[a], role(a))
        for a in order
        if net[a] != 0
    )
    entry = JournalEntry(
        tenant_id, entry_id_for(document_id), document_id, document_type, currency, posted_at, lines, description
    )
    return assert_balanced(entry)


def post_sale(invoice: Invoice, payments: Sequence[Payment], accounts: Accounts = DEFAULT_ACCOUNTS) -> JournalEntry:
    """Paid sale: Dr cash/clearing/bank per payment; on account: Dr receivable total.
    Both: Cr revenue net, Cr tax payable tax."""
    if invoice.payment_terms == "ON_ACCOUNT":
        debits = [(accounts.receivable, invoice.total, ZERO)]
    else:
        debits = [(accounts.for_method(p.method), p.amount, ZERO) for p in payments]
    credits = [(accounts.revenue, ZERO, invoice.net_total), (accounts.tax_payable, ZERO, invoice.tax_total)]
    return make_entry(
        invoice.tenant_id,
        invoice.invoice_id,
        "invoice",
        invoice.currency,
        invoice.issued_at,
        debits + credits,
        f"sale {invoice.sale_id}",
        accounts,
    )


def post_payment(payment: Payment, accounts: Accounts = DEFAULT_ACCOUNTS) -> JournalEntry:
    """Payment received on account: Dr cash/clearing/bank, Cr receivable."""
    return make_entry(
        payment.tenant_id,
        payment.payment_id,
        "payment",
        payment.currency,
        payment.received_at,
        [
            (accounts.for_method(payment.method), payment.amount, ZERO),
            (accounts.receivable, ZERO, payment.amount),
        ],
        f"payment from {payment.customer_ref}",
        accounts,
    )


def post_refund(note: CreditNote, accounts: Accounts = DEFAULT_ACCOUNTS) -> JournalEntry:
    """Refund: Dr sales returns net, Dr tax payable tax, Cr cash/clearing/bank, or receivable for CREDIT."""
    return make_entry(
        note.tenant_id,
        note.credit_note_id,
        "credit_note",
        note.currency,
        note.issued_at,
        [
            (accounts.returns, note.net_total, ZERO),
            (accounts.tax_payable, note.tax_total, ZERO),
            (accounts.for_method(note.refund_method), ZERO, note.total),
        ],
        f"refund {note.refund_id} of sale {note.sale_id}",
        accounts,
    )
