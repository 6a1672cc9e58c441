"""`make demo`'s API part: start `stockledger api` beside the demo worker, give the demo tenant
credentials, and a curl line for every endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable

from stockledger.config import Settings


def start(settings: Settings, tenant: str, progress: Callable[[str], None]):
    """Start the API in the background (`stockledger stack down` stops it) and return fresh
    credentials of `tenant` (created, or rotated at once when it exists: they are shown only once)."""
    from datetime import timedelta

    import requests
    from sqlalchemy import create_engine

    from cli.demo import start_background
    from cli.testing import wait_for
    from stockledger import tenants
    from stockledger.db import migrate

    engine = create_engine(settings.database_url)
    try:
        migrate.upgrade(engine)
        try:
            creds = tenants.add(engine, settings.master_key(), tenant)
        except tenants.TenantExists:
            fresh = {}
            for kind in tenants.KINDS:
                fresh.update(tenants.rotate(engine, settings.master_key(), tenant, kind,
                                            timedelta(0)).as_dict())
            creds = tenants.Credentials(**fresh)
    finally:
        engine.dispose()
    start_background(settings, "api-demo", ["api", "--port", str(settings.api_port)], progress)
    url = f"http://127.0.0.1:{settings.api_port}"

    def healthy() -> bool:
        try:
            return requests.get(url + "/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(healthy, 90, "the API to be ready")
    return creds


def curl_lines(settings: Settings, creds) -> list[str]:
    url = f"http://127.0.0.1:{settings.api_port}"
    t = creds.tenant
    key = f"-H 'X-Integration-Key: {creds.integration_key}'"
    bearer = f"-H 'Authorization: Bearer {creds.bearer_token}'"
    js = "-H 'Content-Type: application/json'"

    def post(path: str, auth: str, idem: str, body: dict) -> str:
        return f"curl -si -X POST {url}{path} {auth} -H 'Idempotency-Key: {idem}' {js} -d '{json.dumps(body)}'"

    def signed(door: str, body: dict) -> str:
        text = json.dumps(body)
        return (f"BODY='{text}'; curl -si -X POST {url}/webhooks/{door}/{t} {js} -H \"X-ERP-Signature: "
                f"$(printf %s \"$BODY\" | openssl dgst -sha256 -hmac '{creds.webhook_secret}' | cut -d' ' -f2)\" "
                f"-d \"$BODY\"")

    sale = {"sale_id": "DEMO-1", "currency": "KES", "payment_terms": "PAID",
            "line_items": [{"sku": "SKU-001-RED", "quantity": 1}]}
    refund = {"refund_id": "DEMO-R1", "sale_id": "DEMO-1", "lines": [{"sku": "SKU-001-RED", "quantity": 1}],
              "restock": True, "refund_method": "CASH"}
    order = {"order_id": "ORD-DEMO-1", "customer_ref": "CUST-2", "line_items": [{"sku": "SKU-002-RED", "quantity": 1}]}
    adjust = {"reference_id": "ADJ-DEMO-1", "adjustments": [{"sku": "SKU-003-RED", "quantity_change": 5,
                                                             "warehouse_id": "WH-MAIN"}]}
    change = {"event_id": "evt-demo-1", "event_type": "inventory.change", "timestamp": "2026-01-06T09:00:00Z",
              "data": {"sku": "SKU-004-RED", "new_quantity": 42, "reason": "COUNT"}}
    payment = {"event_id": "evt-demo-pay-1", "event_type": "treasury.payment.success",
               "timestamp": "2026-01-06T09:05:00Z",
               "data": {"payment_id": "TP-1", "order_id": "ORD-DEMO-1", "amount": 100.00,
                        "provider_reference": "mpesa-ref-123"}}
    return [
        f"  POS sale (000):       "
        f"{post(f'/integrations/piti/companies/{t}/sales', key, 'piti:sale:DEMO-1:completed', sale)}",
        f"  POS refund (000):     "
        f"{post(f'/integrations/piti/companies/{t}/refunds', key, 'piti:refund:DEMO-R1', refund)}",
        f"  order import (003):   {post('/api/v1/orders/import', bearer, 'ord:ORD-DEMO-1', order)}",
        f"  inventory adjust:     {post('/api/v1/inventory/adjust', bearer, 'adj:ADJ-DEMO-1', adjust)}",
        f"  snapshot (CSV):       curl -s {url}/api/v1/inventory/snapshot {bearer} -H 'Accept: text/csv'",
        f"  stock of a SKU:       curl -s {url}/api/v1/stock/SKU-001-RED {bearer}",
        f"  credit:               curl -s {url}/api/v1/credit/CUST-2 {bearer}",
        f"  a sale:               curl -s {url}/api/v1/sales/DEMO-1 {bearer}",
        f"  ERP webhook (003):    {signed('erp', change)}",
        f"  treasury (001):       {signed('treasury', payment)}",
    ]
