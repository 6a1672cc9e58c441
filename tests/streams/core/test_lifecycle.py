"""The order lifecycle (SPEC 8): RESERVE, ship, cancel, hold and release, with exact figures per rule."""

from __future__ import annotations

from decimal import Decimal

from streams.core.fold import ACCEPTED, DictState, credit_of, sale_of, stock_of

from .foldkit import cancel, configure, emits, payment, refund, release, sale, ship, topics
from .test_fold import outcome_of, run, shop

D = Decimal


def reserve_shop(**settings) -> DictState:
    state = shop()
    run(state, configure(event_id="cfg", order_fulfilment="RESERVE", **settings))
    return state


def levels(state: DictState, *skus: str) -> list[tuple[int, int, int]]:
    return [(s.on_hand, s.reserved, s.available) for s in (stock_of(state, "t1", sku) for sku in skus)]


def order_o1(state: DictState, terms: str = "ON_ACCOUNT", **kw):
    """O1: 2 A (100.00) + 1 B (50.00), 16% tax: net 250.00, tax 40.00, total 290.00."""
    return run(state, sale("O1", [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}], event_id="o1",
                           order=True, terms=terms, customer="C1", **kw))


def view(state: DictState, sale_id: str = "O1") -> tuple[str, list[tuple[int, int, int, int]]]:
    order = sale_of(state, "t1", sale_id).order.view()
    return order["state"], [(li["ordered"], li["shipped"], li["cancelled"], li["open"]) for li in order["lines"]]


def reasons(outputs) -> list[tuple]:
    return [(r["code"], r["sku"], r["requested"], r["available"]) for r in outcome_of(outputs)["reasons"]]


# -- RESERVE ------------------------------------------------------------------------------------------
def test_reserve_an_accepted_order_reserves_its_lines_and_books_the_invoice_as_before():
    state = reserve_shop()
    out = order_o1(state)
    # the sale's ref, then (seed 000) the customer and each SKU the first time a document names them
    assert topics(out) == ["ledger.invoices", "ledger.journal", "ledger.external_refs", "ledger.external_refs",
                           "ledger.external_refs", "ledger.external_refs", "stock.levels", "stock.levels",
                           "sales.outcomes"]
    assert [o.key for o in out if o.topic == "ledger.external_refs"] == ["t1:sale:O1", "t1:customer:C1",
                                                                          "t1:item:A", "t1:item:B"]
    assert emits(out, "ledger.invoices")[0]["total"] == D("290.00")
    assert [(v["sku"], v["on_hand"], v["reserved"], v["available"], v["reason"]) for v in emits(out, "stock.levels")] \
        == [("A", 10, 2, 8, "RESERVATION"), ("B", 5, 1, 4, "RESERVATION")]
    assert outcome_of(out)["outcome"] == ACCEPTED
    assert view(state) == ("ACCEPTED", [(2, 0, 0, 2), (1, 0, 0, 1)])
    assert credit_of(state, "t1", "C1").outstanding == D("290.00")


def test_reserve_orders_are_decided_against_available_not_on_hand():
    state = reserve_shop()
    run(state, sale("O1", [{"sku": "A", "quantity": 8}], event_id="o1", order=True))
    out = run(state, sale("O2", [{"sku": "A", "quantity": 3}], event_id="o2", order=True))
    assert reasons(out) == [("INSUFFICIENT_STOCK", "A", 3, 2)]
    assert levels(state, "A") == [(10, 8, 2)]


def test_shipping_moves_quantities_out_of_reserved_and_on_hand_and_refuses_more_than_is_reserved():
    state = reserve_shop()
    order_o1(state)
    out = run(state, ship("O1", "SH1", [{"sku": "A", "quantity": 1}], event_id="s1", location="WH1"))
    assert topics(out) == ["stock.levels", "ledger.shipments", "sales.outcomes"]
    assert out[0].value == {"tenant_id": "t1", "sku": "A", "on_hand": 9, "reserved": 1, "available": 8,
                            "updated_at": 2500, "last_event_id": "s1", "location_id": "WH1", "reason": "SHIPMENT"}
    assert (out[1].key, out[1].value) == ("t1:SHIP-SH1", {  # the delivery note the sink books
        "tenant_id": "t1", "shipment_id": "SHIP-SH1", "source_shipment_id": "SH1", "sale_id": "O1",
        "invoice_id": "INV-O1", "location_id": "WH1", "shipped_at": 2500,
        "lines": [{"line_no": 1, "sku": "A", "quantity": 1}]})
    assert outcome_of(out) == {"tenant_id": "t1", "kind": "SHIPMENT", "id": "SH1", "sale_id": "O1",
                               "customer_ref": "C1", "event_id": "s1", "outcome": "ACCEPTED", "reasons": [],
                               "credit": None, "document_ids": [], "total": None, "currency": "KES",
                               "decided_at": 2500}
    assert view(state) == ("PARTIALLY_SHIPPED", [(2, 1, 0, 1), (1, 0, 0, 1)])
    over = run(state, ship("O1", "SH2", [{"sku": "A", "quantity": 1}, {"sku": "A", "quantity": 1}], event_id="s2"))
    assert topics(over) == ["sales.outcomes"]
    assert outcome_of(over)["outcome"] == "REFUSED"
    assert reasons(over) == [("OVER_SHIPMENT", "A", 2, 1)]
    both = run(state, ship("O1", "SH3", [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 1}], event_id="s3"))
    assert both[-1].value["outcome"] == ACCEPTED
    assert [o.value["lines"] for o in both if o.topic == "ledger.shipments"] == [
        [{"line_no": 1, "sku": "A", "quantity": 1}, {"line_no": 2, "sku": "B", "quantity": 1}]]
    assert view(state) == ("SHIPPED", [(2, 2, 0, 0), (1, 1, 0, 0)])
    assert levels(state, "A", "B") == [(8, 0, 8), (4, 0, 4)]


