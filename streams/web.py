"""HTTP reads for operators, served by every worker; a request is answered by the worker that folds
the tenant (the owner of the tenant's tenant-log partition), forwarded there from any worker.

This is the operators' door: it is bound to loopback unless `--web-host` says otherwise, and then
every request must carry `Authorization: Bearer $STOCKLEDGER_OPERATOR_TOKEN` (checked in constant
time), or, on a read forwarded by another worker, that read's own `X-Stockledger-Forward` credential.
Ids and the one `tenant` parameter are checked before anything is read or forwarded. Systems of a
tenant use the API service (`stockledger api`), which scopes them to their tenant.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp import web as aioweb
from yarl import URL

from stockledger.jsonconv import format_decimal
from stockledger.security import id_refusal
from streams.app import Pipeline, to_iso
from streams.core import fold as core
from streams.core.credit import invoice_of, open_invoices_of
from streams.core.serde import to_plain
from streams.core.stock import StockState
from streams.tenantlog import tenant_partition

CHUNK = 1000
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def error(status: int, message: str, **extra: Any) -> aioweb.Response:
    return aioweb.json_response({"error": message, **extra}, status=status)


def owner_url(p: Pipeline, partition: int) -> str | None:
    """The URL of the worker folding `partition` of the tenant log, from the group's assignment."""
    for url, tps in p.app.assignor.external_topic_distribution.items():  # type: ignore[attr-defined]
        if partition in tps.get(p.log_topic, ()):
            return str(url).rstrip("/")
    return None


FORWARD = "X-Stockledger-Forward"  # a forwarded read's own credential (never the operator token)
FORWARD_WINDOW = 60  # seconds a forward credential stays valid


def forward_credential(token: str, scope: str, at: int) -> str:
    """`<unix seconds>.<hex HMAC>` over one forwarded read (its kind, id, tenant and format), under a
    key derived from the operator token: it opens that one read for a minute and nothing else."""
    key = hmac.new(token.encode(), b"stockledger worker forward", hashlib.sha256).digest()
    return f"{at}." + hmac.new(key, f"{at}\n{scope}".encode(), hashlib.sha256).hexdigest()


def forward_valid(token: str, scope: str, given: str, now: float | None = None) -> bool:
    at, _, _mac = given.partition(".")
    if not (at.isascii() and at.isdigit()) or len(at) > 12:
        return False
    now = time.time() if now is None else now
    if abs(now - int(at)) > FORWARD_WINDOW:
        return False
    return hmac.compare_digest(forward_credential(token, scope, int(at)).encode(), given.encode("ascii", "replace"))


def plain_http_url(url: str) -> bool:
    """http(s)://host:port and nothing else (no user info, path, query or fragment)."""
    u = urlsplit(url)
    return u.scheme in ("http", "https") and bool(u.hostname) and not u.username and u.path in ("", "/") \
        and not u.query and not u.fragment


class Views:
    def __init__(self, p: Pipeline, folder: Any, token: str | None):
        self.p = p
        self.folder = folder
        self.token = token

    def refused(self, request: Any, scope: str | None = None) -> aioweb.Response | None:
        """401 unless the operator token is required and given (or, for a read forwarded by another
        worker, that read's forward credential)."""
        if self.token is None:
            return None
        given = request.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return None
        forwarded = request.headers.get(FORWARD)
        if scope is not None and forwarded and forward_valid(self.token, scope, forwarded):
            return None
        return error(401, "an operator token is required (Authorization: Bearer ...)")

    async def routed(self, request: Any, local: Any, kind: str, ident: tuple[str, str] | None = None,
                     **extra: str) -> Any:
        """Answer from this worker if it folds the request's tenant, else forward to the one that does:
        to `/<kind>/<quoted id>?tenant=T` rebuilt from the route's parameters (never the request's own
        path), with this read's forward credential (never the operator token), and only to the URL the
        current owner advertises in the group's assignment, if it is a plain http(s)://host:port."""
        tenants = request.query.getall("tenant", [])
        tenant = tenants[0].strip() if len(tenants) == 1 else ""
        id_value = ident[1] if ident else ""
        scope = "\n".join([kind, id_value, tenant, *(f"{k}={v}" for k, v in sorted(extra.items()))])
        refused = self.refused(request, scope)
        if refused is not None:
            return refused
        if len(tenants) > 1:
            return error(400, "query parameter 'tenant' is given more than once")
        if not tenant:
            return error(400, "query parameter 'tenant' is required", example=f"/{kind}?tenant=acme")
        for name, value in ((("tenant", tenant),) + ((ident,) if ident else ())):
            why = id_refusal(value)
            if why is not None:
                return error(400, f"{name} {why}", field=name)
        partition = tenant_partition(tenant, self.p.settings.partitions)
        store = self.folder.local(partition)
        if store is not None:
            return await local(store, tenant)
        if request.query.get("routed") == "1":
            return error(503, f"tenant {tenant!r} is being restored or moved here; retry shortly")
        owner = owner_url(self.p, partition)
        me = str(self.p.app.conf.canonical_url).rstrip("/")
        if owner is None or owner == me or not plain_http_url(owner):
            return error(503, f"no worker serves tenant {tenant!r} right now (rebalancing or restoring); retry shortly")
        path = f"/{kind}" + (f"/{quote(id_value, safe='')}" if ident else "")
        params = {"tenant": tenant, **extra, "routed": "1"}
        headers = {FORWARD: forward_credential(self.token, scope, int(time.time()))} if self.token else {}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
                async with session.get(URL(owner + path, encoded=True), params=params, headers=headers,
                                       allow_redirects=False) as resp:
                    if resp.content_type == "application/json" and kind != "inventory/snapshot":
                        return aioweb.Response(body=await resp.read(), status=resp.status,
                                               content_type=resp.content_type)
                    out = aioweb.StreamResponse(status=resp.status, headers={
                        "Content-Type": resp.headers.get("Content-Type", "application/octet-stream")})
                    await out.prepare(request)
                    async for chunk in resp.content.iter_chunked(64 * 1024):
                        await out.write(chunk)
                    await out.write_eof()
                    return out
        except aiohttp.ClientError as exc:
            return error(503, f"the worker of tenant {tenant!r} ({owner}) cannot answer right now: "
                              f"{exc.__class__.__name__}")


