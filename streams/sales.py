"""Sales, refunds, payments and credit: the order saga across SKU, sale and customer partitions.

Stock is keyed by SKU, credit by customer and the sale by sale_id, so a sale crosses partitions.
It runs as a saga over three internal topics; every step is idempotent and every message may
arrive twice:

    sales ──RESERVE──> sku-commands (per SKU: hold the quantity, answer with catalog facts)
          <─STOCK───── sale-replies
          ──HOLD─────> credit-commands (ON_ACCOUNT orders: hold the amount on the customer's credit)
          <─CREDIT──── sale-replies
          ──COMMIT / RELEASE──> sku-commands, credit-commands

A POS sale reserves unconditionally (it already happened) and commits; a web/ERP order reserves
only available stock and is refused as a whole when a line or the credit says no, releasing every
hold. Holds are recorded by hold id inside the SKU's and the customer's state, so a repeated
reserve, commit or release changes nothing. The sale record in the `sales` table remembers the
decision and the documents it produced: a redelivered message that finds the sale decided sends the
same outputs again (deterministic ids; the sink writes each document once), so nothing a crash
interrupted is lost.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import asdict
from decimal import Decimal
from typing import Any

from faust.types import EventT

from streams.app import Pipeline
from streams.codec import local_schema
from streams.core import credit as cr
from streams.core import stock as sk
from streams.core.idempotency import fingerprint
from streams.core.ledger import LedgerError, book_payment, book_sale
from streams.core.orders import StockAnswer, check_lines
from streams.core.pricing import CatalogItem, PricingError, price_lines
from streams.core.refunds import RefundError, RefundRequest, RefundState, book_refund, validate_refund
from streams.core.sales import ON_ACCOUNT, Sale, validate_sale
from streams.core.serde import from_plain, to_plain
from streams.jsonconv import compile_from_json, epoch_millis, to_json
from streams.stock import StockShell

log = logging.getLogger("stockledger.sales")

PENDING_STOCK, PENDING_CREDIT = "PENDING_STOCK", "PENDING_CREDIT"
ACCEPTED, REFUSED, FAILED = "ACCEPTED", "REFUSED", "FAILED"
_CONVERTERS: dict[str, Any] = {}


def _avro(topic: str, value: dict) -> dict:
    """A stored JSON output back to its Avro datum (decimals from text), validated by its schema."""
    from stockledger.topics import spec

    conv = _CONVERTERS.get(topic)
    if conv is None:
        conv = _CONVERTERS[topic] = compile_from_json(local_schema(spec(topic).schema))
    return conv(value, "")


def _out(topic: str, tenant: str, doc_id: str, doc: Any) -> list:
    return [topic, f"{tenant}:{doc_id}", to_json(asdict(doc) if not isinstance(doc, dict) else doc)]


def outcome_record(tenant: str, kind: str, ident: str, event_id: str, outcome: str, *, sale_id: str | None = None,
                   customer_ref: str | None = None, reasons: list | None = None, credit: dict | None = None,
                   documents: list | None = None, total: Decimal | None = None, currency: str | None = None,
                   decided_at: int | None = None) -> dict:
    return to_json({
        "tenant_id": tenant, "kind": kind, "id": ident, "sale_id": sale_id, "customer_ref": customer_ref,
        "event_id": event_id, "outcome": outcome, "reasons": reasons or [], "credit": credit,
        "document_ids": documents or [], "total": total, "currency": currency,
        "decided_at": decided_at if decided_at is not None else int(time.time() * 1000),
    })


def reason(code: str, message: str, sku: str | None = None, requested: int | None = None,
           available: int | None = None) -> dict:
    return {"sku": sku, "code": code, "message": message, "requested": requested, "available": available}


class SalesShell:
    def __init__(self, p: Pipeline, stock: StockShell):
        self.p = p
        self.stock = stock
        self.sales = p.table("sales")
        self.credit = p.table("credit")
        self.payments = p.table("payments")  # payment outputs by payment id, in the customer's partition
        self.sku_commands = p.internal_topic("sku-commands")
        self.sale_replies = p.internal_topic("sale-replies")
        self.credit_commands = p.internal_topic("credit-commands")

    # -- outputs ------------------------------------------------------------------------------
    async def send_outputs(self, outputs: list) -> None:
        for topic, key, value in outputs:
            await self.p.emit(topic, key, _avro(topic, value))

    async def send_commands(self, commands: list) -> None:
        for target, key, value in commands:
            topic = {"sku": self.sku_commands, "credit": self.credit_commands, "sale": self.sale_replies}[target]
            await topic.send(key=key, value=value)

    async def dead_letter_stored(self, raw: dict, error: str) -> None:
        """A sale found broken only after the saga began (no price, payment mismatch): its stored bytes."""
        record = {"key": raw["key"].encode(), "value": base64.b64decode(raw["value"]), "topic": raw["topic"],
                  "partition": raw["partition"], "offset": raw["offset"], "error": error, "stage": "rule",
                  "failed_at": int(time.time() * 1000)}
        self.p.metrics.dead_lettered[raw["topic"]] += 1
        await self.p.topic(raw["topic"] + ".dlq").send(key=raw["key"], value=self.p.codec.encode(
            raw["topic"] + ".dlq", record))

    # -- credit state -------------------------------------------------------------------------
    def credit_state(self, tenant: str, customer: str) -> cr.CreditState:
        raw = self.credit.get(f"{tenant}:{customer}")
        return cr.CreditState(tenant, customer) if raw is None else cr.CreditState.from_dict(raw)

    def store_credit(self, state: cr.CreditState) -> None:
        self.credit[f"{state.tenant_id}:{state.customer_ref}"] = state.to_dict()


def install(p: Pipeline, stock: StockShell) -> SalesShell:
    shell = SalesShell(p, stock)

    @p.app.agent(p.topic("sales"), name="sales")
    async def sales(stream: Any) -> None:
        async for event in stream.events():
            await handle_sale(shell, event)

    @p.app.agent(p.topic("refunds"), name="refunds")
    async def refunds(stream: Any) -> None:
        async for event in stream.events():
            await handle_refund(shell, event)

    @p.app.agent(p.topic("payments"), name="payments")
    async def payments(stream: Any) -> None:
        async for event in stream.events():
            await handle_payment(shell, event)

    @p.app.agent(p.topic("customers"), name="customers")
    async def customers(stream: Any) -> None:
        async for event in stream.events():
            await handle_customer(shell, event)

    @p.app.agent(shell.sku_commands, name="sku-commands")
    async def sku_commands(stream: Any) -> None:
        async for event in stream.events():
            p.track(event)
            await handle_sku_command(shell, event.value)

    @p.app.agent(shell.sale_replies, name="sale-replies")
    async def sale_replies(stream: Any) -> None:
        async for event in stream.events():
            p.track(event)
            await handle_sale_reply(shell, event.value)

    @p.app.agent(shell.credit_commands, name="credit-commands")
    async def credit_commands(stream: Any) -> None:
        async for event in stream.events():
            p.track(event)
            await handle_credit_command(shell, event.value)

    return shell


# -- sales --------------------------------------------------------------------------------------
def _raw(event: EventT) -> dict:
    msg = event.message
    return {"key": msg.key.decode() if isinstance(msg.key, bytes) else str(msg.key),
            "value": base64.b64encode(msg.value).decode(), "topic": msg.topic, "partition": msg.partition,
            "offset": msg.offset}


async def handle_sale(shell: SalesShell, event: EventT) -> None:
    p = shell.p
    record = await p.admit(event, ("sale.completed", "order.placed"), validate_sale)
    if record is None:
        return
    data = record["data"]
    tenant, event_id, ts = record["tenant_id"], record["event_id"], epoch_millis(record["timestamp"])
    key = f"{tenant}:{data['sale_id']}"
    fp = fingerprint(record["event_type"], tenant, data)
    rec = shell.sales.get(key)
    if rec is not None:
        if rec["event_id"] == event_id and rec["fp"] == fp:
            p.metrics.duplicates["sales"] += 1
            await resend(shell, rec)
        else:
            why = (f"sale {data['sale_id']} was already received as event {rec['event_id']}"
                   if rec["event_id"] != event_id else f"event_id {event_id} was used before with different content")
            await shell.send_outputs([["sales.outcomes", key, outcome_record(
                tenant, "SALE", data["sale_id"], event_id, "IDEMPOTENCY_CONFLICT", sale_id=data["sale_id"],
                customer_ref=data.get("customer_ref"), reasons=[reason("IDEMPOTENCY_CONFLICT", why)])]])
        return
    sale = Sale.from_event(tenant, data)
    kind = "POS" if record["event_type"] == "sale.completed" else "ORDER"
    wanted: dict[str, int] = {}
    for line in sale.lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    rec = {"tenant_id": tenant, "sale_id": sale.sale_id, "event_id": event_id, "fp": fp, "kind": kind, "ts": ts,
           "sale": to_plain(sale), "status": PENDING_STOCK, "wanted": wanted, "answers": {}, "credit": None,
           "outputs": [], "commands": [], "raw": _raw(event), "refunds": to_plain(RefundState()),
           "refund_results": {}, "parked_refunds": [], "invoice": None}
    rec["pending"] = [["sku", f"{tenant}:{sku}", {
        "op": "RESERVE", "tenant_id": tenant, "sku": sku, "qty": qty, "hold_id": f"sale:{sale.sale_id}",
        "force": kind == "POS", "sale_id": sale.sale_id, "ts": ts, "event_id": event_id,
        "location_id": sale.location_id}] for sku, qty in wanted.items()]
    shell.sales[key] = rec
    await shell.send_commands(rec["pending"])


async def resend(shell: SalesShell, rec: dict) -> None:
    """A redelivered message for a sale: send again what its current state sent (all idempotent)."""
    if rec["status"] in (PENDING_STOCK, PENDING_CREDIT):
        await shell.send_commands(rec["pending"])
    else:
        await shell.send_commands(rec["commands"])
        await shell.send_outputs(rec["outputs"])


def _sku_reply(cmd: dict, **answer: Any) -> list:
    return ["sale", f"{cmd['tenant_id']}:{cmd['sale_id']}", {"type": "STOCK", "sale_id": cmd["sale_id"],
                                                            "tenant_id": cmd["tenant_id"], "sku": cmd["sku"],
                                                            **answer}]


async def handle_sku_command(shell: SalesShell, cmd: dict) -> None:
    """Runs in the SKU's partition: holds, commits, releases and restocks, each idempotent."""
    tenant, sku = cmd["tenant_id"], cmd["sku"]
    key = f"{tenant}:{sku}"
    op = cmd["op"]
    if op == "RESTOCK":
        fp = fingerprint("refund.restock", tenant, {"sku": sku, "qty": cmd["qty"]})
        await shell.stock.apply(tenant, sku, cmd["event_id"], fp,
                                lambda s: sk.apply_delta(s, cmd["qty"], cmd["ts"], cmd["event_id"],
                                                         cmd.get("location_id"), kind=sk.RESTOCK))
        return
    hold_id = cmd["hold_id"]
    state = shell.stock.hold_state(tenant, sku, hold_id)
    if op == "RESERVE":
        catalog = shell.stock.catalog.get(key)
        known, active = catalog is not None, bool(catalog and catalog["is_active"])
        available = state.available
        if cmd["force"]:
            result = sk.reserve(state, cmd["qty"], hold_id)
            new, ok = result.state, True
        elif known and active:
            new, ok = sk.try_reserve(state, cmd["qty"], hold_id)
        else:
            new, ok = state, False
        if new is not state:
            shell.stock.store_hold_state(new, hold_id)
            await shell.stock.publish_level(new)
        await shell.send_commands([_sku_reply(
            cmd, known=known, active=active, available=available, ok=ok,
            price=catalog["price"] if catalog else None, tax_rate=catalog["tax_rate"] if catalog else None)])
        return
    if op == "COMMIT":
        result = sk.commit_reservation(state, hold_id, cmd["ts"], cmd["event_id"], cmd.get("location_id"),
                                       qty=cmd.get("qty"))
    elif op == "RELEASE":
        result = sk.release(state, hold_id)
    else:
        log.error("unknown sku command %r", op)
        return
    if result.state is not state:
        shell.stock.store_hold_state(result.state, hold_id)
    if result.changed:
        await shell.stock.publish_level(result.state)
    for alert in result.alerts:
        await shell.p.emit("inventory.alerts", key, asdict(alert))