def test_shipping_is_refused_for_an_order_not_accepted_for_immediate_orders_and_for_pos_sales():
    state = shop()
    run(state, sale("O1", [{"sku": "A", "quantity": 1}], event_id="o1", order=True),
        sale("O2", [{"sku": "A", "quantity": 99}], event_id="o2", order=True),
        sale("S1", [{"sku": "A", "quantity": 1}], event_id="p1"))
    assert reasons(run(state, ship("O1", "SH1", [{"sku": "A", "quantity": 1}], event_id="s1"))) == [
        ("ALREADY_SHIPPED", None, None, None)]
    assert reasons(run(state, ship("O2", "SH2", [{"sku": "A", "quantity": 1}], event_id="s2"))) == [
        ("NOT_ACCEPTED", None, None, None)]
    assert reasons(run(state, ship("NOPE", "SH3", [{"sku": "A", "quantity": 1}], event_id="s3"))) == [
        ("NOT_ACCEPTED", None, None, None)]
    assert reasons(run(state, ship("S1", "SH4", [{"sku": "A", "quantity": 1}], event_id="s4"))) == [
        ("ALREADY_SHIPPED", None, None, None)]
    assert levels(state, "A") == [(8, 0, 8)]


def test_a_shipment_id_used_again_is_a_duplicate_document_and_a_redelivery_changes_nothing():
    state = reserve_shop()
    order_o1(state)
    first = ship("O1", "SH1", [{"sku": "A", "quantity": 1}], event_id="s1")
    run(state, first)
    assert run(state, first) == []
    again = run(state, ship("O1", "SH1", [{"sku": "A", "quantity": 1}], event_id="s2"))
    assert reasons(again) == [("DUPLICATE_DOCUMENT_ID", None, None, None)]
    assert levels(state, "A") == [(9, 1, 8)]


# -- cancellations --------------------------------------------------------------------------------------
def test_reserve_cancelling_releases_what_is_open_with_a_credit_note_that_lowers_outstanding():
    state = reserve_shop()
    order_o1(state)
    run(state, ship("O1", "SH1", [{"sku": "A", "quantity": 1}], event_id="s1"))
    out = run(state, cancel("O1", "X1", event_id="x1", reason="customer changed mind"))
    assert topics(out) == ["ledger.credit_notes", "ledger.journal", "ledger.external_refs", "stock.levels",
                           "stock.levels", "sales.outcomes"]
    note = out[0].value
    assert (note["credit_note_id"], note["refund_id"], note["sale_id"], note["refund_method"], note["restock"]) == \
        ("CN-X1", "X1", "O1", "CREDIT", False)
    assert [(li["sku"], li["quantity"], li["total"]) for li in note["lines"]] == [("A", 1, D("116.00")),
                                                                                  ("B", 1, D("58.00"))]
    assert (note["net_total"], note["tax_total"], note["total"]) == (D("150.00"), D("24.00"), D("174.00"))
    assert [(li["account"], li["debit"], li["credit"]) for li in out[1].value["lines"]] == [
        ("4010", D("150.00"), 0), ("2100", D("24.00"), 0), ("1100", 0, D("174.00"))]
    assert out[1].value["description"] == "cancellation X1 of order O1"
    assert [(v["sku"], v["on_hand"], v["reserved"], v["reason"]) for v in emits(out, "stock.levels")] == [
        ("A", 9, 0, "RELEASE"), ("B", 5, 0, "RELEASE")]
    last = outcome_of(out)
    assert (last["kind"], last["id"], last["outcome"], last["document_ids"], last["total"]) == (
        "CANCELLATION", "X1", "ACCEPTED", ["CN-X1", "JE-CN-X1"], D("174.00"))
    assert view(state) == ("SHIPPED", [(2, 1, 1, 0), (1, 0, 1, 0)])
    assert credit_of(state, "t1", "C1").outstanding == D("116.00")
    assert reasons(run(state, cancel("O1", "X2", event_id="x2"))) == [("NOTHING_TO_CANCEL", None, None, None)]


