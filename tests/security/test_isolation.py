"""Issue 15, tenant isolation: the exploits seen on main must fail, over real sockets, with two
workers (the API asks the first; tenants A and B both live on the second, so every read of theirs is
forwarded) and exact status and body each."""

from __future__ import annotations

import threading
from urllib.parse import quote

import requests

from cli.testing import settle
from tests.api.support import problem

CRAFTED = "..%2Finventory%2Fsnapshot%3Ftenant%3D{victim}"


def bad_request(detail: str, field: str) -> dict:
    return {"type": "about:blank", "title": "Bad Request", "status": 400, "detail": detail, "field": field}


def test_the_tenants_under_attack_live_on_the_worker_the_api_does_not_ask(group, tenants_ab):
    a, b = tenants_ab
    assert group.owner(a.tenant) is group.back and group.owner(b.tenant) is group.back
    assert group.back.url != group.front.url


def test_a_legitimate_read_is_forwarded_and_answers_only_its_tenant(sec_api, tenants_ab):
    api, _ = sec_api
    a, _b = tenants_ab
    stock = api.read(a, "/api/v1/stock/A-SKU")
    assert stock.status_code == 200, stock.text
    assert (stock.json()["tenant_id"], stock.json()["sku"], stock.json()["on_hand"]) == (a.tenant, "A-SKU", 10)
    # any other character travels quoted and comes back whole, through both workers ({ and } too: the
    # fuzz test found them unroutable, a 502)
    odd = "A{B} C+D;E@F\u00e9\u2028"
    got = api.read(a, "/api/v1/stock/" + quote(odd, safe=""))
    assert (got.status_code, got.json()["detail"]) == (404, f"unknown SKU {odd!r} for tenant {a.tenant!r}")
    pay = {"event_id": "evt-odd", "event_type": "treasury.payment.success",
           "data": {"payment_id": "P-odd", "order_id": odd, "amount": 1}}
    got = api.webhook("treasury", a.tenant, a.secret, pay, timestamp=True)
    assert (got.status_code, got.json()["detail"]) == (422, f"unknown order {odd!r}")
    snap = api.read(a, "/api/v1/inventory/snapshot")
    assert (snap.status_code, snap.json()) == (200, [{"sku": "A-SKU", "qty": 10, "on_hand": 10, "reserved": 0,
                                                       "available": 10}])


def test_a_crafted_id_is_refused_at_the_api_never_forwarded(sec_api, tenants_ab):
    api, _ = sec_api
    a, b = tenants_ab
    crafted = CRAFTED.format(victim=b.tenant)
    for door, field in (("stock", "sku"), ("sales", "sale_id"), ("credit", "customer_ref")):
        got = api.read(a, f"/api/v1/{door}/{crafted}")
        assert (got.status_code, got.json()) == (400, bad_request(f"{field} must not contain '/'", field)), got.text
        assert b.tenant not in got.text and "VICTIM" not in got.text
    for raw, why in (("X%3Ftenant%3D" + b.tenant, "contain '?'"), ("X%23frag", "contain '#'"),
                     ("X%2541", "contain '%'"), ("..X", "contain '..'"), ("X%0AY", "contain control characters"),
                     ("X%7FY", "contain control characters"), ("%2E", "be '.'")):
        got = api.read(a, f"/api/v1/stock/{raw}")
        assert (got.status_code, got.json()) == (400, bad_request(f"sku must not {why}", "sku")), raw


def test_a_crafted_id_is_refused_at_the_workers(group, tenants_ab):
    a, b = tenants_ab
    crafted = CRAFTED.format(victim=b.tenant)
    for w in (group.front, group.back):
        for door, field in (("stock", "sku"), ("sales", "sale_id"), ("credit", "customer_ref")):
            got = requests.get(f"{w.url}/{door}/{crafted}?tenant={a.tenant}", timeout=30)
            assert (got.status_code, got.json()) == (400, {"error": f"{field} must not contain '/'",
                                                           "field": field}), got.text


