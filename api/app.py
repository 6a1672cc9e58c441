"""The routes of `stockledger api` and the pipeline every request goes through:
client rate limit (by remote address, before anything else) -> credential -> tenant of the path ->
Accept -> Content-Type -> rate limit -> ids of the path -> Idempotency-Key -> body (size, read
timeout, JSON with bounded numbers, schema, no unknown fields) -> claim -> publish (acks=all) ->
the pipeline's outcome -> answer. Nothing is published for a request refused on the way."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import text

from api import answers, events, idempotency, metrics, negotiation, openapi, webhooks
from api.db import Database
from api.idempotency import IDEMPOTENCY, Answer, Idempotency
from api.outcomes import OutcomeWaiter
from api.problems import Problem, not_found, unauthorized
from api.publisher import Publisher, PublishError
from api.ratelimit import RateLimiter
from api.workers import Workers
from stockledger import tenants
from stockledger.config import Settings
from stockledger.security import id_refusal

MAX_BODY = 1024 * 1024  # 1 MiB; above it 413
MAX_DIGITS = 30  # a JSON number with more digits, or beyond 10^30 or below 10^-30 in magnitude, is a 400
POST_ANSWERS = [negotiation.JSON, negotiation.PROBLEM]
log = logging.getLogger("stockledger.api")


@dataclass
class Services:
    settings: Settings
    db: Database
    master_key: bytes
    publisher: Publisher
    outcomes: OutcomeWaiter
    workers: Workers
    limiter: RateLimiter
    idempotency: Idempotency
    clients: RateLimiter  # per remote address, before authentication


SERVICES = web.AppKey("services", Services)
STREAMING = "stockledger.streaming"  # set on a request whose answer has started: no other answer is possible


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]


# -- the steps every request takes ---------------------------------------------------------------
@web.middleware
async def client_limit(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
    """First of all: a token bucket per remote address, so nobody can make the API check credentials
    (a database query each) or parse bodies faster than the limit."""
    wait = services_of(request).clients.take(request.remote or "")
    if wait:
        return Problem(429, "too many requests from this client", headers={"Retry-After": str(wait)}).response()
    return await handler(request)


@web.middleware
async def refusals(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                   ) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as problem:
        return problem.response()
    except web.HTTPRequestEntityTooLarge:
        return Problem(413, f"the body is larger than {MAX_BODY} bytes").response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return Problem(exc.status, exc.reason, headers=headers).response()
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        if request.get(STREAMING):
            raise
        return Problem(500, "internal error").response()


async def _tenant(request: web.Request, kinds: tuple[str, ...]) -> str:
    """The tenant named by the request's credential: an `X-Integration-Key` (kind key) or an
    `Authorization: Bearer` token (kind token)."""
    s = services_of(request)
    for kind in kinds:
        if kind == "key":
            presented = request.headers.get("X-Integration-Key")
        else:
            auth = request.headers.get("Authorization", "")
            presented = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if presented and presented.isascii() and presented.isprintable():  # as every credential we issue
            tenant = await s.db.run(tenants.tenant_for, kind, presented)
            if tenant is not None:
                return tenant
    raise unauthorized()


def _limit(request: web.Request, tenant: str) -> None:
    wait = services_of(request).limiter.take(tenant)
    if wait:
        raise Problem(429, "too many requests for this tenant", headers={"Retry-After": str(wait)})


async def intake(request: web.Request, kinds: tuple[str, ...], path_tenant: str | None = None,
                 offered: list[str] = POST_ANSWERS) -> tuple[str, str]:
    """(tenant, chosen media type) after the credential, path, Accept, Content-Type and rate checks."""
    tenant = await _tenant(request, kinds)
    if path_tenant is not None and path_tenant != tenant:
        raise not_found()
    chosen = negotiation.require_accept(request.headers.get("Accept"), offered)
    if request.method == "POST":
        negotiation.require_json_body(request.content_type)
    _limit(request, tenant)
    return tenant, chosen


def path_id(request: web.Request, name: str) -> str:
    """An id of the path (SKU, sale id, customer ref), refused (400) if it could read as a path or query."""
    value = request.match_info[name]
    why = id_refusal(value)
    if why is not None:
        raise Problem(400, f"{name} {why}", field=name)
    return value


async def read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Problem(413, f"the body is larger than {MAX_BODY} bytes")
    try:
        async with asyncio.timeout(services_of(request).settings.api_read_timeout):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise Problem(413, f"the body is larger than {MAX_BODY} bytes") from None
    except TimeoutError:
        raise Problem(408, "the body was not sent in time") from None


class _Refused:
    """A JSON number or constant refused while parsing; reported with its path once the parse is done."""

    __slots__ = ("why",)

    def __init__(self, why: str):
        self.why = why


def _int(text: str) -> Any:
    return int(text) if len(text.lstrip("-")) <= MAX_DIGITS else _Refused(f"more than {MAX_DIGITS} digits")


def _decimal(text: str) -> Any:
    if len(text) > 4 * MAX_DIGITS:
        return _Refused(f"more than {MAX_DIGITS} digits")
    value = Decimal(text)
    if len(value.as_tuple().digits) > MAX_DIGITS:
        return _Refused(f"more than {MAX_DIGITS} digits")
    if value.adjusted() >= MAX_DIGITS or value.as_tuple().exponent < -MAX_DIGITS:  # type: ignore[operator]
        return _Refused(f"out of range (at most {MAX_DIGITS} digits, below 10^{MAX_DIGITS})")
    return value


def _constant(text: str) -> Any:
    return _Refused(f"{text} is not a number")


def _unencodable(text: str) -> bool:
    """A string with a lone surrogate (`"\\ud800"` in JSON): valid JSON, but not UTF-8 anywhere after."""
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _first_refused(value: Any) -> tuple[str, str] | None:
    """(path as the caller wrote it, why) of the first refused number or string, depth first."""
    todo: list[tuple[str, Any]] = [("", value)]
    while todo:
        path, item = todo.pop()
        if isinstance(item, _Refused):
            return path or "<body>", item.why
        if isinstance(item, str) and _unencodable(item):
            return path or "<body>", "not a valid Unicode string (a lone surrogate)"
        if isinstance(item, dict):
            for k in item:
                if _unencodable(k):
                    return (path or "<body>"), "a field name is not a valid Unicode string"
            todo.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            todo.extend((f"{path}[{n}]", v) for n, v in reversed(list(enumerate(item))))
    return None


def parse_json(raw: bytes) -> Any:
    """The body as JSON, numbers as int or Decimal; NaN, Infinity and numbers beyond `MAX_DIGITS` are
    a 400 naming the field (never a megabyte-long number somewhere later)."""
    try:
        body = json.loads(raw, parse_float=_decimal, parse_int=_int, parse_constant=_constant)
    except UnicodeDecodeError:
        raise Problem(400, "malformed JSON: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise Problem(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise Problem(400, "malformed JSON: nested too deeply") from None
    refused = _first_refused(body)
    if refused is not None:
        field, why = refused
        raise Problem(400, f"{field}: {why}", field=field)
    return body


def respond(answer: Answer, replayed: bool = False) -> web.Response:
    headers = dict(answer.headers)
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.Response(status=answer.status, body=answer.body, headers=headers)


# -- POSTs with an Idempotency-Key ------------------------------------------------------------------
Build = Callable[[str, Any, str, str], events.Published]  # (tenant, body, event id, timestamp)


def _ids(published: events.Published) -> dict:
    data = published[0][1].record["data"]
    return {k: data[k] for k in ("refund_id", "shipment_id", "cancellation_id", "sale_id") if data.get(k)}


async def keyed_post(request: web.Request, tenant: str, build: Build, wait_outcome: bool) -> web.Response:
    s = services_of(request)
    key = idempotency.check_key(request.headers.get("Idempotency-Key"))
    body = parse_json(await read_body(request))
    event_id = idempotency.event_id(tenant, key)
    # A 400 here is never stored. The fingerprint is of the mapped events (bounded by their schemas),
    # built at a fixed time so a retry without a time of its own fingerprints the same.
    fp = idempotency.fingerprint(request.method, request.path, build(tenant, body, event_id, events.FIXED_AT))

    async def execute(at: str) -> Answer:
        published = build(tenant, body, event_id, at)  # at: the key's first claim, the same on every retry
        fut = s.outcomes.expect(tenant, event_id) if wait_outcome else None
        try:
            await s.publisher.publish(published)
        except PublishError as exc:
            s.outcomes.forget(tenant, event_id, fut)
            raise Problem(503, f"the event could not be published, retry with the same key: {exc}",
                          headers={"Retry-After": "1"}) from None
        if fut is None:
            return answers.json_answer(202, {"event_ids": [p.record["event_id"] for _, p in published],
                                             "status": "ACCEPTED", "published": len(published)})
        ids = _ids(published)
        outcome = await s.outcomes.wait(fut, tenant, event_id, s.settings.api_outcome_wait)
        return answers.pending(ids, event_id) if outcome is None else answers.from_outcome(ids, event_id, outcome)

    async def refresh(stored: Answer) -> Answer | None:
        sale_id = stored.json().get("sale_id") if stored.status == 202 and wait_outcome else None
        if not sale_id:
            return None
        try:
            status, view = await s.workers.get_json("sales", sale_id, tenant)
        except Problem:
            return None
        return answers.from_sale_view(stored, view) if status == 200 else None

    mismatch = Problem(422, "this Idempotency-Key was used with another request (method, path or body)",
                       field="Idempotency-Key")
    answer, replayed = await s.idempotency.answer(tenant, IDEMPOTENCY, key, fp, execute, mismatch, refresh)
    return respond(answer, replayed)


async def pos_sale(request: web.Request) -> web.Response:
    tenant, _ = await intake(request, ("key",), request.match_info["company_id"])
    return await keyed_post(request, tenant, events.pos_sale, wait_outcome=True)


async def pos_refund(request: web.Request) -> web.Response:
    tenant, _ = await intake(request, ("key",), request.match_info["company_id"])
    return await keyed_post(request, tenant, events.pos_refund, wait_outcome=True)


async def order_import(request: web.Request) -> web.Response:
    tenant, _ = await intake(request, ("token",))
    return await keyed_post(request, tenant, events.order_import, wait_outcome=True)


def _order_action(event_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """POST /api/v1/orders/{order_id}/ship|cancel|release (SPEC 8): Bearer, Idempotency-Key, the pipeline's
    decision as the answer (201 accepted, 422 refused with its reasons) like the order import."""
    async def handler(request: web.Request) -> web.Response:
        tenant, _ = await intake(request, ("token",))
        order_id = path_id(request, "order_id")
        return await keyed_post(request, tenant, events.order_action(event_type, order_id), wait_outcome=True)
    return handler


async def price_list(request: web.Request) -> web.Response:
    """POST /api/v1/price-lists/{price_list_id} (SPEC 9): Bearer, Idempotency-Key; the whole list, published as a
    price_list.updated. The fold answers nothing for a price list: 202 once it is on the topic."""
    tenant, _ = await intake(request, ("token",))
    list_id = path_id(request, "price_list_id")
    return await keyed_post(request, tenant, events.price_list(list_id), wait_outcome=False)


async def inventory_adjust(request: web.Request) -> web.Response:
    tenant, _ = await intake(request, ("token",))
    return await keyed_post(request, tenant, events.inventory_adjust, wait_outcome=False)


# -- reads, answered by the workers -------------------------------------------------------------------
READ_CREDENTIALS = ("token", "key")


def _read(kind: str, param: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        tenant, _ = await intake(request, READ_CREDENTIALS, offered=[negotiation.JSON])
        status, body = await services_of(request).workers.get_json(kind, path_id(request, param), tenant)
        if status == 200:
            return web.json_response(body)
        message = body.get("error", "") if isinstance(body, dict) else ""
        if status == 404:
            raise not_found(message or "not found")
        raise Problem(503 if status >= 500 else 502, message or f"the workers answered {status}")
    return handler


async def snapshot(request: web.Request) -> web.StreamResponse:
    fmt = request.query.get("format")
    if fmt not in (None, "json", "csv"):
        raise Problem(400, f"format must be json or csv, not {fmt!r}", field="format")
    offered = {"csv": [negotiation.CSV], "json": [negotiation.JSON], None: [negotiation.JSON, negotiation.CSV]}[fmt]
    tenant, chosen = await intake(request, READ_CREDENTIALS, offered=offered)
    want = "csv" if chosen == negotiation.CSV else "json"
    out = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8" if want == "csv" else negotiation.JSON})
    try:
        async with services_of(request).workers.open("inventory/snapshot", tenant, format=want) as upstream:
            if upstream.status != 200:
                raise Problem(503, f"the workers answered {upstream.status}", headers={"Retry-After": "1"})
            request[STREAMING] = True
            await out.prepare(request)
            async for chunk in upstream.content.iter_chunked(64 * 1024):
                await out.write(chunk)
            await out.write_eof()
            return out
    except (aiohttp.ClientError, OSError) as exc:
        if out.prepared:  # half streamed: the connection is dropped, the client sees a cut answer
            raise
        raise Problem(503, f"the stream workers cannot answer right now ({exc.__class__.__name__})",
                      headers={"Retry-After": "1"}) from None


# -- signed webhooks --------------------------------------------------------------------------------------
async def _signed(request: web.Request) -> tuple[str, bytes, Any]:
    """(tenant, raw body, JSON) of a webhook whose signature verifies under the path tenant's secrets."""
    s = services_of(request)
    tenant = request.match_info["tenant"]
    negotiation.require_accept(request.headers.get("Accept"), POST_ANSWERS)
    negotiation.require_json_body(request.content_type)
    raw = await read_body(request)
    if not tenants.TENANT_RE.match(tenant):  # no such tenant can exist: the one refusal, no query
        raise unauthorized()
    secrets = await s.db.run(tenants.webhook_secrets, s.master_key, tenant)
    if not webhooks.signed(secrets, raw, request.headers.get(webhooks.SIGNATURE),
                           request.headers.get(webhooks.TIMESTAMP)):
        raise unauthorized()
    _limit(request, tenant)
    return tenant, raw, parse_json(raw)


