"""Causality: a payment naming a sale's invoice, published the moment the sale's ACCEPTED outcome
appears on sales.outcomes, always meets that invoice.

On the first design about half of such payments came back REFUSED UNKNOWN_INVOICE: the outcome left
the sale's partition before the invoice reached the customer's credit on another partition. With one
tenant log and one fold, an outcome is sent only after the invoice is in the customer's credit.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from cli.testing import OutcomeFollower, settle, tenant_records, wait_for

BASE = 1_795_000_000_000
CUSTOMERS = [f"C{n}" for n in range(1, 6)]  # unlimited credit (limit 0)
SKUS = [f"K{n}" for n in range(8)]
SALES = 500


def _sales(tenant: str) -> list[dict]:
    out = []
    for n in range(SALES):
        order = n % 2 == 1  # half POS sales on account, half web orders on account
        lines = [{"sku": SKUS[(n + k) % len(SKUS)], "quantity": 1 + (n + k) % 3} for k in range(1 + n % 3)]
        out.append({"event_id": f"ev-S{n}", "event_type": "order.placed" if order else "sale.completed",
                    "tenant_id": tenant, "timestamp": BASE + 1000 + n * 10,
                    "data": {"sale_id": f"S{n}", "channel": "WEB" if order else "POS", "currency": "KES",
                             "payment_terms": "ON_ACCOUNT", "customer_ref": CUSTOMERS[n % len(CUSTOMERS)],
                             "line_items": lines}})
    return out


def test_payments_published_on_seeing_the_outcome_meet_their_invoice(worker, publish, settings, tenant):
    publish("catalog.updates", [{
        "event_id": "cat-1", "event_type": "catalog.update", "tenant_id": tenant, "timestamp": BASE,
        "data": {"product_group_id": "G", "group_name": "G", "is_active": True, "tax_rate": "16",
                 "variants": [{"sku": s, "display_name": s, "price": f"{10 + 7 * i}.25", "stock_quantity": 1_000_000}
                              for i, s in enumerate(SKUS)]}}])
    publish("customers", [{"event_id": f"cc-{c}", "event_type": "customer.credit", "tenant_id": tenant,
                           "timestamp": BASE, "data": {"customer_ref": c, "credit_limit": "0", "on_hold": False}}
                          for c in CUSTOMERS])
    settle(settings)

    paid: set[str] = set()

    def pay(outcome: dict) -> list[tuple[str, dict]]:
        """The client: the moment a sale is ACCEPTED, pay its invoice in full."""
        sid = outcome.get("sale_id")
        if outcome["kind"] != "SALE" or outcome["outcome"] != "ACCEPTED" or sid in paid:
            return []
        paid.add(sid)
        return [("payments", {
            "event_id": f"ev-P-{sid}", "event_type": "payment.received", "tenant_id": tenant,
            "timestamp": BASE + 10_000_000 + int(sid[1:]),
            "data": {"payment_id": f"P-{sid}", "customer_ref": outcome["customer_ref"], "invoice_id": f"INV-{sid}",
                     "amount": str(outcome["total"]), "currency": "KES", "method": "BANK"}})]

    follower = OutcomeFollower(settings, [tenant], pay).start()
    try:
        sales = _sales(tenant)
        for start in range(0, SALES, 50):  # in bursts, so payments and sales interleave on the log
            publish("sales", sales[start:start + 50])
        wait_for(lambda: follower.sync() >= SALES, 240, f"{SALES} sales accepted and paid by the client")
        settle(settings)
        follower.sync()
    finally:
        follower.stop()

    outcomes = [r["value"] for r in tenant_records(settings, "sales.outcomes", tenant)]
    sale_outcomes = {o["id"]: o for o in outcomes if o["kind"] == "SALE"}
    assert Counter(o["outcome"] for o in sale_outcomes.values()) == {"ACCEPTED": SALES}
    payments = {o["id"]: o for o in outcomes if o["kind"] == "PAYMENT"}
    refused = {pid: (o["outcome"], [r["message"] for r in o["reasons"]]) for pid, o in payments.items()
               if o["outcome"] != "ACCEPTED"}
    assert refused == {}, f"{len(refused)} of {len(payments)} payments not applied: {dict(list(refused.items())[:10])}"
    assert set(payments) == {f"P-S{n}" for n in range(SALES)}

    # every invoice paid in full: the ledger's payment allocates it all and marks it PAID
    docs = {r["key"].split(":", 1)[1]: r["value"] for r in tenant_records(settings, "ledger.payments", tenant)}
    for n in range(SALES):
        sid = f"S{n}"
        doc = docs.get(f"PAY-P-{sid}")
        assert doc is not None, f"no ledger payment for {sid}"
        assert [(a["invoice_id"], a["status_after"]) for a in doc["allocations"]] == [(f"INV-{sid}", "PAID")], doc
        assert Decimal(doc["amount"]) == Decimal(str(sale_outcomes[sid]["total"]))
    for c in CUSTOMERS:
        credit = worker.get(f"/credit/{c}", tenant=tenant).json()
        assert (credit["outstanding"], credit["open_invoices"]) == ("0.00", []), credit