def _stock_commands(rec: dict, op: str) -> list:
    tenant = rec["tenant_id"]
    return [["sku", f"{tenant}:{sku}", {"op": op, "tenant_id": tenant, "sku": sku, "hold_id": f"sale:{rec['sale_id']}",
                                        "qty": qty, "sale_id": rec["sale_id"], "ts": rec["ts"],
                                        "event_id": rec["event_id"], "location_id": rec["sale"].get("location_id")}]
            for sku, qty in rec["wanted"].items()]


async def handle_sale_reply(shell: SalesShell, reply: dict) -> None:
    """Runs in the sale's partition: collects the SKU and credit answers and decides."""
    key = f"{reply['tenant_id']}:{reply['sale_id']}"
    rec = shell.sales.get(key)
    if rec is None:
        log.error("reply for unknown sale %s", key)
        return
    if reply["type"] == "STOCK":
        if rec["status"] != PENDING_STOCK or reply["sku"] in rec["answers"]:
            if rec["status"] not in (PENDING_STOCK, PENDING_CREDIT):
                await resend(shell, rec)  # decided before a crash: its outputs may not have left
            return
        rec = {**rec, "answers": {**rec["answers"], reply["sku"]: reply}}
        if len(rec["answers"]) < len(rec["wanted"]):
            shell.sales[key] = rec
            return
        await decide_after_stock(shell, key, rec)
    elif reply["type"] == "CREDIT":
        if rec["status"] != PENDING_CREDIT:
            if rec["status"] != PENDING_STOCK:
                await resend(shell, rec)
            return
        await decide_after_credit(shell, key, rec, reply)


