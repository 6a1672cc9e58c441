"""Refunds: check a refund against what its sale sold, price it, and book the credit note.

SPEC 2: a refund line is priced like its sale line on the refunded quantity
(same unit price, discount, tax rate, rounding), except that the refund
returning the last units of a sale line takes exactly what is left of that
line's net and tax, so a full refund reverses the sale to the cent.

Choices where SPEC is silent:
- A sale with several lines of one SKU: a refund's quantity for that SKU is
  taken from those lines in line order; refund lines of one SKU are summed.
- A partial refund never takes more than what is left of a line's net or tax
  (rounding up over several small refunds could otherwise overshoot, leaving
  a negative last refund); the last units still take exactly the remainder.
- A refund_id already refunded on this sale is refused (DUPLICATE_REFUND);
  refund_method CREDIT needs a customer on the sale (NO_CUSTOMER, SPEC 2): the
  store credit must belong to someone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .documents import CreditNote, CreditNoteLine, Invoice, credit_note_id_for
from .journal import DEFAULT_ACCOUNTS, Accounts, JournalEntry, post_refund
from .money import ZERO, round_money
from .pricing import line_net, line_tax
from .serde import Plain

__all__ = [
    "OVER_REFUND",
    "UNKNOWN_SALE",
    "DUPLICATE_REFUND",
    "INVALID_REFUND_METHOD",
    "NO_CUSTOMER",
    "REFUND_METHODS",
    "RefundLine",
    "RefundRequest",
    "LineRefunded",
    "RefundState",
    "RefundRefusal",
    "RefundError",
    "RefundBooking",
    "book_refund",
    "validate_refund",
]

OVER_REFUND = "OVER_REFUND"
UNKNOWN_SALE = "UNKNOWN_SALE"
DUPLICATE_REFUND = "DUPLICATE_REFUND"
INVALID_REFUND_METHOD = "INVALID_REFUND_METHOD"  # before SPEC 2's amendment; now NO_CUSTOMER
NO_CUSTOMER = "NO_CUSTOMER"
REFUND_METHODS = frozenset({"CASH", "CARD", "MOBILE", "BANK", "CREDIT"})


@dataclass(frozen=True, slots=True)
class RefundLine(Plain):
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class RefundRequest(Plain):
    """A refund.issued event's data."""

    refund_id: str
    sale_id: str
    lines: tuple[RefundLine, ...]
    restock: bool
    refund_method: str
    reason: str | None = None

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> RefundRequest:
        """From the event's `data`; call validate_refund first."""
        return cls(
            refund_id=data["refund_id"],
            sale_id=data["sale_id"],
            lines=tuple(RefundLine(li["sku"], li["quantity"]) for li in data["lines"]),
            restock=data["restock"],
            refund_method=data["refund_method"],
            reason=data.get("reason"),
        )


@dataclass(frozen=True, slots=True)
class LineRefunded(Plain):
    """What has been refunded so far of one invoice line."""

    line_no: int
    quantity: int
    net: Decimal
    tax: Decimal


@dataclass(frozen=True, slots=True)
class RefundState(Plain):
    """Refunds accepted on one sale (kept next to the sale's invoice by the shell)."""

    refunded: tuple[LineRefunded, ...] = ()
    refund_ids: tuple[str, ...] = ()

    def of_line(self, line_no: int) -> LineRefunded:
        for r in self.refunded:
            if r.line_no == line_no:
                return r
        return LineRefunded(line_no, 0, ZERO, ZERO)


@dataclass(frozen=True, slots=True)
class RefundRefusal(Plain):
    """One SKU that cannot be refunded as asked."""

    sku: str
    requested: int
    refundable: int  # sold on the sale minus already refunded
    message: str


@dataclass(frozen=True, slots=True)
class RefundError(Plain):
    code: str  # OVER_REFUND / UNKNOWN_SALE / DUPLICATE_REFUND / NO_CUSTOMER
    reason: str
    lines: tuple[RefundRefusal, ...] = ()


@dataclass(frozen=True, slots=True)
class RefundBooking(Plain):
    credit_note: CreditNote
    journal: JournalEntry
    state: RefundState  # the sale's refund state after this refund
    restock: tuple[tuple[str, int], ...]  # (sku, quantity) to add back; empty unless restock


def _requested(refund: RefundRequest) -> dict[str, int]:
    """Quantity asked per SKU, refund lines of one SKU summed, first-appearance order."""
    wanted: dict[str, int] = {}
    for line in refund.lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    return wanted


def _over_refunds(invoice: Invoice, state: RefundState, wanted: dict[str, int]) -> tuple[RefundRefusal, ...]:
    refusals = []
    for sku, qty in wanted.items():
        lines = [li for li in invoice.lines if li.sku == sku]
        sold = sum(li.quantity for li in lines)
        done = sum(state.of_line(li.line_no).quantity for li in lines)
        if qty > sold - done:
            if sold:
                message = (
                    f"sku {sku}: refund of {qty} exceeds the {sold - done} still refundable "
                    f"({sold} sold, {done} already refunded)"
                )
            else:
                message = f"sku {sku}: refund of {qty} but sale {invoice.sale_id} sold none"
            refusals.append(RefundRefusal(sku, qty, sold - done, message))
    return tuple(refusals)


