"""The API's description (OpenAPI 3.0), served at `GET /openapi.json`: every door, its credential,
its body and its answers. Written by hand next to the routes (api/app.py) it describes; the security
tests fuzz the live API from it (tests/security/test_fuzz.py)."""

from __future__ import annotations

from typing import Any

ID = {"type": "string", "minLength": 1, "maxLength": 255}
MONEY = {"oneOf": [{"type": "string"}, {"type": "number"}]}
QUANTITY = {"type": "integer"}
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _obj(required: list[str], props: dict[str, Any], closed: bool = True) -> dict:
    out: dict[str, Any] = {"type": "object", "required": required, "properties": props}
    if closed:
        out["additionalProperties"] = False
    return out


SALE_LINE = _obj(["sku", "quantity"], {"sku": ID, "quantity": QUANTITY, "unit_price": MONEY,
                                       "discount_percent": MONEY, "tax_percent": MONEY})
SALE = _obj(["sale_id", "currency", "payment_terms", "line_items"], {
    "sale_id": ID, "channel": {"type": "string", "enum": ["POS", "WEB", "ERP"]},
    "customer_ref": {"type": "string", "nullable": True}, "currency": {"type": "string"},
    "location_id": {"type": "string", "nullable": True},
    "payment_terms": {"type": "string", "enum": ["PAID", "ON_ACCOUNT"]},
    "line_items": {"type": "array", "items": SALE_LINE},
    "payments": {"type": "array", "items": _obj(["method", "amount"], {
        "method": {"type": "string", "enum": ["CASH", "CARD", "MOBILE", "BANK"]}, "amount": MONEY,
        "reference": {"type": "string", "nullable": True}})},
})
REFUND = _obj(["refund_id", "sale_id", "lines", "restock", "refund_method"], {
    "refund_id": ID, "sale_id": ID,
    "lines": {"type": "array", "items": _obj(["sku", "quantity"], {"sku": ID, "quantity": QUANTITY})},
    "restock": {"type": "boolean"},
    "refund_method": {"type": "string", "enum": ["CASH", "CARD", "MOBILE", "BANK", "CREDIT"]},
    "reason": {"type": "string", "nullable": True},
})
ORDER = _obj(["order_id", "line_items"], {
    "order_id": ID, "order_date": {"type": "string", "format": "date-time"}, "customer_ref": ID,
    "currency": {"type": "string"}, "payment_terms": {"type": "string", "enum": ["PAID", "ON_ACCOUNT"]},
    "tenant_id": ID,
    "line_items": {"type": "array", "items": _obj(["sku", "quantity"], {
        "sku": ID, "quantity": QUANTITY, "unit_price": MONEY, "discount_percent": MONEY, "tax_percent": MONEY})},
})
ORDER_LINES = {"type": "array", "items": _obj(["sku", "quantity"], {"sku": ID, "quantity": QUANTITY})}
SHIP = _obj(["shipment_id", "lines"], {"shipment_id": ID, "lines": ORDER_LINES,
                                       "location_id": {"type": "string", "nullable": True}})
CANCEL = _obj(["cancellation_id"], {"cancellation_id": ID, "lines": {**ORDER_LINES, "nullable": True},
                                    "reason": {"type": "string", "nullable": True}})
RELEASE = _obj(["released_by"], {"released_by": ID})
PRICE_LIST = _obj(["currency", "items"], {
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    "valid_from": {"type": "string", "format": "date-time", "nullable": True},
    "valid_to": {"type": "string", "format": "date-time", "nullable": True},
    "items": {"type": "array", "maxItems": 10_000, "items": _obj(["sku", "unit_price"], {
        "sku": ID, "unit_price": MONEY, "min_quantity": {"type": "integer", "minimum": 1}})},
})
ADJUST = _obj(["reference_id", "adjustments"], {
    "reference_id": ID, "timestamp": {"type": "string", "format": "date-time"}, "tenant_id": ID,
    "adjustments": {"type": "array", "minItems": 1, "items": _obj(["sku", "quantity_change"], {
        "sku": ID, "quantity_change": QUANTITY, "warehouse_id": ID})},
})
ERP_EVENT = _obj(["event_id", "event_type", "data"], {
    "event_id": ID, "event_type": {"type": "string", "enum": ["catalog.update", "inventory.change",
                                                              "inventory.stock.updated"]},
    "timestamp": {"type": "string", "format": "date-time"}, "data": {"type": "object"}}, closed=False)
TREASURY = _obj(["event_id", "event_type", "data"], {
    "event_id": ID, "event_type": {"type": "string", "enum": ["treasury.payment.success", "treasury.payment.failed"]},
    "timestamp": {"type": "string", "format": "date-time"},
    "data": _obj(["payment_id", "order_id", "amount"], {"payment_id": ID, "order_id": ID, "amount": MONEY,
                                                       "method": {"type": "string"},
                                                       "provider_reference": {"type": "string"},
                                                       "reason": {"type": "string"}}, closed=False)},
    closed=False)