def _catalog_lookup(rec: dict):
    def lookup(sku: str) -> CatalogItem | None:
        a = rec["answers"].get(sku)
        if not a or not a["known"] or a["price"] is None:
            return None
        return CatalogItem(sku, Decimal(a["price"]), None if a["tax_rate"] is None else Decimal(a["tax_rate"]),
                           a["active"])
    return lookup


async def decide_after_stock(shell: SalesShell, key: str, rec: dict) -> None:
    sale = from_plain(Sale, rec["sale"])
    default_tax = Decimal(shell.p.settings.tenant_default_tax)
    if rec["kind"] == "ORDER":
        answers = {sku: StockAnswer(sku, a["known"], a["active"], a["available"]) for sku, a in rec["answers"].items()}
        refusals = check_lines(sale.lines, answers)
        if refusals:
            reasons = [reason(r.code, r.message, r.sku, r.requested, r.available) for r in refusals]
            await finish(shell, key, rec, REFUSED, reasons=reasons)
            return
    priced = price_lines(sale.lines, sale.currency, _catalog_lookup(rec), default_tax)
    if isinstance(priced, PricingError):
        await fail(shell, key, rec, f"{priced.code}: {priced.reason}")
        return
    if rec["kind"] == "ORDER" and sale.payment_terms == ON_ACCOUNT:
        rec = {**rec, "status": PENDING_CREDIT, "priced": to_plain(priced)}
        rec["pending"] = [["credit", f"{sale.tenant_id}:{sale.customer_ref}", {
            "op": "HOLD", "tenant_id": sale.tenant_id, "customer_ref": sale.customer_ref,
            "hold_id": f"sale:{sale.sale_id}", "amount": str(priced.total), "sale_id": sale.sale_id}]]
        shell.sales[key] = rec
        await shell.send_commands(rec["pending"])
        return
    await book(shell, key, rec, sale, priced)