async def _nonce(request: web.Request, tenant: str, scope: str, raw: bytes, nonce: str,
                 execute: Callable[[str], Awaitable[Answer]]) -> web.Response:
    s = services_of(request)
    mismatch = Problem(409, "this event_id was received before with another body", field="event_id")
    answer, replayed = await s.idempotency.answer(tenant, scope, nonce, idempotency.raw_fingerprint(raw), execute,
                                                  mismatch)
    return respond(answer, replayed)


async def erp_webhook(request: web.Request) -> web.Response:
    s = services_of(request)
    tenant, raw, body = await _signed(request)
    events.erp_webhook(tenant, body, events.now_iso())  # a 400 here is never stored

    async def execute(at: str) -> Answer:
        await _publish(s, events.erp_webhook(tenant, body, at))
        return answers.json_answer(200, {"event_id": body["event_id"], "status": "ACCEPTED"})

    return await _nonce(request, tenant, "erp", raw, body["event_id"], execute)


async def treasury_webhook(request: web.Request) -> web.Response:
    s = services_of(request)
    tenant, raw, body = await _signed(request)
    body = events.treasury_payment(tenant, body)
    order_id = body["data"]["order_id"]

    async def execute(at: str) -> Answer:
        status, sale = await s.workers.get_json("sales", order_id, tenant)
        if status == 404:
            raise Problem(422, f"unknown order {order_id!r}", field="data.order_id")
        if status != 200:
            raise Problem(503, f"the workers answered {status}", headers={"Retry-After": "1"})
        customer = sale.get("customer_ref") if "customer_ref" in sale else \
            await s.db.run(books_customer, tenant, order_id)
        if not customer:
            raise Problem(422, f"order {order_id!r} has no customer to credit", field="data.order_id")
        published = events.payment_received(tenant, body, customer, sale["currency"], at)
        event_id = body["event_id"]
        fut = s.outcomes.expect(tenant, event_id)
        try:
            await _publish(s, published)
        except Problem:
            s.outcomes.forget(tenant, event_id, fut)
            raise
        data = published[0][1].record["data"]
        ids = {"event_id": event_id, "payment_id": f"PAY-{data['payment_id']}", "invoice_id": data["invoice_id"],
               "customer_ref": data["customer_ref"]}
        outcome = await s.outcomes.wait(fut, tenant, event_id, s.settings.api_outcome_wait)
        if body["event_type"] == events.TREASURY_FAILED:
            return answers.payment_failure(ids, outcome)
        return answers.payment(ids, outcome)

    return await _nonce(request, tenant, "treasury", raw, body["event_id"], execute)