def _answers(*codes: int, ok: dict[int, str] | None = None) -> dict:
    out: dict[str, Any] = {}
    for code, what in (ok or {}).items():
        out[str(code)] = {"description": what, "content": {"application/json": {"schema": {}}}}
    for code in codes:
        out[str(code)] = {"description": "refused", "content": PROBLEM}
    return out


REFUSALS = (400, 401, 404, 406, 408, 413, 415, 422, 429, 503)
IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": True,
                   "schema": {"type": "string", "minLength": 1, "maxLength": 255}}
SIGNATURE = [{"name": "X-ERP-Signature", "in": "header", "required": True, "schema": {"type": "string"}},
             {"name": "X-ERP-Timestamp", "in": "header", "required": False, "schema": {"type": "string"}}]


def _post(summary: str, body: dict, security: list, params: list, ok: dict[int, str]) -> dict:
    return {"post": {"summary": summary, "security": security, "parameters": params,
                     "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                     "responses": _answers(*REFUSALS, 409, ok=ok)}}


def _path(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": ID}


def _read(summary: str, param: str | None) -> dict:
    return {"get": {"summary": summary, "security": [{"bearer": []}, {"integrationKey": []}],
                    "parameters": [_path(param)] if param else [],
                    "responses": _answers(400, 401, 404, 406, 429, 502, 503, ok={200: "the workers' read"})}}


def document() -> dict:
    pos: list[dict[str, list[str]]] = [{"integrationKey": []}]
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    sale_ok = {201: "accepted, with its documents", 202: "not decided yet (Location)"}
    return {
        "openapi": "3.0.3",
        "info": {"title": "stockledger API", "version": "1",
                 "description": "The seeds' doors in front of the topics (SPEC section 6)."},
        "paths": {
            "/integrations/piti/companies/{company_id}/sales": {
                **_post("POS sale (seed 000)", SALE, pos, [_path("company_id"), IDEMPOTENCY_KEY], sale_ok)},
            "/integrations/piti/companies/{company_id}/refunds": {
                **_post("POS refund (seed 000)", REFUND, pos, [_path("company_id"), IDEMPOTENCY_KEY], sale_ok)},
            "/api/v1/orders/import": _post("order import (seed 003)", ORDER, bearer, [IDEMPOTENCY_KEY], sale_ok),
            "/api/v1/orders/{order_id}/ship": _post("ship an order's reserved lines (SPEC 8)", SHIP, bearer,
                                                    [_path("order_id"), IDEMPOTENCY_KEY], sale_ok),
            "/api/v1/orders/{order_id}/cancel": _post("cancel an order (SPEC 8)", CANCEL, bearer,
                                                      [_path("order_id"), IDEMPOTENCY_KEY], sale_ok),
            "/api/v1/orders/{order_id}/release": _post("release a held order (SPEC 8)", RELEASE, bearer,
                                                       [_path("order_id"), IDEMPOTENCY_KEY], sale_ok),
            "/api/v1/price-lists/{price_list_id}": _post("a price list, whole (SPEC 9)", PRICE_LIST, bearer,
                                                         [_path("price_list_id"), IDEMPOTENCY_KEY],
                                                         {202: "published"}),
            "/api/v1/inventory/adjust": _post("inventory adjust (seed 003)", ADJUST, bearer, [IDEMPOTENCY_KEY],
                                              {202: "published"}),
            "/api/v1/inventory/snapshot": {"get": {
                "summary": "every SKU of the tenant (seed 003 5.1)",
                "security": [{"bearer": []}, {"integrationKey": []}],
                "parameters": [{"name": "format", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": ["json", "csv"]}}],
                "responses": {"200": {"description": "streamed", "content": {"application/json": {"schema": {}},
                                                                             "text/csv": {"schema": {}}}},
                              **_answers(400, 401, 406, 429, 503)}}},
            "/api/v1/stock/{sku}": _read("a SKU's stock", "sku"),
            "/api/v1/credit/{customer_ref}": _read("a customer's credit", "customer_ref"),
            "/api/v1/sales/{sale_id}": _read("a sale's outcome", "sale_id"),
            "/webhooks/erp/{tenant}": _post("signed ERP webhook (seeds 003, 002)", ERP_EVENT, [],
                                            [_path("tenant"), *SIGNATURE], {200: "accepted"}),
            "/webhooks/treasury/{tenant}": _post("signed treasury payment (seed 001)", TREASURY, [],
                                                 [_path("tenant"), *SIGNATURE], {200: "applied", 202: "pending"}),
            "/health": {"get": {"summary": "liveness", "security": [],
                                "responses": {"200": {"description": "ok",
                                                      "content": {"application/json": {"schema": {}}}}}}},
        },
        "components": {
            "securitySchemes": {
                "integrationKey": {"type": "apiKey", "in": "header", "name": "X-Integration-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {"Problem": {"type": "object", "required": ["type", "title", "status", "detail"],
                                    "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                                                   "status": {"type": "integer"}, "detail": {"type": "string"},
                                                   "field": {"type": "string"}}}},
        },
    }