async def decide_after_credit(shell: SalesShell, key: str, rec: dict, reply: dict) -> None:
    sale = from_plain(Sale, rec["sale"])
    from streams.core.pricing import PricedSale

    priced = from_plain(PricedSale, rec["priced"])
    figures = {k: reply[k] for k in ("credit_limit", "outstanding", "available", "order_amount")}
    if not reply["approved"]:
        await finish(shell, key, {**rec, "credit": figures}, REFUSED,
                     reasons=[reason(reply["reason"] or "CREDIT_REFUSED", reply["message"])], credit=figures)
        return
    await book(shell, key, {**rec, "credit": figures}, sale, priced)


async def book(shell: SalesShell, key: str, rec: dict, sale: Sale, priced: Any) -> None:
    booking = book_sale(sale, priced, rec["ts"])
    if isinstance(booking, LedgerError):
        await fail(shell, key, rec, f"{booking.code}: {booking.reason}")
        return
    tenant = sale.tenant_id
    inv = booking.invoice
    outputs = [_out("ledger.invoices", tenant, inv.invoice_id, inv)]
    outputs += [_out("ledger.payments", tenant, pay.payment_id, pay) for pay in booking.payments]
    outputs.append(_out("ledger.journal", tenant, booking.journal.entry_id, booking.journal))
    outputs.append(["ledger.external_refs", f"{tenant}:sale:{sale.sale_id}",
                    {"tenant_id": tenant, "kind": "sale", "external_id": sale.sale_id, "internal_id": inv.invoice_id}])
    docs = [inv.invoice_id, *(pay.payment_id for pay in booking.payments), booking.journal.entry_id]
    commands = _stock_commands(rec, "COMMIT")
    if sale.payment_terms == ON_ACCOUNT:
        commands.append(["credit", f"{tenant}:{sale.customer_ref}", {
            "op": "ADD_INVOICE", "tenant_id": tenant, "customer_ref": sale.customer_ref,
            "invoice_id": inv.invoice_id, "issued_at": inv.issued_at, "currency": inv.currency,
            "total": str(inv.total), "hold_id": f"sale:{sale.sale_id}" if rec["kind"] == "ORDER" else None}])
    rec = {**rec, "invoice": to_plain(inv)}
    await finish(shell, key, rec, ACCEPTED, outputs=outputs, commands=commands, documents=docs,
                 total=inv.total, credit=rec.get("credit"))


