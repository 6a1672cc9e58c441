"""Web orders paid by the treasury (seeds 001 and 003) through a real `stockledger api`, worker and sink:
an imported guest order is payment due (an open invoice, no cash), `treasury.payment.success` makes it
PAID in the books with a journal entry from clearing to receivables, and `treasury.payment.failed` is
recorded on the sale and visible on the sale view."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text

from cli.testing import settle
from tests.api.support import problem, records
from tests.connectors.support import SinkThread, unbalanced_entries, wait_rows
from tests.streams.test_sales_pipeline import catalog

D = Decimal


def test_a_guest_web_order_is_payment_due_until_the_treasury_pays_and_a_failure_shows_on_the_sale(
        api, creds, publish, settings, worker, api_engine):
    t = creds.tenant
    publish("catalog.updates", [catalog(t, [("A", "1000.00", 10)])])
    settle(settings)
    for order_id in ("WEB-1", "WEB-2"):
        placed = api.commerce(creds, "/api/v1/orders/import",
                              {"order_id": order_id, "line_items": [{"sku": "A", "quantity": 1}]}, f"imp-{order_id}")
        assert placed.status_code == 201, placed.text
        assert (placed.json()["payment_ids"], placed.json()["total"]) == ([], "1160.00")
    view = api.read(creds, "/api/v1/sales/WEB-1").json()
    assert (view["status"], view["customer_ref"], view["payment_terms"]) == ("ACCEPTED", "GUEST-WEB-1", "ON_ACCOUNT")
    assert view["invoice"] == {"invoice_id": "INV-WEB-1", "status": "UNPAID", "total": "1160.00", "paid": "0.00",
                               "credited": "0.00", "remaining": "1160.00", "due_date": view["invoice"]["due_date"]}
    assert view["payment_failures"] == []

    pay = {"event_id": "evt-tp-1", "event_type": "treasury.payment.success", "tenant_id": t,
           "timestamp": "2026-05-05T10:30:00Z",
           "data": {"payment_id": "TP1", "order_id": "WEB-1", "amount": 1160.00, "provider_reference": "mpesa-1"}}
    paid = api.webhook("treasury", t, creds.secret, pay, timestamp=True)
    assert paid.status_code == 200, paid.text
    assert paid.json() == {"event_id": "evt-tp-1", "payment_id": "PAY-TP1", "invoice_id": "INV-WEB-1",
                           "customer_ref": "GUEST-WEB-1", "status": "ACCEPTED", "journal_entry_id": "JE-PAY-TP1",
                           "amount": "1160.00", "currency": "USD"}

    fail = {"event_id": "evt-tf-1", "event_type": "treasury.payment.failed", "tenant_id": t,
            "timestamp": "2026-05-05T10:31:00Z",
            "data": {"payment_id": "TP2", "order_id": "WEB-2", "amount": 1160.00, "reason": "insufficient funds"}}
    failed = api.webhook("treasury", t, creds.secret, fail, timestamp=True)
    assert failed.status_code == 200, failed.text
    assert failed.json() == {"event_id": "evt-tf-1", "payment_id": "PAY-TP2", "invoice_id": "INV-WEB-2",
                             "customer_ref": "GUEST-WEB-2", "status": "PAYMENT_FAILED", "reason": "insufficient funds"}
    no_reason = {**fail, "event_id": "evt-tf-2", "data": {k: v for k, v in fail["data"].items() if k != "reason"}}
    assert problem(api.webhook("treasury", t, creds.secret, no_reason), 400)["field"] == "data.reason"
    assert sorted(r["value"]["event_type"] for r in records(settings, "payments", t)) == [
        "payment.failed", "payment.received"]

    settle(settings)
    one = api.read(creds, "/api/v1/sales/WEB-1").json()
    assert (one["invoice"]["status"], one["invoice"]["paid"], one["invoice"]["remaining"]) == ("PAID", "1160.00",
                                                                                              "0.00")
    two = api.read(creds, "/api/v1/sales/WEB-2").json()
    assert two["invoice"]["status"] == "UNPAID"
    assert [(f["payment_id"], f["reason"], f["amount"], f["currency"]) for f in two["payment_failures"]] == [
        ("TP2", "insufficient funds", "1160.00", "USD")]

    with SinkThread(settings, settings.database_url, "", "treasury-flow-sink"):
        wait_rows(api_engine, "invoices", t, 2, timeout=120)
        wait_rows(api_engine, "journal_entries", t, 3, timeout=120)
        wait_rows(api_engine, "payment_allocations", t, 1, timeout=120)
        wait_rows(api_engine, "external_refs", t, 5, timeout=120)
    with api_engine.connect() as conn:
        invoices = conn.execute(text("SELECT invoice_id, customer_ref, payment_terms, status, paid_amount "
                                     "FROM invoices WHERE tenant_id = :t ORDER BY invoice_id"), {"t": t}).all()
        lines = conn.execute(text("SELECT account, debit, credit FROM journal_lines WHERE tenant_id = :t "
                                  "AND entry_id = 'JE-PAY-TP1' ORDER BY line_no"), {"t": t}).all()
        cash = conn.execute(text("SELECT count(*) FROM payments WHERE tenant_id = :t AND method = 'CASH'"),
                            {"t": t}).scalar()
    assert [tuple(r) for r in invoices] == [("INV-WEB-1", "GUEST-WEB-1", "ON_ACCOUNT", "PAID", D("1160.00")),
                                            ("INV-WEB-2", "GUEST-WEB-2", "ON_ACCOUNT", "UNPAID", D("0.00"))]
    assert [tuple(r) for r in lines] == [("1010", D("1160.00"), D("0.00")), ("1100", D("0.00"), D("1160.00"))]
    assert cash == 0  # nobody paid cash: nothing was invented
    with api_engine.connect() as conn:
        refs = conn.execute(text("SELECT kind, external_id, internal_id FROM external_refs WHERE tenant_id = :t "
                                 "ORDER BY kind, external_id"), {"t": t}).all()
    assert [tuple(r) for r in refs] == [  # seed 000: the customer and the item the first time a document names them
        ("customer", "GUEST-WEB-1", "GUEST-WEB-1"), ("customer", "GUEST-WEB-2", "GUEST-WEB-2"), ("item", "A", "A"),
        ("sale", "WEB-1", "INV-WEB-1"), ("sale", "WEB-2", "INV-WEB-2")]
    assert unbalanced_entries(api_engine, t) == []