def test_reserve_cancelling_shipped_quantities_is_refused_and_a_refund_counts_against_shipped_only():
    state = reserve_shop()
    order_o1(state)
    run(state, ship("O1", "SH1", [{"sku": "A", "quantity": 1}], event_id="s1"))
    assert reasons(run(state, cancel("O1", "X1", [{"sku": "A", "quantity": 2}], event_id="x1"))) == [
        ("ALREADY_SHIPPED", "A", 2, 1)]
    assert reasons(run(state, cancel("O1", "X2", [{"sku": "A", "quantity": 3}], event_id="x2"))) == [
        ("OVER_CANCELLATION", "A", 3, 1)]
    assert reasons(run(state, refund("R1", "O1", [{"sku": "B", "quantity": 1}], event_id="r1",
                                     method="CREDIT"))) == [("NOT_SHIPPED", "B", 1, 0)]
    ok = run(state, refund("R2", "O1", [{"sku": "A", "quantity": 1}], event_id="r2", method="CREDIT"))
    assert outcome_of(ok)["outcome"] == ACCEPTED and outcome_of(ok)["total"] == D("116.00")
    assert reasons(run(state, refund("R3", "O1", [{"sku": "A", "quantity": 1}], event_id="r3",
                                     method="CREDIT"))) == [("NOT_SHIPPED", "A", 1, 0)]
    # the open unit of A can still be cancelled after the refund of the shipped one
    assert outcome_of(run(state, cancel("O1", "X3", [{"sku": "A", "quantity": 1}], event_id="x3")))["outcome"] \
        == ACCEPTED
    assert view(state) == ("PARTIALLY_SHIPPED", [(2, 1, 1, 0), (1, 0, 0, 1)])
    assert credit_of(state, "t1", "C1").outstanding == D("58.00")
    assert levels(state, "A", "B") == [(10, 0, 10), (5, 1, 4)]  # the refund restocked the shipped unit


def test_immediate_cancelling_returns_quantities_to_on_hand_and_refunds_a_paid_order_by_its_method():
    state = shop()
    out = run(state, sale("O1", [{"sku": "A", "quantity": 2}], event_id="o1", order=True,
                          payments=[{"method": "CARD", "amount": "232.00"}]))
    assert outcome_of(out)["outcome"] == ACCEPTED
    assert view(state) == ("SHIPPED", [(2, 2, 0, 0)])
    assert levels(state, "A") == [(8, 0, 8)]
    run(state, refund("R1", "O1", [{"sku": "A", "quantity": 1}], event_id="r1", restock=False))
    out = run(state, cancel("O1", "X1", event_id="x1"))
    note = out[0].value
    assert (note["refund_method"], note["restock"], note["total"]) == ("CARD", True, D("116.00"))
    assert [(li["account"], li["debit"], li["credit"]) for li in out[1].value["lines"]] == [
        ("4010", D("100.00"), 0), ("2100", D("16.00"), 0), ("1010", 0, D("116.00"))]
    assert [(v["on_hand"], v["reason"]) for v in emits(out, "stock.levels")] == [(9, "CANCELLATION")]
    assert view(state) == ("SHIPPED", [(2, 1, 1, 0)])
    assert reasons(run(state, cancel("O1", "X2", [{"sku": "A", "quantity": 1}], event_id="x2"))) == [
        ("OVER_CANCELLATION", "A", 1, 0)]


def test_cancelling_an_unknown_order_or_reusing_a_refund_id_is_refused():
    state = shop()
    run(state, sale("O1", [{"sku": "A", "quantity": 2}], event_id="o1", order=True, terms="ON_ACCOUNT",
                    customer="C1"),
        refund("R1", "O1", [{"sku": "A", "quantity": 1}], event_id="r1", method="CREDIT"))
    assert reasons(run(state, cancel("NOPE", "X1", event_id="x1"))) == [("NOT_ACCEPTED", None, None, None)]
    assert reasons(run(state, cancel("O1", "R1", event_id="x2"))) == [("DUPLICATE_DOCUMENT_ID", None, None, None)]
    assert credit_of(state, "t1", "C1").outstanding == D("116.00")