async def fail(shell: SalesShell, key: str, rec: dict, error: str) -> None:
    """The sale breaks a rule found only now: release every hold, dead-letter the original bytes."""
    await shell.dead_letter_stored(rec["raw"], error)
    await finish(shell, key, rec, FAILED, reasons=[reason(error.split(":")[0], error)], emit_outcome=False)


async def finish(shell: SalesShell, key: str, rec: dict, status: str, *, reasons: list | None = None,
                 outputs: list | None = None, commands: list | None = None, documents: list | None = None,
                 total: Decimal | None = None, credit: dict | None = None, emit_outcome: bool = True) -> None:
    sale = rec["sale"]
    if status != ACCEPTED:
        commands = _stock_commands(rec, "RELEASE")
        if rec["status"] == PENDING_CREDIT or rec.get("credit") is not None:
            commands.append(["credit", f"{rec['tenant_id']}:{sale['customer_ref']}", {
                "op": "RELEASE", "tenant_id": rec["tenant_id"], "customer_ref": sale["customer_ref"],
                "hold_id": f"sale:{rec['sale_id']}"}])
    outcome = outcome_record(rec["tenant_id"], "SALE", rec["sale_id"], rec["event_id"],
                             ACCEPTED if status == ACCEPTED else REFUSED, sale_id=rec["sale_id"],
                             customer_ref=sale.get("customer_ref"), reasons=reasons, credit=credit,
                             documents=documents, total=total, currency=sale["currency"], decided_at=rec["ts"])
    outputs = list(outputs or [])
    if emit_outcome:
        outputs.append(["sales.outcomes", key, outcome])
    rec = {**rec, "status": status, "outputs": outputs, "commands": commands or [], "outcome": outcome,
           "pending": []}
    shell.sales[key] = rec
    await shell.send_commands(rec["commands"])
    await shell.send_outputs(outputs)
    parked, rec["parked_refunds"] = rec["parked_refunds"], []
    if parked:
        shell.sales[key] = rec
        for raw_refund in parked:
            await apply_refund(shell, key, raw_refund)


# -- credit -------------------------------------------------------------------------------------
async def handle_credit_command(shell: SalesShell, cmd: dict) -> None:
    """Runs in the customer's partition."""
    state = shell.credit_state(cmd["tenant_id"], cmd["customer_ref"])
    op = cmd["op"]
    if op == "HOLD":
        new, check = cr.try_hold(state, cmd["hold_id"], Decimal(cmd["amount"]))
        if new is not state:
            shell.store_credit(new)
        await shell.send_commands([["sale", f"{cmd['tenant_id']}:{cmd['sale_id']}", {
            "type": "CREDIT", "tenant_id": cmd["tenant_id"], "sale_id": cmd["sale_id"], "approved": check.approved,
            "reason": check.reason, "message": check.message, "credit_limit": str(check.credit_limit),
            "outstanding": str(check.outstanding),
            "available": None if check.available is None else str(check.available),
            "order_amount": str(check.order_amount)}]])
        return
    if op == "RELEASE":
        update = cr.release_hold(state, cmd["hold_id"])
    elif op == "ADD_INVOICE":
        update = cr.add_invoice(state, cmd["invoice_id"], cmd["issued_at"], cmd["currency"], Decimal(cmd["total"]),
                                cmd.get("hold_id"))
    elif op == "CREDIT_REFUND":
        update = cr.apply_credit_refund(state, cmd["refund_id"], cmd["invoice_id"], Decimal(cmd["amount"]))
    else:
        log.error("unknown credit command %r", op)
        return
    if update.state is not state:
        shell.store_credit(update.state)