def test_a_repeated_tenant_parameter_is_refused_at_the_workers(group, tenants_ab):
    a, b = tenants_ab
    for w in (group.front, group.back):
        for path in ("/stock/VICTIM-SKU-7731", "/inventory/snapshot", "/credit/VICTIM-CUST-7731"):
            got = requests.get(f"{w.url}{path}?tenant={a.tenant}&tenant={b.tenant}", timeout=30)
            assert (got.status_code, got.json()) == (400, {"error": "query parameter 'tenant' is given more than once"})


def test_the_api_never_takes_a_tenant_from_the_query(sec_api, tenants_ab):
    api, _ = sec_api
    a, b = tenants_ab
    got = api.read(a, f"/api/v1/stock/VICTIM-SKU-7731?tenant={b.tenant}&tenant={b.tenant}")
    body = problem(got, 404)
    assert body["detail"] == f"unknown SKU 'VICTIM-SKU-7731' for tenant {a.tenant!r}"
    snap = api.read(a, "/api/v1/inventory/snapshot", tenant=b.tenant)
    assert snap.status_code == 200 and "VICTIM" not in snap.text


def test_the_treasury_order_id_cannot_become_a_path(sec_api, tenants_ab):
    api, _ = sec_api
    a, b = tenants_ab
    for n, (order_id, why) in enumerate(((f"../inventory/snapshot?tenant={b.tenant}", "must not contain '/'"),
                                         (f"X?tenant={b.tenant}", "must not contain '?'"),
                                         (".", "must not be '.'"))):  # found by the fuzz test: a 502 before
        pay = {"event_id": f"evt-craft-{n}", "event_type": "treasury.payment.success",
               "data": {"payment_id": "P-craft", "order_id": order_id, "amount": 1}}
        got = api.webhook("treasury", a.tenant, a.secret, pay, timestamp=True)
        assert (got.status_code, got.json()) == (400, bad_request(f"data.order_id: {why}", "data.order_id")), got.text


def test_faust_built_in_views_are_off(group):
    for w in (group.front, group.back):
        for path in ("/router/", "/table/", "/graph/", "/performance/"):
            got = requests.get(w.url + path, timeout=10)
            assert got.status_code == 404, (w.url, path, got.status_code, got.text)
        got = requests.get(w.url + "/", timeout=10)
        assert (got.status_code, got.json()) in ((404, None), (200, {"status": "OK"}))


def _pay(api, creds, amount: str, event_id: str, payment_id: str, start: threading.Barrier, out: dict) -> None:
    pay = {"event_id": event_id, "event_type": "treasury.payment.success",
           "data": {"payment_id": payment_id, "order_id": "ORD-W1", "amount": amount}}
    start.wait(60)
    out[creds.tenant] = api.webhook("treasury", creds.tenant, creds.secret, pay, timestamp=True)


def test_a_tenant_cannot_take_another_tenants_outcome_waiter(sec_api, tenants_ab, settings):
    """A and B pay their own orders with the same event id at the same moment: each gets its own
    payment's answer (the waiter is keyed by tenant and event id), never the other's."""
    api, _ = sec_api
    a, b = tenants_ab
    for creds, sku, cust in ((a, "A-SKU", "A-CUST"), (b, "VICTIM-SKU-7731", "VICTIM-CUST-7731")):
        placed = api.commerce(creds, "/api/v1/orders/import", {"order_id": "ORD-W1", "customer_ref": cust,
                                                               "line_items": [{"sku": sku, "quantity": 1}]},
                              f"ord-w1-{creds.tenant}")
        assert placed.status_code == 201, placed.text
    settle(settings)
    for n in range(3):
        event_id = f"evt-shared-waiter-{n}"
        start, out = threading.Barrier(2), {}
        threads = [threading.Thread(target=_pay, args=(api, c, amount, event_id, f"P-{c.tenant}-{n}", start, out))
                   for c, amount in ((a, "10.00"), (b, "20.00"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for creds, amount, cust in ((a, "10.00", "A-CUST"), (b, "20.00", "VICTIM-CUST-7731")):
            got = out[creds.tenant]
            assert (got.status_code, got.json()) == (200, {
                "event_id": event_id, "payment_id": f"PAY-P-{creds.tenant}-{n}", "invoice_id": "INV-ORD-W1",
                "customer_ref": cust, "status": "ACCEPTED", "journal_entry_id": f"JE-PAY-P-{creds.tenant}-{n}",
                "amount": amount, "currency": "USD"}), got.text
