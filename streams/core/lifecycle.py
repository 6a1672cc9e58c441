"""The order lifecycle (SPEC 8): an order's lines, reservations, shipments, cancellations and credit hold.

An accepted or held order keeps one `OrderState` in its sale record: per line the quantity ordered,
shipped and cancelled (open = ordered - shipped - cancelled), how the tenant fulfilled it when it was
decided, and the order's state. Everything here is pure: the fold (fold.py) reads the state, asks these
functions, and writes what they answer.

- RESERVE: an accepted order's lines are open and reserved; `order.shipped` moves quantities from open to
  shipped (out of reserved and on_hand); `order.cancelled` moves them from open to cancelled (out of
  reserved). So, per SKU, reserved = the sum of the open quantities of its RESERVE orders.
- IMMEDIATE: an accepted order is deducted at once "as if shipped in full": its lines start shipped
  (nothing open). `order.shipped` is refused (ALREADY_SHIPPED); `order.cancelled` moves quantities from
  shipped to cancelled and returns them to on_hand, as a refund with restock would.

Choices where SPEC 8 is silent:
- Quantities of one SKU in a request are summed and taken from the order's lines of that SKU in line
  order (as refunds do).
- Under RESERVE, cancelling more than is open on a SKU is refused ALREADY_SHIPPED when the shipped
  quantity would cover it (use a refund), else OVER_CANCELLATION. Under IMMEDIATE a cancellation can take
  what is neither cancelled nor refunded yet (OVER_CANCELLATION beyond). A cancellation with nothing left
  to cancel is refused NOTHING_TO_CANCEL.
- Under IMMEDIATE, `order.cancelled` without lines cancels everything neither refunded nor cancelled.
- A held order's cancellation cancels it whole (its lines, if named, are not checked): it ends the order.
- A release that is refused (stock short now) or fails (no price) leaves the order held: it can be released
  again later, or cancelled.
- A PAID order's cancellation is paid back by the method of the order's first payment (one credit note,
  one reversing entry); an ON_ACCOUNT order's lowers the customer's outstanding.
- The order's state: HELD until released; CANCELLED when every unit is cancelled; SHIPPED when nothing is
  open and something was shipped; PARTIALLY_SHIPPED when something was shipped and something is open;
  else ACCEPTED.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .serde import evolve
from .stock import StockResult, StockState

__all__ = [
    "SHIPMENT",
    "CANCELLATION",
    "RELEASE",
    "ORDER_ACCEPTED",
    "HELD",
    "PARTIALLY_SHIPPED",
    "SHIPPED",
    "CANCELLED",
    "ALREADY_SHIPPED",
    "OVER_SHIPMENT",
    "NOT_ACCEPTED",
    "NOT_SHIPPED",
    "NOT_HELD",
    "OVER_CANCELLATION",
    "NOTHING_TO_CANCEL",
    "REASON_SHIPMENT",
    "REASON_RESERVATION",
    "REASON_RELEASE",
    "REASON_CANCELLATION",
    "LIFECYCLE_EVENTS",
    "OrderLine",
    "OrderState",
    "Refusal",
    "reserve",
    "shipment",
    "cancellation",
    "unshipped_refund",
    "validate_order_shipped",
    "validate_order_cancelled",
    "validate_order_released",
]

SHIPMENT, CANCELLATION, RELEASE = "SHIPMENT", "CANCELLATION", "RELEASE"  # sales.outcomes kinds
ORDER_ACCEPTED, HELD, PARTIALLY_SHIPPED, SHIPPED, CANCELLED = (
    "ACCEPTED", "HELD", "PARTIALLY_SHIPPED", "SHIPPED", "CANCELLED")
ALREADY_SHIPPED = "ALREADY_SHIPPED"
OVER_SHIPMENT = "OVER_SHIPMENT"
NOT_ACCEPTED = "NOT_ACCEPTED"
NOT_SHIPPED = "NOT_SHIPPED"
NOT_HELD = "NOT_HELD"
OVER_CANCELLATION = "OVER_CANCELLATION"
NOTHING_TO_CANCEL = "NOTHING_TO_CANCEL"
# stock.levels reasons
REASON_SHIPMENT = "SHIPMENT"  # shipped: out of reserved and on_hand
REASON_RESERVATION = "RESERVATION"  # an accepted RESERVE order's lines into reserved
REASON_RELEASE = "RELEASE"  # a RESERVE order's cancelled open quantities out of reserved
REASON_CANCELLATION = "CANCELLATION"  # an IMMEDIATE order's cancelled quantities back into on_hand
LIFECYCLE_EVENTS = ("order.shipped", "order.cancelled", "order.released")


@dataclass(frozen=True, slots=True)
class OrderLine:
    line_no: int
    sku: str
    ordered: int
    shipped: int = 0
    cancelled: int = 0

    @property
    def open(self) -> int:
        return self.ordered - self.shipped - self.cancelled


@dataclass(frozen=True, slots=True)
class Refusal:
    code: str
    message: str
    sku: str | None = None
    requested: int | None = None
    available: int | None = None


@dataclass(frozen=True, slots=True)
class OrderState:
    """An order's lines and state (kept in its sale record; bounded by its number of lines)."""

    fulfilment: str  # IMMEDIATE / RESERVE, as the tenant's setting was when the order was decided
    lines: tuple[OrderLine, ...]
    held: bool = False
    refund_method: str | None = None  # how a PAID order's cancellation pays back (its first payment's method)
    request: Mapping[str, Any] | None = None  # a held order's order.placed `data` (JSON-plain), decided on release

    @classmethod
    def placed(cls, fulfilment: str, lines: tuple[tuple[str, int], ...], *, held: bool = False,
               refund_method: str | None = None, request: Mapping[str, Any] | None = None) -> OrderState:
        """A newly decided order: RESERVE (or held) lines open, IMMEDIATE lines shipped in full."""
        shipped = fulfilment != "RESERVE" and not held
        return cls(fulfilment, tuple(OrderLine(n, sku, qty, qty if shipped else 0)
                                     for n, (sku, qty) in enumerate(lines, 1)), held, refund_method, request)

    @property
    def reserves(self) -> bool:
        return self.fulfilment == "RESERVE"

    @property
    def state(self) -> str:
        if self.held:
            return HELD
        ordered = sum(li.ordered for li in self.lines)
        shipped = sum(li.shipped for li in self.lines)
        cancelled = sum(li.cancelled for li in self.lines)
        if cancelled == ordered:
            return CANCELLED
        if shipped and ordered - shipped - cancelled == 0:
            return SHIPPED
        return PARTIALLY_SHIPPED if shipped else ORDER_ACCEPTED

    def by_sku(self, what: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for li in self.lines:
            out[li.sku] = out.get(li.sku, 0) + getattr(li, what)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"fulfilment": self.fulfilment, "held": self.held, "refund_method": self.refund_method,
                "lines": [[li.line_no, li.sku, li.ordered, li.shipped, li.cancelled] for li in self.lines],
                "request": self.request}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OrderState:
        return cls(data["fulfilment"], tuple(OrderLine(*row) for row in data["lines"]), data.get("held", False),
                   data.get("refund_method"), data.get("request"))

    def view(self) -> dict[str, Any]:
        """The sale view's `order`: its state and each line's ordered, shipped, cancelled and open."""
        return {"state": self.state, "fulfilment": self.fulfilment,
                "lines": [{"line_no": li.line_no, "sku": li.sku, "ordered": li.ordered, "shipped": li.shipped,
                           "cancelled": li.cancelled, "open": li.open} for li in self.lines]}


