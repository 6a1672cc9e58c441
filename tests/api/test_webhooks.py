"""The signed door through a real `stockledger api` and worker: seed 003's catalog.update and
inventory.change, seed 002's inventory.stock.updated and seed 001's treasury.payment.success change
stock and credit; a nonce seen again changes nothing; a flipped byte, a wrong or old secret and a
stale timestamp are refused; both secrets verify during a rotation overlap, only the new after it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.testing import settle
from stockledger.security import sign
from tests.api.support import dumps, problem, records
from tests.streams.test_sales_pipeline import catalog, customer

SEED003 = Path(__file__).resolve().parents[1] / "fixtures" / "seed003"


def seed(name: str) -> dict:
    return json.loads((SEED003 / name).read_text())


def inventory_change(event_id: str, qty: int, sku: str = "A", minute: int = 30) -> dict:
    return {"event_id": event_id, "event_type": "inventory.change", "timestamp": f"2026-04-01T10:{minute:02d}:00Z",
            "data": {"sku": sku, "location_id": "WH-MAIN", "new_quantity": qty, "reason": "COUNT"}}


def test_seed_003_catalog_and_inventory_change_are_applied_once_per_event_id(api, creds, settings, worker):
    t, secret = creds.tenant, creds.secret
    cat = api.webhook("erp", t, secret, seed("catalog_update.json"))
    assert (cat.status_code, cat.json()) == (200, {"event_id": "evt_550e8400-e29b", "status": "ACCEPTED"})
    change = seed("inventory_change.json")
    first = api.webhook("erp", t, secret, change)
    assert first.status_code == 200, first.text
    again = api.webhook("erp", t, secret, change)
    assert (again.status_code, again.content, again.headers["Idempotent-Replayed"]) == (200, first.content, "true")
    other = problem(api.webhook("erp", t, secret, {**change, "data": {**change["data"], "new_quantity": 1}}), 409)
    assert other["field"] == "event_id"
    assert len(records(settings, "catalog.updates", t)) == 1
    [published] = records(settings, "inventory.changes", t)
    assert (published["key"], published["value"]["event_id"], published["value"]["tenant_id"]) == \
        (f"{t}:IPH15-128-BLK", "evt_inventory_8899", t)
    settle(settings)
    assert api.read(creds, "/api/v1/stock/IPH15-128-BLK").json()["on_hand"] == 49


def test_seed_002_stock_updated_sets_an_absolute_count(api, creds, publish, settings, worker):
    publish("catalog.updates", [catalog(creds.tenant, [("A", "10.00", 10)])])
    body = {"event_id": "evt-002-1", "event_type": "inventory.stock.updated", "tenant_id": creds.tenant,
            "timestamp": "2026-05-05T10:30:00Z", "data": {"item_id": "A", "stock_level": 100, "warehouse_id": "WH-9"}}
    assert api.webhook("erp", creds.tenant, creds.secret, body).status_code == 200
    [published] = records(settings, "inventory.changes", creds.tenant)
    assert published["value"]["data"] == {"sku": "A", "location_id": "WH-9", "new_quantity": 100,
                                          "quantity_change": None, "reason": "COUNT", "reference_id": None}
    settle(settings)
    stock = api.read(creds, "/api/v1/stock/A").json()
    assert (stock["on_hand"], stock["last_change"]["location_id"]) == (100, "WH-9")
    bad = {**body, "event_id": "evt-002-2", "data": {"item_id": "A", "stock_level": "lots"}}
    assert problem(api.webhook("erp", creds.tenant, creds.secret, bad), 400)["field"] == "data.stock_level"
    wrong_tenant = {**body, "event_id": "evt-002-3", "tenant_id": "someone-else"}
    assert problem(api.webhook("erp", creds.tenant, creds.secret, wrong_tenant), 400)["field"] == "tenant_id"
    too_long = {**body, "event_id": "e" * 256}
    assert problem(api.webhook("erp", creds.tenant, creds.secret, too_long), 400)["field"] == "event_id"
    assert len(records(settings, "inventory.changes", creds.tenant)) == 1


def test_seed_001_treasury_payment_reduces_the_customer_balance(api, creds, publish, settings, worker, api_engine):
    t = creds.tenant
    publish("catalog.updates", [catalog(t, [("A", "1000.00", 10)])])
    publish("customers", [customer(t, "C1", "10000")])
    settle(settings)
    placed = api.commerce(creds, "/api/v1/orders/import", {"order_id": "ORD-T1", "customer_ref": "C1",
                                                           "line_items": [{"sku": "A", "quantity": 2}]}, "ord-t1")
    assert placed.status_code == 201 and placed.json()["total"] == "2320.00", placed.text
    view = api.read(creds, "/api/v1/sales/ORD-T1").json()
    if "customer_ref" not in view:  # workers before issue 10 do not name it: the API asks the books
        from tests.connectors.support import SinkThread, wait_rows

        with SinkThread(settings, settings.database_url, "", "api-tests-sink"):
            wait_rows(api_engine, "invoices", t, 1, timeout=120)
    pay = {"event_id": "evt-pay-1", "event_type": "treasury.payment.success", "tenant_id": t,
           "timestamp": "2026-05-05T10:30:00Z",
           "data": {"payment_id": "P1", "order_id": "ORD-T1", "amount": 1500.00, "provider_reference": "mpesa-ref-123"}}
    paid = api.webhook("treasury", t, creds.secret, pay, timestamp=True)
    assert paid.status_code == 200, paid.text
    assert paid.json() == {"event_id": "evt-pay-1", "payment_id": "PAY-P1", "invoice_id": "INV-ORD-T1",
                           "customer_ref": "C1", "status": "ACCEPTED", "journal_entry_id": "JE-PAY-P1",
                           "amount": "1500.00", "currency": "USD"}
    replay = api.webhook("treasury", t, creds.secret, pay, timestamp=True)
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (200, "true")
    unknown = {**pay, "event_id": "evt-pay-2", "data": {**pay["data"], "order_id": "ORD-NOPE"}}
    assert problem(api.webhook("treasury", t, creds.secret, unknown), 422)["field"] == "data.order_id"
    [published] = records(settings, "payments", t)
    assert published["value"]["data"] == {"payment_id": "P1", "customer_ref": "C1", "invoice_id": "INV-ORD-T1",
                                          "amount": "1500.00", "currency": "USD", "method": "MOBILE",
                                          "reference": "mpesa-ref-123", "failure_reason": None}
    over = {**pay, "event_id": "evt-pay-3", "data": {**pay["data"], "payment_id": "P3", "amount": 5000.00}}
    refused = problem(api.webhook("treasury", t, creds.secret, over), 422)
    assert (refused["outcome"], refused["payment_id"]) == ("REFUSED", "PAY-P3") and refused["reasons"]
    settle(settings)
    credit = api.read(creds, "/api/v1/credit/C1").json()
    assert (credit["outstanding"], credit["available"]) == ("820.00", "9180.00")
    assert [(i["invoice_id"], i["status"]) for i in credit["open_invoices"]] == [("INV-ORD-T1", "PARTIALLY_PAID")]


def test_bad_signatures_and_timestamps_are_refused_alike(api, creds, api_engine, settings):
    from stockledger import tenants

    t, secret = creds.tenant, creds.secret
    body = dumps(inventory_change("evt-sig-1", 5))
    flipped = bytearray(body)
    flipped[body.index(b"5")] = ord("6")
    refusals = [
        api.webhook("erp", t, secret, None, raw=bytes(flipped), signature=sign(secret, body)),
        api.webhook("erp", t, "not-the-secret", None, raw=body),
        api.webhook("erp", t, secret, None, raw=body, signature="sha256=" + "0" * 64),
        api.post(f"/webhooks/erp/{t}", raw=body),  # no signature at all
        api.webhook("erp", t, secret, None, raw=body, timestamp=int(time.time()) - 301),
        api.webhook("erp", t, secret, None, raw=body, timestamp=int(time.time()) + 301),
        # signed over the body alone, but a timestamp sent: the signature must cover it
        api.webhook("erp", t, secret, None, raw=body, timestamp=True, signature=sign(secret, body)),
        api.webhook("erp", "no-such-tenant", secret, None, raw=body),
    ]
    other = tenants.add(api_engine, settings.master_key(), t + "-b")
    refusals.append(api.webhook("erp", other.tenant, secret, None, raw=body))  # A's secret, B's path
    details = {problem(r, 401)["detail"] for r in refusals}
    assert len(details) == 1
    assert records(settings, "inventory.changes", t) == [] and records(settings, "inventory.changes",
                                                                       other.tenant) == []
    with_prefix = api.webhook("erp", t, secret, None, raw=body, signature="sha256=" + sign(secret, body))
    assert with_prefix.status_code == 200
    fresh = api.webhook("erp", t, secret, inventory_change("evt-sig-2", 6), timestamp=int(time.time()) - 250)
    assert fresh.status_code == 200
    problem(api.post(f"/webhooks/erp/{t}", raw=body, headers={"Content-Type": "text/plain",
                                                              "X-ERP-Signature": sign(secret, body)}), 415)
    assert len(records(settings, "inventory.changes", t)) == 2


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=120)


def test_during_a_rotation_overlap_both_secrets_verify_and_after_it_only_the_new(api, creds, settings):
    t, old = creds.tenant, creds.secret
    rotated = _cli("tenant", "rotate", t, "webhook-secret", "--overlap", "6s", "--json")
    assert rotated.returncode == 0, rotated.stderr
    rotated_at = time.monotonic()
    new = json.loads(rotated.stdout)["webhook_secret"]
    assert set(json.loads(rotated.stdout)) == {"tenant", "webhook_secret"} and new != old
    assert api.webhook("erp", t, old, inventory_change("evt-rot-1", 1)).status_code == 200
    assert api.webhook("erp", t, new, inventory_change("evt-rot-2", 2)).status_code == 200
    time.sleep(max(0.0, rotated_at + 6.5 - time.monotonic()))
    problem(api.webhook("erp", t, old, inventory_change("evt-rot-3", 3)), 401)
    assert api.webhook("erp", t, new, inventory_change("evt-rot-4", 4)).status_code == 200
    assert sorted(r["value"]["event_id"] for r in records(settings, "inventory.changes", t)) == [
        "evt-rot-1", "evt-rot-2", "evt-rot-4"]


@pytest.mark.parametrize("kind,header", [("key", "X-Integration-Key"), ("token", "Authorization")])
def test_a_rotated_key_or_token_works_for_the_overlap_and_0_ends_it(api, creds, kind, header):
    def read(value: str) -> int:
        sent = f"Bearer {value}" if header == "Authorization" else value
        return api.get("/api/v1/stock/NOPE", headers={header: sent}).status_code

    old = creds.key if kind == "key" else creds.token
    first = json.loads(_cli("tenant", "rotate", creds.tenant, kind, "--json").stdout)
    new = first["integration_key" if kind == "key" else "bearer_token"]
    assert (read(old), read(new)) == (404, 404)  # both authenticate (the SKU is unknown)
    ended = _cli("tenant", "rotate", creds.tenant, kind, "--overlap", "0", "--json")
    newest = json.loads(ended.stdout)["integration_key" if kind == "key" else "bearer_token"]
    assert (read(old), read(new), read(newest)) == (401, 401, 404)