def stock_view(state: Any, catalog: Any) -> dict:
    body: dict[str, Any] = {"tenant_id": catalog.tenant_id if state is None else state.tenant_id,
                            "sku": catalog.sku if state is None else state.sku}
    if state is None:
        body.update(on_hand=0, reserved=0, available=0, last_change=None)
    else:
        body.update(on_hand=state.on_hand, reserved=state.reserved, available=state.available,
                    last_change={"event_id": state.last_event_id, "at": to_iso(state.updated_at),
                                 "location_id": state.location_id, "reason": state.reason})
    if catalog is not None:
        body["catalog"] = {"display_name": catalog.display_name, "price": format_decimal(catalog.price),
                           "is_active": catalog.is_active, "product_group_id": catalog.product_group_id}
    return body


def group_view(group: Any) -> dict:
    """A product group's newest version (issue 20): the group's fields and every variant with its media."""
    return {
        "tenant_id": group.tenant_id, "product_group_id": group.product_group_id, "group_name": group.group_name,
        "version": group.version, "updated_at": to_iso(group.updated_at), "event_id": group.event_id,
        "description": group.description, "category_hierarchy": list(group.category_hierarchy),
        "tax_hsn": group.tax_hsn, "is_active": group.is_active,
        "tax_rate": None if group.tax_rate is None else format_decimal(group.tax_rate),
        "variants": [{"sku": v.sku, "display_name": v.display_name, "price": format_decimal(v.price),
                      "mrp": None if v.mrp is None else format_decimal(v.mrp), "attributes": dict(v.attributes),
                      "media": [{"url": m.url, "is_main": m.is_main} for m in v.media]} for v in group.variants],
    }


_DAY_MS = 86_400_000


def _iso_day(millis: int | None) -> str | None:
    return None if millis is None else to_iso(millis)[:10]  # type: ignore[index]