def book_refund(
    invoice: Invoice | None,
    state: RefundState,
    refund: RefundRequest,
    issued_at: int,
    accounts: Accounts = DEFAULT_ACCOUNTS,
) -> RefundBooking | RefundError:
    """Price a refund against its sale's invoice and earlier refunds; the credit note
    CN-<refund_id>, its reversing entry, and the sale's new refund state.

    `invoice` is None when the sale is unknown or was refused: UNKNOWN_SALE.
    """
    if invoice is None:
        return RefundError(UNKNOWN_SALE, f"sale {refund.sale_id} is unknown or was refused")
    if invoice.sale_id != refund.sale_id:
        raise ValueError(f"refund of sale {refund.sale_id} checked against invoice of {invoice.sale_id}")
    if refund.refund_id in state.refund_ids:
        return RefundError(DUPLICATE_REFUND, f"refund {refund.refund_id} was already applied to sale {refund.sale_id}")
    if refund.refund_method == "CREDIT" and not invoice.customer_ref:
        return RefundError(
            NO_CUSTOMER, f"refund_method CREDIT needs a customer, and sale {refund.sale_id} has none"
        )
    wanted = _requested(refund)
    refusals = _over_refunds(invoice, state, wanted)
    if refusals:
        return RefundError(OVER_REFUND, "; ".join(r.message for r in refusals), refusals)

    currency = invoice.currency
    cn_lines: list[CreditNoteLine] = []
    after: dict[int, LineRefunded] = {r.line_no: r for r in state.refunded}
    for sku, qty in wanted.items():
        left = qty
        for li in invoice.lines:
            if li.sku != sku or left == 0:
                continue
            done = state.of_line(li.line_no)
            take = min(left, li.quantity - done.quantity)
            if take == 0:
                continue
            net_left, tax_left = li.net - done.net, li.tax - done.tax
            if done.quantity + take == li.quantity:
                net, tax = net_left, tax_left
            else:
                net = min(line_net(take, li.unit_price, li.discount_percent, currency), net_left)
                tax = min(line_tax(net, li.tax_percent, currency), tax_left)
            cn_lines.append(
                CreditNoteLine(
                    li.line_no, sku, take, li.unit_price, li.discount_percent, li.tax_percent, net, tax, net + tax,
                    li.price_source, li.price_list_id,
                )
            )
            after[li.line_no] = LineRefunded(li.line_no, done.quantity + take, done.net + net, done.tax + tax)
            left -= take
    cn_lines.sort(key=lambda c: c.line_no)
    net_total = round_money(sum((c.net for c in cn_lines), ZERO), currency)
    tax_total = round_money(sum((c.tax for c in cn_lines), ZERO), currency)
    note = CreditNote(
        tenant_id=invoice.tenant_id,
        credit_note_id=credit_note_id_for(refund.refund_id),
        refund_id=refund.refund_id,
        sale_id=refund.sale_id,
        invoice_id=invoice.invoice_id,
        currency=currency,
        refund_method=refund.refund_method,
        restock=refund.restock,
        issued_at=issued_at,
        lines=tuple(cn_lines),
        net_total=net_total,
        tax_total=tax_total,
        total=net_total + tax_total,
    )
    new_state = RefundState(
        refunded=tuple(after[k] for k in sorted(after)),
        refund_ids=state.refund_ids + (refund.refund_id,),
    )
    restock = tuple(wanted.items()) if refund.restock else ()
    return RefundBooking(note, post_refund(note, accounts), new_state, restock)


def validate_refund(data: Mapping[str, Any]) -> list[str]:
    """Readable reasons why a refund.issued `data` breaks the rules; empty when valid."""
    reasons: list[str] = []
    for name in ("refund_id", "sale_id"):
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            reasons.append(f"{name} is missing or empty")
    lines = data.get("lines")
    if not isinstance(lines, (list, tuple)) or not lines:
        reasons.append("lines is empty")
    else:
        for n, line in enumerate(lines, 1):
            if not isinstance(line, Mapping):
                reasons.append(f"line {n}: not a record")
                continue
            sku = line.get("sku")
            if not isinstance(sku, str) or not sku.strip():
                reasons.append(f"line {n}: sku is missing or empty")
            qty = line.get("quantity")
            if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
                reasons.append(f"line {n}: quantity must be a positive integer, got {qty!r}")
    if data.get("refund_method") not in REFUND_METHODS:
        reasons.append(
            f"refund_method must be one of CASH, CARD, MOBILE, BANK, CREDIT, got {data.get('refund_method')!r}"
        )
    if not isinstance(data.get("restock"), bool):
        reasons.append(f"restock must be true or false, got {data.get('restock')!r}")
    return reasons