def books_customer(engine: Any, tenant: str, order_id: str) -> str | None:
    """The customer of a sale's invoice in the books: for workers whose `/sales/{id}` read does not
    name the customer (before issue 10), the sink's `invoices` row."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT customer_ref FROM invoices WHERE tenant_id = :t AND invoice_id = :i"),
                            {"t": tenant, "i": f"INV-{order_id}"}).scalar()


async def _publish(s: Services, published: events.Published) -> None:
    try:
        await s.publisher.publish(published)
    except PublishError as exc:
        raise Problem(503, f"the event could not be published, send it again: {exc}",
                      headers={"Retry-After": "1"}) from None


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi.document())


def build_app(services: Services) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[client_limit, metrics.timed, refusals])
    app[SERVICES] = services
    metrics.install(app)
    app.add_routes([
        web.post("/integrations/piti/companies/{company_id}/sales", pos_sale),
        web.post("/integrations/piti/companies/{company_id}/refunds", pos_refund),
        web.post("/api/v1/orders/import", order_import),
        web.post("/api/v1/orders/{order_id:[^/]+}/ship", _order_action("order.shipped")),
        web.post("/api/v1/orders/{order_id:[^/]+}/cancel", _order_action("order.cancelled")),
        web.post("/api/v1/orders/{order_id:[^/]+}/release", _order_action("order.released")),
        web.post("/api/v1/price-lists/{price_list_id:[^/]+}", price_list),
        web.post("/api/v1/inventory/adjust", inventory_adjust),
        web.get("/api/v1/inventory/snapshot", snapshot),
        web.get("/api/v1/stock/{sku:[^/]+}", _read("stock", "sku")),  # any id routes ({, } too), then is checked
        web.get("/api/v1/credit/{customer_ref:[^/]+}", _read("credit", "customer_ref")),
        web.get("/api/v1/sales/{sale_id:[^/]+}", _read("sales", "sale_id")),
        web.post("/webhooks/erp/{tenant}", erp_webhook),
        web.post("/webhooks/treasury/{tenant}", treasury_webhook),
        web.get("/health", health),
        web.get("/openapi.json", openapi_json),
    ])
    return app


def new_services(settings: Settings, db: Database, master_key: bytes, publisher: Publisher,
                 outcomes: OutcomeWaiter, workers: Workers) -> Services:
    return Services(settings, db, master_key, publisher, outcomes, workers,
                    RateLimiter(settings.api_rate_limit, settings.api_rate_burst),
                    Idempotency(db.run, timedelta(days=settings.api_idempotency_days), settings.api_duplicate_wait),
                    RateLimiter(settings.api_client_rate_limit, settings.api_client_rate_burst))