def _requested(lines: Any) -> dict[str, int]:
    wanted: dict[str, int] = {}
    for line in lines:
        wanted[line["sku"]] = wanted.get(line["sku"], 0) + line["quantity"]
    return wanted


def _take(order: OrderState, wanted: Mapping[str, int], source: str, target: str) -> OrderState:
    """Move each SKU's wanted quantity from `source` (open / shipped) to `target` on its lines, in line order."""
    left = dict(wanted)
    new = []
    for li in order.lines:
        want = left.get(li.sku, 0)
        have = li.open if source == "open" else li.shipped
        take = min(want, have)
        if take:
            left[li.sku] = want - take
            changes = {target: getattr(li, target) + take}
            if source == "shipped":
                changes["shipped"] = li.shipped - take
            li = evolve(li, **changes)
        new.append(li)
    return evolve(order, lines=tuple(new))


def reserve(state: StockState, qty: int, ts: int, event_id: str, location_id: str | None,
            reason: str) -> StockResult:
    """Move `qty` (negative: release) into reserved; on_hand unchanged, available moves the other way."""
    reserved = state.reserved + qty
    if reserved < 0:
        raise ValueError(f"sku {state.sku}: reserved would go below zero ({state.reserved} {qty:+d})")
    return StockResult(evolve(state, reserved=reserved, updated_at=ts, last_event_id=event_id,
                               location_id=location_id, reason=reason), True)


