"""The stock and catalog agents: decode, look up state, call the pure core, write state, emit.

Idempotency: every change of a SKU carries a key `<tenant>:<event_id>:<sku>` whose fingerprint is
kept in the `seen` table next to the stock. The stock is written before `seen`; on redelivery the
event counts as applied when `seen` has it or the SKU's last change is that very event (the one
write that can be missing after a crash is the last `seen` of the partition). A duplicate
re-publishes the SKU's current level, so an output lost in a crash is healed by the redelivery.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any, Callable

from faust.types import EventT

from streams.app import Pipeline
from streams.core.idempotency import Decision, decide, fingerprint
from streams.core.stock import (StockResult, StockState, apply_absolute, apply_delta, closed_outcome, recall_closed,
                                validate_inventory_change)
from streams.jsonconv import epoch_millis

log = logging.getLogger("stockledger.stock")

StockOp = Callable[[StockState], StockResult]


class StockShell:
    """Per-SKU state transitions shared by every agent that changes stock (inventory, catalog, sales)."""

    def __init__(self, p: Pipeline):
        self.p = p
        self.stock = p.table("stock")
        self.catalog = p.table("catalog")
        self.seen = p.table("seen")
        self.closed_holds = p.table("closed-holds")  # tenant:sku:hold_id -> outcome, beyond the state's window

    def state(self, tenant: str, sku: str) -> StockState:
        raw = self.stock.get(f"{tenant}:{sku}")
        return StockState(tenant, sku) if raw is None else StockState.from_dict(raw)

    def hold_state(self, tenant: str, sku: str, hold_id: str) -> StockState:
        """A SKU's state, reminded of `hold_id`'s outcome if the hold closed too long ago to be in it."""
        state = self.state(tenant, sku)
        outcome = self.closed_holds.get(f"{tenant}:{sku}:{hold_id}")
        return state if outcome is None else recall_closed(state, hold_id, outcome)

    def store_hold_state(self, state: StockState, hold_id: str) -> None:
        """Write a SKU's state after a hold operation, and the hold's outcome once it has one."""
        self.stock[f"{state.tenant_id}:{state.sku}"] = state.to_dict()
        outcome = closed_outcome(state, hold_id)
        key = f"{state.tenant_id}:{state.sku}:{hold_id}"
        if outcome is not None and self.closed_holds.get(key) != outcome:
            self.closed_holds[key] = outcome

    async def publish_level(self, state: StockState) -> None:
        await self.p.emit("stock.levels", f"{state.tenant_id}:{state.sku}", state.level())

    async def apply(self, tenant: str, sku: str, event_id: str, fp: str, op: StockOp) -> Decision:
        """Apply `op` to a SKU exactly once for `event_id`; returns what was decided."""
        key = f"{tenant}:{sku}"
        seen_key = f"{tenant}:{event_id}:{sku}"
        state = self.state(tenant, sku)
        stored = self.seen.get(seen_key)
        if stored is None and state.last_event_id == event_id:
            stored = fp  # applied, but its `seen` write was lost in a crash
            self.seen[seen_key] = fp
        decision = decide(stored, fp)
        if decision is Decision.DUPLICATE:
            await self.publish_level(state)
            return decision
        if decision is Decision.CONFLICT:
            return decision
        result = op(state)
        if result.state is not state:
            self.stock[key] = result.state.to_dict()
        self.seen[seen_key] = fp
        if result.changed:
            await self.publish_level(result.state)
        for alert in result.alerts:
            await self.p.emit("inventory.alerts", key, asdict(alert))
        return decision


def _conflict_reason(event_id: str) -> str:
    return f"IDEMPOTENCY_CONFLICT: event_id {event_id} was applied before with different content; refused"


def install(p: Pipeline) -> StockShell:
    shell = StockShell(p)
    inventory_topic = p.topic("inventory.changes")
    catalog_topic = p.topic("catalog.updates")
    items_topic = p.internal_topic("catalog-items")

    @p.app.agent(inventory_topic, name="inventory")
    async def inventory(stream: Any) -> None:
        async for event in stream.events():
            await handle_inventory(p, shell, event)

    @p.app.agent(catalog_topic, name="catalog")
    async def catalog(stream: Any) -> None:
        async for event in stream.events():
            await handle_catalog(p, event, items_topic)

    @p.app.agent(items_topic, name="catalog-items")
    async def catalog_items(stream: Any) -> None:
        async for event in stream.events():
            await handle_catalog_item(p, shell, event)

    return shell


async def handle_inventory(p: Pipeline, shell: StockShell, event: EventT) -> None:
    record = await p.admit(event, ("inventory.change",), validate_inventory_change)
    if record is None:
        return
    data = record["data"]
    tenant, event_id, ts = record["tenant_id"], record["event_id"], epoch_millis(record["timestamp"])
    fp = fingerprint(record["event_type"], tenant, data)
    location = data.get("location_id")
    if data.get("new_quantity") is not None:
        def op(s: StockState) -> StockResult:
            return apply_absolute(s, data["new_quantity"], ts, event_id, location)
    else:
        def op(s: StockState) -> StockResult:
            return apply_delta(s, data["quantity_change"], ts, event_id, location)
    decision = await shell.apply(tenant, data["sku"], event_id, fp, op)
    if decision is Decision.DUPLICATE:
        p.metrics.duplicates[event.message.topic] += 1
    elif decision is Decision.CONFLICT:
        await p.dead_letter(event, _conflict_reason(event_id), "idempotency")


def validate_catalog(data: dict) -> list[str]:
    reasons = []
    if not data.get("product_group_id"):
        reasons.append("product_group_id is missing or empty")
    variants = data.get("variants") or []
    if not variants:
        reasons.append("a product group needs at least one variant")
    seen: set[str] = set()
    for n, v in enumerate(variants):
        sku = v.get("sku")
        if not sku:
            reasons.append(f"variants[{n}].sku is missing or empty")
        elif sku in seen:
            reasons.append(f"variants[{n}].sku {sku} appears twice")
        seen.add(sku)
        if v.get("price") is not None and v["price"] < 0:
            reasons.append(f"variants[{n}].price must not be negative")
        if v.get("stock_quantity") is not None and v["stock_quantity"] < 0:
            reasons.append(f"variants[{n}].stock_quantity must not be negative")
    if data.get("tax_rate") is not None and not (0 <= data["tax_rate"] <= 100):
        reasons.append("tax_rate must be between 0 and 100")
    return reasons


async def handle_catalog(p: Pipeline, event: EventT, items_topic: Any) -> None:
    """A product group fans out to one message per variant, keyed by SKU like the stock."""
    record = await p.admit(event, ("catalog.update",), validate_catalog)
    if record is None:
        return
    data = record["data"]
    tenant = record["tenant_id"]
    group = {k: data.get(k) for k in ("product_group_id", "group_name", "is_active", "tax_hsn")}
    group["tax_rate"] = None if data.get("tax_rate") is None else str(data["tax_rate"])
    for v in data["variants"]:
        item = {
            "tenant_id": tenant, "event_id": record["event_id"], "timestamp": epoch_millis(record["timestamp"]),
            "group": group, "sku": v["sku"], "display_name": v["display_name"], "price": str(v["price"]),
            "mrp": None if v.get("mrp") is None else str(v["mrp"]), "stock_quantity": v.get("stock_quantity"),
            "attributes": v.get("attributes") or {},
        }
        await items_topic.send(key=f"{tenant}:{v['sku']}", value=item)


async def handle_catalog_item(p: Pipeline, shell: StockShell, event: EventT) -> None:
    p.track(event)
    item = event.value
    tenant, sku, event_id, ts = item["tenant_id"], item["sku"], item["event_id"], item["timestamp"]
    key = f"{tenant}:{sku}"
    current = shell.catalog.get(key)
    if current is None or current["updated_at"] <= ts:  # an older update arriving late does not win
        shell.catalog[key] = {
            "tenant_id": tenant, "sku": sku, "product_group_id": item["group"]["product_group_id"],
            "group_name": item["group"]["group_name"], "display_name": item["display_name"],
            "price": item["price"], "mrp": item["mrp"], "tax_rate": item["group"]["tax_rate"],
            "is_active": item["group"]["is_active"], "attributes": item["attributes"],
            "updated_at": ts, "event_id": event_id,
        }
    qty = item["stock_quantity"]
    if qty is not None:
        fp = fingerprint("catalog.update", tenant, {"sku": sku, "stock_quantity": qty})
        decision = await shell.apply(tenant, sku, event_id, fp,
                                     lambda s: apply_absolute(s, qty, ts, event_id, None))
        if decision is Decision.CONFLICT:
            await p.dead_letter(event, _conflict_reason(event_id), "idempotency", source="catalog.updates")