def credit_view(state: Any, invoices: list, now_ms: int | None = None) -> dict:
    """A customer's credit and receivables (SPEC 4, 9). `now_ms` (default: the clock) dates what is overdue:
    an open invoice whose due day is before today; days past due are those of the oldest overdue invoice."""
    available = state.available
    today = (int(time.time() * 1000) if now_ms is None else now_ms) // _DAY_MS
    overdue = [i for i in invoices if i.due_at is not None and i.due_at // _DAY_MS < today]
    overdue_amount = sum((i.remaining for i in overdue), Decimal(0))
    oldest = min((i.due_at for i in overdue), default=None)
    return {
        "tenant_id": state.tenant_id, "customer_ref": state.customer_ref,
        "credit_limit": format_decimal(state.credit_limit), "outstanding": format_decimal(state.outstanding),
        "available": None if available is None else format_decimal(available), "on_hold": state.on_hold,
        "credit_balance": format_decimal(state.credit_balance), "payment_terms_days": state.payment_terms_days,
        "price_list_id": state.price_list_id,
        "overdue": format_decimal(overdue_amount),
        "days_past_due": 0 if oldest is None else today - oldest // _DAY_MS,
        "first_payment_at": to_iso(state.first_payment_at), "last_payment_at": to_iso(state.last_payment_at),
        "open_invoices": [{"invoice_id": i.invoice_id, "total": format_decimal(i.total),
                           "paid": format_decimal(i.paid), "credited": format_decimal(i.credited),
                           "remaining": format_decimal(i.remaining), "status": i.status,
                           "due_date": _iso_day(i.due_at)} for i in invoices],
    }


def _money(value: Any) -> str | None:
    return None if value is None else format_decimal(value)


def _receivable(store: Any, rec: Any) -> dict | None:
    """The sale's ON_ACCOUNT (payment-due) invoice as the receivables keep it: what is paid and what is left."""
    if store is None or rec.invoice is None:
        return None
    entry = invoice_of(store, rec.tenant_id, rec.invoice.invoice_id)
    if entry is None:
        return None
    return {"invoice_id": entry.invoice_id, "status": entry.status, "total": _money(entry.total),
            "paid": _money(entry.paid), "credited": _money(entry.credited),
            "remaining": _money(entry.total - entry.paid - entry.credited), "due_date": _iso_day(entry.due_at)}


def sale_view(rec: Any, store: Any = None) -> dict:
    """What a person or the API reads about a sale: status, outcome, credit figures, documents, refunds; with
    the tenant's `store`, also its open or settled invoice on account and the payments that failed at the
    provider (treasury.payment.failed)."""
    outcome = rec.outcome
    credit = None
    if outcome is not None and outcome.credit is not None:
        c = outcome.credit
        credit = {"credit_limit": _money(c.credit_limit), "outstanding": _money(c.outstanding),
                  "available": _money(c.available), "order_amount": _money(c.order_amount)}
    return {
        "tenant_id": rec.tenant_id, "sale_id": rec.sale_id, "event_id": rec.event_id, "kind": rec.kind,
        "status": rec.status, "outcome": outcome.outcome if outcome else None,
        "customer_ref": rec.customer_ref, "payment_terms": rec.payment_terms,
        "reasons": [to_plain(r) for r in outcome.reasons] if outcome else [],
        "error": rec.error, "credit": credit, "document_ids": list(rec.document_ids),
        "total": _money(outcome.total) if outcome else None, "currency": rec.currency,
        "decided_at": to_iso(rec.decided_at),
        "refunds": [{"refund_id": r.refund_id, "event_id": r.event_id, "outcome": r.outcome.outcome,
                     "reasons": [to_plain(x) for x in r.outcome.reasons], "document_ids": list(r.outcome.document_ids),
                     "total": _money(r.outcome.total)} for r in rec.refund_results],
        "invoice": _receivable(store, rec),
        "payment_failures": [] if store is None else [
            {"payment_id": f.payment_id, "event_id": f.event_id, "at": to_iso(f.at), "reason": f.reason,
             "amount": _money(f.amount), "currency": f.currency}
            for f in core.payment_failures_of(store, rec.tenant_id, rec.sale_id)],
        # SPEC 8: an order's state (ACCEPTED, HELD, PARTIALLY_SHIPPED, SHIPPED, CANCELLED) and per line its
        # ordered, shipped, cancelled and open quantities; None for a POS sale or an order not accepted
        "order": None if getattr(rec, "order", None) is None else rec.order.view(),
    }


def install(p: Pipeline, folder: Any) -> Views:
    app = p.app
    views = Views(p, folder, p.settings.operator_token)

    @app.page("/stock/{sku:[^/]+}")  # any id routes (aiohttp's default refuses { and }), then is checked
    async def get_stock(web: Any, request: Any, sku: str) -> Any:
        async def local(store: Any, tenant: str) -> Any:
            state, catalog = core.stock_of(store, tenant, sku), core.catalog_of(store, tenant, sku)
            if state is None and catalog is None:
                return error(404, f"unknown SKU {sku!r} for tenant {tenant!r}", sku=sku, tenant=tenant)
            return aioweb.json_response(stock_view(state, catalog))

        return await views.routed(request, local, "stock", ("sku", sku))

    @app.page("/catalog/{product_group_id:[^/]+}")
    async def get_group(web: Any, request: Any, product_group_id: str) -> Any:
        async def local(store: Any, tenant: str) -> Any:
            group = core.group_of(store, tenant, product_group_id)
            if group is None:
                return error(404, f"unknown product group {product_group_id!r} for tenant {tenant!r}")
            return aioweb.json_response(group_view(group))

        return await views.routed(request, local, "catalog", ("product_group_id", product_group_id))

    @app.page("/credit/{customer_ref:[^/]+}")
    async def get_credit(web: Any, request: Any, customer_ref: str) -> Any:
        async def local(store: Any, tenant: str) -> Any:
            state = core.credit_of(store, tenant, customer_ref)
            if state is None:
                return error(404, f"unknown customer {customer_ref!r} for tenant {tenant!r}")
            return aioweb.json_response(credit_view(state, open_invoices_of(store, tenant, customer_ref)))

        return await views.routed(request, local, "credit", ("customer_ref", customer_ref))

    @app.page("/sales/{sale_id:[^/]+}")
    async def get_sale(web: Any, request: Any, sale_id: str) -> Any:
        async def local(store: Any, tenant: str) -> Any:
            rec = core.sale_of(store, tenant, sale_id)
            if rec is None:
                return error(404, f"unknown sale {sale_id!r} for tenant {tenant!r}")
            return aioweb.json_response(sale_view(rec, store))

        return await views.routed(request, local, "sales", ("sale_id", sale_id))

    @app.page("/inventory/snapshot")
    async def snapshot(web: Any, request: Any) -> Any:
        fmt = request.query.get("format", "json")
        if fmt not in ("json", "csv"):
            return error(400, f"format must be json or csv, not {fmt!r}")

        async def local(store: Any, tenant: str) -> Any:
            response = aioweb.StreamResponse(headers={
                "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/json"})
            await response.prepare(request)
            async for chunk in _snapshot(store, tenant, fmt):
                await response.write(chunk)
            await response.write_eof()
            return response

        return await views.routed(request, local, "inventory/snapshot", format=fmt)

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        refused = views.refused(request)
        if refused is not None:
            return refused
        consumer = app.consumer
        assignment = sorted(f"{tp.topic}:{tp.partition}" for tp in consumer.assignment()) if consumer else []
        recovered = bool(app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
                         if app.tables else True) and folder.ready()
        dead = dict(p.vitals.dead)  # an agent that died: this worker folds nothing and is stopping
        body = {"status": "dead" if dead else "ok" if recovered else "recovering", "recovered": recovered,
                "url": str(app.conf.canonical_url), "assigned": assignment}
        if dead:
            body["dead_agents"] = dead
        return aioweb.json_response(body, status=200 if recovered and not dead else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        refused = views.refused(request)
        if refused is not None:
            return refused
        lag = []
        consumer: Any = app.consumer  # faustfix's OrderedConsumer
        read_offsets = app.monitor.tp_read_offsets or {}
        for tp in consumer.assignment():
            try:
                end = consumer.highwater(tp)  # the offset the next record written will take
            except AssertionError:  # aiokafka: revoked since assignment() (a scrape during a rebalance)
                continue
            if consumer.dense(tp.topic):  # fed to our agents as runs (faustfix Feed): Faust's monitor never sees them
                following = consumer.owed(tp)
            else:
                read = read_offsets.get(tp)
                following = None if read is None else read + 1
            if end is not None and following is not None:
                lag.append((tp.topic, tp.partition, max(end - following, 0)))
        return aioweb.Response(text=p.metrics.render(lag), content_type="text/plain", charset="utf-8")

    return views


def _levels(store: Any, tenant: str) -> Iterator[StockState]:
    """Every SKU of the tenant in key order: its stock, or quantity 0 for a SKU only the catalog knows
    (a merge of the two key-ordered scans, nothing held in memory)."""
    stock, catalog = store.scan("stock", f"{tenant}:"), store.scan("catalog", f"{tenant}:")
    s, c = next(stock, None), next(catalog, None)
    while s is not None or c is not None:
        if s is not None and (c is None or s[0] <= c[0]):
            if c is not None and c[0] == s[0]:
                c = next(catalog, None)
            yield StockState.from_dict(s[1])
            s = next(stock, None)
        else:
            assert c is not None
            yield StockState(tenant, c[1]["sku"])
            c = next(catalog, None)


async def _snapshot(store: Any, tenant: str, fmt: str) -> AsyncIterator[bytes]:
    """Every SKU of the tenant in key order, in chunks (the nightly sweeper of 003 section 5.1)."""
    buf: list[str] = ["sku,qty,on_hand,reserved,available\r\n" if fmt == "csv" else "["]
    first = True
    for state in _levels(store, tenant):
        sku = state.sku
        row = {"sku": sku, "qty": state.available, "on_hand": state.on_hand, "reserved": state.reserved,
               "available": state.available}
        if fmt == "csv":
            out = io.StringIO()
            csv.writer(out).writerow([row["sku"], row["qty"], row["on_hand"], row["reserved"], row["available"]])
            buf.append(out.getvalue())
        else:
            buf.append(("" if first else ",") + json.dumps(row))
            first = False
        if len(buf) >= CHUNK:
            yield "".join(buf).encode()
            buf.clear()
    if fmt != "csv":
        buf.append("]")
    yield "".join(buf).encode()
