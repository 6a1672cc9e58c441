"""HTTP views served by every worker; a keyed request is answered by the worker that owns the key.

Any worker takes any request: a keyed one is forwarded to the owner of the key's partition (Faust's
router), the snapshot gathers the local partitions of every worker and streams them out in chunks.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, AsyncIterator, Iterator

import aiohttp
from aiohttp import web as aioweb
from aiokafka.partitioner import murmur2

from streams.app import Pipeline, to_iso
from streams.jsonconv import format_decimal
from streams.sales import SalesShell
from streams.stock import StockShell

CHUNK = 1000


def error(status: int, message: str, **extra: Any) -> aioweb.Response:
    return aioweb.json_response({"error": message, **extra}, status=status)


def tenant_of(request: Any) -> str | None:
    tenant = request.query.get("tenant", "").strip()
    return tenant or None


def owner_url(p: Pipeline, table: str, key: str) -> str | None:
    """The URL of the worker whose active partitions hold `key` of `table`.

    faust-streaming 0.15.3's own router looks its map up by partition number while the map is keyed
    by (topic, partition), so it never finds an owner; this reads the same assignment directly.
    """
    topic = p.tables[table].changelog_topic.get_topic_name()
    partition = (murmur2(key.encode()) & 0x7FFFFFFF) % p.settings.partitions
    for url, tps in p.app.assignor.changelog_distribution.items():
        if partition in tps.get(topic, ()):
            return str(url).rstrip("/")
    return None


async def routed(p: Pipeline, table: str, key: str, request: Any, local: Any) -> Any:
    """Answer from this worker if it owns `key`, else forward the request to the owner."""
    owner = owner_url(p, table, key)
    if owner is None:
        return error(503, f"no worker owns {key!r} right now (rebalancing); retry shortly")
    if owner == str(p.app.conf.canonical_url).rstrip("/") or request.query.get("routed") == "1":
        return await local()
    params = {**request.query, "routed": "1"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.get(owner + request.path, params=params) as resp:
                return aioweb.Response(body=await resp.read(), status=resp.status,
                                       content_type=resp.content_type, charset=resp.charset)
    except aiohttp.ClientError as exc:
        return error(503, f"the owner of {key!r} ({owner}) cannot answer right now: {exc.__class__.__name__}")


def stock_view(state: Any, catalog: dict | None) -> dict:
    body = {
        "tenant_id": state.tenant_id, "sku": state.sku, "on_hand": state.on_hand, "reserved": state.reserved,
        "available": state.available,
        "holds": [{"hold_id": h, "qty": q} for h, q in state.holds],  # open reservations of pending sales
        "last_change": {"event_id": state.last_event_id, "at": to_iso(state.updated_at),
                        "location_id": state.location_id},
    }
    if catalog is not None:
        body["catalog"] = {k: catalog[k] for k in ("display_name", "price", "is_active", "product_group_id")}
    return body


def install(p: Pipeline, shell: StockShell, sales: SalesShell) -> None:
    app = p.app

    @app.page("/credit/{customer_ref}")
    async def get_credit(web: Any, request: Any, customer_ref: str) -> Any:
        tenant = tenant_of(request)
        if tenant is None:
            return error(400, "query parameter 'tenant' is required")
        key = f"{tenant}:{customer_ref}"

        async def local() -> Any:
            if sales.credit.get(key) is None:
                return error(404, f"unknown customer {customer_ref!r} for tenant {tenant!r}")
            return aioweb.json_response(credit_view(sales.credit_state(tenant, customer_ref)))

        return await routed(p, "credit", key, request, local)

    @app.page("/sales/{sale_id}")
    async def get_sale(web: Any, request: Any, sale_id: str) -> Any:
        tenant = tenant_of(request)
        if tenant is None:
            return error(400, "query parameter 'tenant' is required")
        key = f"{tenant}:{sale_id}"

        async def local() -> Any:
            rec = sales.sales.get(key)
            if rec is None:
                return error(404, f"unknown sale {sale_id!r} for tenant {tenant!r}")
            return aioweb.json_response(sale_view(rec))

        return await routed(p, "sales", key, request, local)

    @app.page("/stock/{sku}")
    async def get_stock(web: Any, request: Any, sku: str) -> Any:
        tenant = tenant_of(request)
        if tenant is None:
            return error(400, "query parameter 'tenant' is required", example=f"/stock/{sku}?tenant=acme")
        key = f"{tenant}:{sku}"

        async def local() -> Any:
            raw = shell.stock.get(key)
            if raw is None:
                catalog = shell.catalog.get(key)
                if catalog is None:
                    return error(404, f"unknown SKU {sku!r} for tenant {tenant!r}", sku=sku, tenant=tenant)
            return aioweb.json_response(stock_view(shell.state(tenant, sku), shell.catalog.get(key)))

        return await routed(p, "stock", key, request, local)

    @app.page("/inventory/snapshot")
    async def snapshot(web: Any, request: Any) -> Any:
        tenant = tenant_of(request)
        fmt = request.query.get("format", "json")
        if tenant is None:
            return error(400, "query parameter 'tenant' is required")
        if fmt not in ("json", "csv"):
            return error(400, f"format must be json or csv, not {fmt!r}")
        only_local = request.query.get("scope") == "local"
        response = aioweb.StreamResponse(headers={
            "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/json"})
        await response.prepare(request)
        rows = _local_rows(shell, tenant)
        if not only_local:
            rows_iter = _with_remote(p, request, rows)
        else:
            rows_iter = _aiter(rows)
        if fmt == "csv":
            await response.write(b"sku,qty,on_hand,reserved,available\r\n")
        else:
            await response.write(b"[")
        first = True
        buf: list[str] = []
        async for row in rows_iter:
            if fmt == "csv":
                buf.append(row if isinstance(row, str) else _csv_line(row))
            else:
                text = row if isinstance(row, str) else json.dumps(row)
                buf.append(text if first else "," + text)
                first = False
            if len(buf) >= CHUNK:
                await response.write("".join(buf).encode())
                buf.clear()
        if buf:
            await response.write("".join(buf).encode())
        if fmt != "csv":
            await response.write(b"]")
        await response.write_eof()
        return response

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        assignment = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment()) \
            if app.consumer is not None else []
        recovered = app.tables.recovery.completed.is_set() if app.tables else False
        status = 200 if recovered else 503
        return aioweb.json_response({"status": "ok" if recovered else "recovering", "recovered": recovered,
                                     "url": str(app.conf.canonical_url), "assigned": assignment}, status=status)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        lag = []
        monitor = app.monitor
        for tp, end in (monitor.tp_end_offsets or {}).items():
            read = (monitor.tp_read_offsets or {}).get(tp)
            if read is not None:
                lag.append((tp.topic, tp.partition, max(end - read - 1, 0)))
        return aioweb.Response(text=p.metrics.render(lag), content_type="text/plain", charset="utf-8")


def credit_view(state: Any) -> dict:
    available = state.available
    return {
        "tenant_id": state.tenant_id, "customer_ref": state.customer_ref,
        "credit_limit": format_decimal(state.credit_limit), "outstanding": format_decimal(state.outstanding),
        "available": None if available is None else format_decimal(available), "on_hold": state.on_hold,
        "held_for_orders": format_decimal(state.held),
        "open_invoices": [{"invoice_id": i.invoice_id, "total": format_decimal(i.total),
                           "paid": format_decimal(i.paid), "credited": format_decimal(i.credited),
                           "remaining": format_decimal(i.remaining), "status": i.status} for i in state.open_invoices],
    }


def sale_view(rec: dict) -> dict:
    outcome = rec.get("outcome")
    return {
        "tenant_id": rec["tenant_id"], "sale_id": rec["sale_id"], "event_id": rec["event_id"],
        "status": rec["status"], "outcome": outcome["outcome"] if outcome else None,
        "reasons": outcome["reasons"] if outcome else [], "credit": outcome["credit"] if outcome else None,
        "document_ids": outcome["document_ids"] if outcome else [],
        "total": outcome["total"] if outcome else None, "currency": rec["sale"]["currency"],
        "refunds": [{"refund_id": rid, "outcome": r["outputs"][-1][2]["outcome"],
                     "document_ids": r["outputs"][-1][2]["document_ids"]}
                    for rid, r in rec["refund_results"].items()],
    }


def _csv_line(row: dict) -> str:
    out = io.StringIO()
    csv.writer(out).writerow([row["sku"], row["qty"], row["on_hand"], row["reserved"], row["available"]])
    return out.getvalue()


def _local_rows(shell: StockShell, tenant: str) -> Iterator[dict]:
    prefix = f"{tenant}:"
    for key, raw in shell.stock.items():
        if key.startswith(prefix):
            yield {"sku": raw["sku"], "qty": raw["on_hand"] - raw["reserved"], "on_hand": raw["on_hand"],
                   "reserved": raw["reserved"], "available": raw["on_hand"] - raw["reserved"]}


async def _aiter(rows: Iterator[dict]) -> AsyncIterator[dict]:
    for row in rows:
        yield row


async def _with_remote(p: Pipeline, request: Any, rows: Iterator[dict]) -> AsyncIterator[Any]:
    """This worker's rows, then every other worker's, read line by line from their local snapshot."""
    for row in rows:
        yield row
    me = str(p.app.conf.canonical_url).rstrip("/")
    others = {str(url).rstrip("/") for url in p.app.router.table_metadata("stock")} - {me}
    fmt = request.query.get("format", "json")
    async with aiohttp.ClientSession() as session:
        for url in sorted(others):
            params = {"tenant": request.query["tenant"], "format": "csv", "scope": "local"}
            async with session.get(f"{url}/inventory/snapshot", params=params) as resp:
                header = True
                async for line in resp.content:
                    if header:
                        header = False
                        continue
                    text = line.decode()
                    if fmt == "csv":
                        yield text
                    else:
                        sku, qty, on_hand, reserved, available = next(csv.reader([text]))
                        yield {"sku": sku, "qty": int(qty), "on_hand": int(on_hand), "reserved": int(reserved),
                               "available": int(available)}