def shipment(order: OrderState | None, accepted: bool, lines: Any) -> tuple[OrderState, dict[str, int]] | Refusal:
    """An order.shipped's lines against its order: the order after it and what leaves per SKU, or why not."""
    if order is None or not accepted:
        return Refusal(NOT_ACCEPTED, "the order is not accepted (unknown, refused, held or failed); nothing shipped")
    if not order.reserves:
        if order.held:
            return Refusal(NOT_ACCEPTED, "the order is held; release it first")
        return Refusal(ALREADY_SHIPPED, "the order was fulfilled IMMEDIATE: shipped in full when it was accepted")
    if order.held:
        return Refusal(NOT_ACCEPTED, "the order is held; release it first")
    wanted = _requested(lines)
    open_ = order.by_sku("open")
    over = [(sku, qty) for sku, qty in wanted.items() if qty > open_.get(sku, 0)]
    if over:
        sku, qty = over[0]
        return Refusal(OVER_SHIPMENT, f"sku {sku}: shipping {qty} but {open_.get(sku, 0)} is still reserved "
                                      f"for this order", sku, qty, open_.get(sku, 0))
    return _take(order, wanted, "open", "shipped"), wanted


def cancellation(order: OrderState | None, accepted: bool, lines: Any,
                 refunded: Mapping[str, int]) -> tuple[OrderState, dict[str, int]] | Refusal:
    """An order.cancelled against its order (`refunded`: units already refunded per SKU, refunds only):
    the order after it and the cancelled quantity per SKU, or why not."""
    if order is None or not (accepted or order.held):
        return Refusal(NOT_ACCEPTED, "the order is not accepted (unknown, refused or failed); nothing to cancel")
    if order.held:  # "order.cancelled ends it": a held order is cancelled whole, whatever lines are named
        wanted = {sku: qty for sku, qty in order.by_sku("open").items() if qty > 0}
        return evolve(_take(order, wanted, "open", "cancelled"), held=False, request=None), wanted
    source = "open" if order.reserves else "shipped"
    have = order.by_sku(source)
    if source == "shipped":
        have = {sku: qty - refunded.get(sku, 0) for sku, qty in have.items()}
    if lines is None:
        wanted = {sku: qty for sku, qty in have.items() if qty > 0}
        if not wanted:
            return Refusal(NOTHING_TO_CANCEL, f"nothing is left to cancel (order {order.state})")
    else:
        wanted = _requested(lines)
        for sku, qty in wanted.items():
            if qty > have.get(sku, 0):
                shipped = order.by_sku("shipped").get(sku, 0)
                code = ALREADY_SHIPPED if source == "open" and qty <= have.get(sku, 0) + shipped \
                    else OVER_CANCELLATION
                why = " (shipped quantities are refunded, not cancelled)" if code == ALREADY_SHIPPED else ""
                return Refusal(code, f"sku {sku}: cancelling {qty} but {have.get(sku, 0)} can be cancelled{why}",
                               sku, qty, have.get(sku, 0))
    return _take(order, wanted, source, "cancelled"), wanted


def unshipped_refund(order: OrderState, lines: Any, refunded: Mapping[str, int]) -> Refusal | None:
    """RESERVE: a refund counts against shipped quantities only (NOT_SHIPPED beyond them: cancel instead)."""
    if not order.reserves:
        return None
    shipped = order.by_sku("shipped")
    for sku, qty in _requested(lines).items():
        left = shipped.get(sku, 0) - refunded.get(sku, 0)
        if qty > left:
            return Refusal(NOT_SHIPPED, f"sku {sku}: refund of {qty} but {left} shipped and not yet refunded "
                                        f"(cancel what was not shipped)", sku, qty, left)
    return None


def _lines(data: Mapping[str, Any], reasons: list[str], required: bool) -> None:
    lines = data.get("lines")
    if lines is None:
        if required:
            reasons.append("lines is empty")
        return
    if not isinstance(lines, (list, tuple)) or not lines:
        reasons.append("lines is empty")
        return
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


def _ids(data: Mapping[str, Any], names: tuple[str, ...], reasons: list[str]) -> None:
    for name in names:
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            reasons.append(f"{name} is missing or empty")


def validate_order_shipped(data: Mapping[str, Any]) -> list[str]:
    reasons: list[str] = []
    _ids(data, ("sale_id", "shipment_id"), reasons)
    _lines(data, reasons, True)
    return reasons


def validate_order_cancelled(data: Mapping[str, Any]) -> list[str]:
    reasons: list[str] = []
    _ids(data, ("sale_id", "cancellation_id"), reasons)
    _lines(data, reasons, False)
    return reasons


def validate_order_released(data: Mapping[str, Any]) -> list[str]:
    reasons: list[str] = []
    _ids(data, ("sale_id", "released_by"), reasons)
    return reasons