# -- credit hold ----------------------------------------------------------------------------------------
def test_hold_an_order_over_credit_is_held_with_nothing_reserved_or_booked_then_released():
    state = reserve_shop(credit_policy="HOLD")
    # C2's limit is 300; 2 A = 232.00, then 1 more A = 116.00 is over: 232 + 116 = 348 > 300
    run(state, sale("O1", [{"sku": "A", "quantity": 2}], event_id="o1", order=True, terms="ON_ACCOUNT",
                    customer="C2"))
    out = run(state, sale("O2", [{"sku": "A", "quantity": 1}], event_id="o2", order=True, terms="ON_ACCOUNT",
                          customer="C2"))
    assert topics(out) == ["sales.outcomes"]
    held = outcome_of(out)
    assert (held["outcome"], held["total"], reasons(out)) == ("HELD", D("116.00"), [
        ("CREDIT_LIMIT_EXCEEDED", None, None, None)])
    assert held["credit"] == {"credit_limit": D("300"), "outstanding": D("232.00"), "available": D("68.00"),
                              "order_amount": D("116.00")}
    assert view(state, "O2") == ("HELD", [(1, 0, 0, 1)])
    assert levels(state, "A") == [(10, 2, 8)]
    assert reasons(run(state, ship("O2", "SH1", [{"sku": "A", "quantity": 1}], event_id="s1"))) == [
        ("NOT_ACCEPTED", None, None, None)]
    out = run(state, release("O2", event_id="rel1"))
    assert topics(out) == ["ledger.invoices", "ledger.journal", "ledger.external_refs", "stock.levels",
                           "sales.outcomes"]
    assert (emits(out, "ledger.invoices")[0]["issued_at"], emits(out, "ledger.invoices")[0]["total"]) == (
        2700, D("116.00"))
    last = outcome_of(out)
    assert (last["kind"], last["id"], last["outcome"], last["document_ids"]) == (
        "RELEASE", "O2", "ACCEPTED", ["INV-O2", "JE-INV-O2"])
    assert view(state, "O2") == ("ACCEPTED", [(1, 0, 0, 1)])
    assert levels(state, "A") == [(10, 3, 7)]
    assert credit_of(state, "t1", "C2").outstanding == D("348.00")
    assert reasons(run(state, release("O2", event_id="rel2"))) == [("NOT_HELD", None, None, None)]


def test_hold_a_customer_on_hold_is_held_a_release_short_of_stock_stays_held_and_a_held_order_can_be_cancelled():
    from .foldkit import count, terms

    state = reserve_shop(credit_policy="HOLD")
    run(state, terms("C3", "0", on_hold=True, event_id="cust-3"))
    out = run(state, sale("O1", [{"sku": "B", "quantity": 4}], event_id="o1", order=True, terms="ON_ACCOUNT",
                          customer="C3"))
    assert (outcome_of(out)["outcome"], reasons(out)) == ("HELD", [("CREDIT_HOLD", None, None, None)])
    run(state, count("B", 3, event_id="cnt", ts=2_650))
    short = run(state, release("O1", event_id="rel1"))
    assert (outcome_of(short)["kind"], reasons(short)) == ("RELEASE", [("INSUFFICIENT_STOCK", "B", 4, 3)])
    assert view(state) == ("HELD", [(4, 0, 0, 4)])
    out = run(state, cancel("O1", "X1", event_id="x1", ts=2_800))
    assert topics(out) == ["sales.outcomes"]
    assert (outcome_of(out)["kind"], outcome_of(out)["outcome"], outcome_of(out)["document_ids"]) == (
        "CANCELLATION", "ACCEPTED", [])
    assert view(state) == ("CANCELLED", [(4, 0, 4, 0)])
    assert reasons(run(state, release("O1", event_id="rel2", ts=2_900))) == [("NOT_HELD", None, None, None)]
    assert levels(state, "B") == [(3, 0, 3)]
    assert credit_of(state, "t1", "C3").outstanding == D("0")


def test_the_refuse_policy_still_refuses_and_a_paid_order_is_never_held():
    state = shop()
    out = run(state, sale("O1", [{"sku": "A", "quantity": 3}], event_id="o1", order=True, terms="ON_ACCOUNT",
                          customer="C2"))
    assert (outcome_of(out)["outcome"], reasons(out)) == ("REFUSED", [("CREDIT_LIMIT_EXCEEDED", None, None, None)])
    assert sale_of(state, "t1", "O1").order is None


def test_a_payment_after_release_settles_the_released_invoice():
    state = reserve_shop(credit_policy="HOLD")
    run(state, sale("O1", [{"sku": "A", "quantity": 3}], event_id="o1", order=True, terms="ON_ACCOUNT",
                    customer="C2"),
        release("O1", event_id="rel1"))
    out = run(state, payment("P1", "C2", "348.00", event_id="p1", invoice="INV-O1"))
    assert outcome_of(out)["outcome"] == ACCEPTED
    assert credit_of(state, "t1", "C2").outstanding == D("0.00")