async def handle_customer(shell: SalesShell, event: EventT) -> None:
    p = shell.p
    record = await p.admit(event, ("customer.credit",), cr.validate_customer_credit)
    if record is None:
        return
    data = record["data"]
    tenant, customer = record["tenant_id"], data["customer_ref"]
    seen_key = f"{tenant}:{record['event_id']}:customer:{customer}"
    fp = fingerprint(record["event_type"], tenant, data)
    stored = shell.stock.seen.get(seen_key)
    if stored == fp:
        return
    if stored is not None:
        await p.dead_letter(event, f"IDEMPOTENCY_CONFLICT: event_id {record['event_id']} was applied before with "
                                   "different content; refused", "idempotency")
        return
    state = shell.credit_state(tenant, customer)
    update = cr.set_terms(state, Decimal(data["credit_limit"]), data["on_hold"])
    if update.state is not state:
        shell.store_credit(update.state)
    shell.stock.seen[seen_key] = fp


async def handle_payment(shell: SalesShell, event: EventT) -> None:
    p = shell.p
    record = await p.admit(event, ("payment.received",), cr.validate_payment)
    if record is None:
        return
    data = record["data"]
    tenant, event_id = record["tenant_id"], record["event_id"]
    received = cr.PaymentReceived.from_event(data)
    pkey = f"{tenant}:{received.payment_id}"
    fp = fingerprint(record["event_type"], tenant, data)
    done = shell.payments.get(pkey)
    if done is not None:
        if done["fp"] == fp:
            p.metrics.duplicates["payments"] += 1
            await shell.send_outputs(done["outputs"])
        else:
            await shell.send_outputs([["sales.outcomes", f"{tenant}:{received.customer_ref}", outcome_record(
                tenant, "PAYMENT", received.payment_id, event_id, "IDEMPOTENCY_CONFLICT",
                customer_ref=received.customer_ref, reasons=[reason(
                    "IDEMPOTENCY_CONFLICT", f"payment {received.payment_id} was received before with other content")])]])
        return
    state = shell.credit_state(tenant, received.customer_ref)
    ts = epoch_millis(record["timestamp"])
    result = cr.apply_payment(state, received.payment_id, received.amount, received.invoice_id, received.currency)
    okey = f"{tenant}:{received.customer_ref}"
    if result.status == cr.APPLIED:
        booking = book_payment(tenant, received, result.allocations, ts)
        pay = booking.payment
        outputs = [_out("ledger.payments", tenant, pay.payment_id, pay),
                   _out("ledger.journal", tenant, booking.journal.entry_id, booking.journal),
                   ["sales.outcomes", okey, outcome_record(
                       tenant, "PAYMENT", received.payment_id, event_id, ACCEPTED, customer_ref=received.customer_ref,
                       documents=[pay.payment_id, booking.journal.entry_id], total=received.amount,
                       currency=received.currency, decided_at=ts)]]
        shell.store_credit(result.state)
    else:
        outputs = [["sales.outcomes", okey, outcome_record(
            tenant, "PAYMENT", received.payment_id, event_id, REFUSED, customer_ref=received.customer_ref,
            reasons=[reason(result.code or "REFUSED", result.reason or "")], total=received.amount,
            currency=received.currency, decided_at=ts)]]
    shell.payments[pkey] = {"fp": fp, "outputs": outputs, "status": result.status}
    await shell.send_outputs(outputs)


# -- refunds ------------------------------------------------------------------------------------
async def handle_refund(shell: SalesShell, event: EventT) -> None:
    p = shell.p
    record = await p.admit(event, ("refund.issued",), validate_refund)
    if record is None:
        return
    data = record["data"]
    key = f"{record['tenant_id']}:{data['sale_id']}"
    refund = {"tenant_id": record["tenant_id"], "event_id": record["event_id"], "ts": epoch_millis(record["timestamp"]),
              "fp": fingerprint(record["event_type"], record["tenant_id"], data), "data": to_json(data)}
    await apply_refund(shell, key, refund)


async def apply_refund(shell: SalesShell, key: str, refund: dict) -> None:
    tenant = refund["tenant_id"]
    data = refund["data"]
    request = RefundRequest.from_event(data)
    rec = shell.sales.get(key)

    def outcome(status: str, reasons: list | None = None, documents: list | None = None,
                total: Decimal | None = None, currency: str | None = None) -> list:
        return ["sales.outcomes", key, outcome_record(
            tenant, "REFUND", request.refund_id, refund["event_id"], status, sale_id=request.sale_id,
            customer_ref=(rec or {}).get("sale", {}).get("customer_ref"), reasons=reasons, documents=documents,
            total=total, currency=currency, decided_at=refund["ts"])]

    if rec is not None and rec["status"] in (PENDING_STOCK, PENDING_CREDIT):
        if all(r["event_id"] != refund["event_id"] for r in rec["parked_refunds"]):
            shell.sales[key] = {**rec, "parked_refunds": rec["parked_refunds"] + [refund]}
        return
    if rec is not None:
        done = rec["refund_results"].get(request.refund_id)
        if done is not None:
            if done["fp"] == refund["fp"]:
                await shell.send_commands(done["commands"])
                await shell.send_outputs(done["outputs"])
            else:
                await shell.send_outputs([outcome("IDEMPOTENCY_CONFLICT", [reason(
                    "IDEMPOTENCY_CONFLICT", f"refund {request.refund_id} was received before with other content")])])
            return
    if rec is None or rec["status"] != ACCEPTED:
        why = "unknown" if rec is None else "refused"
        out = outcome(REFUSED, [reason("UNKNOWN_SALE", f"sale {request.sale_id} is {why}; nothing to refund")])
        if rec is not None:
            results = {**rec["refund_results"], request.refund_id: {"fp": refund["fp"], "outputs": [out],
                                                                     "commands": []}}
            shell.sales[key] = {**rec, "refund_results": results}
        await shell.send_outputs([out])
        return
    from streams.core.documents import Invoice

    invoice = from_plain(Invoice, rec["invoice"])
    state = from_plain(RefundState, rec["refunds"])
    booking = book_refund(invoice, state, request, refund["ts"])
    commands: list = []
    if isinstance(booking, RefundError):
        reasons = [reason(booking.code, r.message, r.sku, r.requested, r.refundable) for r in booking.lines] or \
            [reason(booking.code, booking.reason)]
        outputs = [outcome(REFUSED, reasons, currency=invoice.currency)]
        new_state = state
    else:
        note = booking.credit_note
        outputs = [_out("ledger.credit_notes", tenant, note.credit_note_id, note),
                   _out("ledger.journal", tenant, booking.journal.entry_id, booking.journal),
                   ["ledger.external_refs", f"{tenant}:refund:{request.refund_id}",
                    {"tenant_id": tenant, "kind": "refund", "external_id": request.refund_id,
                     "internal_id": note.credit_note_id}],
                   outcome(ACCEPTED, documents=[note.credit_note_id, booking.journal.entry_id], total=note.total,
                           currency=note.currency)]
        for sku, qty in booking.restock:
            commands.append(["sku", f"{tenant}:{sku}", {
                "op": "RESTOCK", "tenant_id": tenant, "sku": sku, "qty": qty, "ts": refund["ts"],
                "event_id": refund["event_id"], "location_id": rec["sale"].get("location_id")}])
        if request.refund_method == "CREDIT" and invoice.payment_terms == ON_ACCOUNT:
            commands.append(["credit", f"{tenant}:{invoice.customer_ref}", {
                "op": "CREDIT_REFUND", "tenant_id": tenant, "customer_ref": invoice.customer_ref,
                "refund_id": request.refund_id, "invoice_id": invoice.invoice_id, "amount": str(note.total)}])
        new_state = booking.state
    results = {**rec["refund_results"], request.refund_id: {"fp": refund["fp"], "outputs": outputs,
                                                             "commands": commands}}
    shell.sales[key] = {**rec, "refunds": to_plain(new_state), "refund_results": results}
    await shell.send_commands(commands)
    await shell.send_outputs(outputs)

