"""Price lists and discount limits (SPEC 9): resolution order, quantity breaks, validity windows, exact figures."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.fold import (
    ACCEPTED,
    REFUSED,
    VALIDATORS,
    DeadLetter,
    DictState,
    Emit,
    FoldConfig,
    fold,
    price_list_of,
    sale_of,
)
from streams.core.pricelists import (
    MAX_ITEMS,
    DiscountBreach,
    ListPrice,
    PriceList,
    PriceListItem,
    discount_breaches,
    validate_price_list,
)
from streams.core.pricing import price_lines
from streams.core.sales import SaleLine

from .foldkit import catalog, check_outputs, emits, price_list, sale, terms, topics

D = Decimal
CFG = FoldConfig()


def run(state: DictState, *inputs, config: FoldConfig = CFG):
    per_input = []
    for event in inputs:
        out = fold(state, event, config)
        check_outputs(out)
        per_input.append(out)
    return per_input if len(per_input) > 1 else per_input[0]


def plist(*items: tuple[str, str, int], valid_from: int | None = None, valid_to: int | None = None,
          currency: str = "KES") -> PriceList:
    return PriceList("t1", "PL1", currency, tuple(PriceListItem(s, D(p), q) for s, p, q in items), 600, "pl-1",
                     valid_from, valid_to)


BREAKS = plist(("A", "90.00", 1), ("A", "80.00", 10), ("A", "70.00", 50), ("B", "45.00", 5))


# -- resolution, pure --------------------------------------------------------------------------
def test_the_largest_quantity_break_not_above_the_quantity_prices_the_line():
    got = {q: BREAKS.price_for("A", q, "KES", 1_000) for q in (1, 9, 10, 49, 50, 1_000)}
    assert {q: (p.unit_price, p.min_quantity) for q, p in got.items() if p} == {
        1: (D("90.00"), 1), 9: (D("90.00"), 1), 10: (D("80.00"), 10), 49: (D("80.00"), 10), 50: (D("70.00"), 50),
        1_000: (D("70.00"), 50)}
    assert BREAKS.price_for("B", 4, "KES", 1_000) is None  # below B's only break: the catalog prices it
    assert BREAKS.price_for("B", 5, "KES", 1_000) == ListPrice("PL1", D("45.00"), 5)
    assert BREAKS.price_for("Z", 100, "KES", 1_000) is None


def test_a_list_applies_inside_its_window_both_ends_included_and_in_its_currency_only():
    windowed = plist(("A", "90.00", 1), valid_from=1_000, valid_to=2_000)
    assert [windowed.price_for("A", 1, "KES", ts) is not None for ts in (999, 1_000, 1_500, 2_000, 2_001)] == [
        False, True, True, True, False]
    assert plist(("A", "90.00", 1), valid_from=1_000).price_for("A", 1, "KES", 10**13) is not None
    assert plist(("A", "90.00", 1), valid_to=1_000).price_for("A", 1, "KES", -5) is not None
    assert BREAKS.price_for("A", 1, "USD", 1_000) is None


def test_price_lines_order_line_price_then_list_then_catalog():
    from streams.core.pricing import CatalogItem

    cat = {"A": CatalogItem("A", D("100.00"), D("16")), "B": CatalogItem("B", D("50.00"))}
    lines = [SaleLine("A", 10), SaleLine("A", 2, unit_price=D("95.00")), SaleLine("B", 2), SaleLine("B", 5)]
    priced = price_lines(lines, "KES", cat.get, D(0), lambda sku, q: BREAKS.price_for(sku, q, "KES", 1_000))
    assert not isinstance(priced, Exception) and hasattr(priced, "lines")
    assert [(p.unit_price, p.price_source, p.price_list_id, p.net, p.tax) for p in priced.lines] == [
        (D("80.00"), "PRICE_LIST", "PL1", D("800.00"), D("128.00")),
        (D("95.00"), "LINE", None, D("190.00"), D("30.40")),
        (D("50.00"), "CATALOG", None, D("100.00"), D("0.00")),
        (D("45.00"), "PRICE_LIST", "PL1", D("225.00"), D("0.00"))]
    assert (priced.net_total, priced.tax_total, priced.total) == (D("1315.00"), D("158.40"), D("1473.40"))


def test_discount_breaches_name_each_line_above_the_maximum():
    lines = [SaleLine("A", 1, discount_percent=D("20")), SaleLine("B", 1, discount_percent=D("20.01")),
             SaleLine("C", 1), SaleLine("D", 1, discount_percent=D("100"))]
    assert discount_breaches(lines, None) == []
    assert discount_breaches(lines, D("20")) == [DiscountBreach(2, "B", D("20.01"), D("20")),
                                                 DiscountBreach(4, "D", D("100"), D("20"))]
    assert discount_breaches(lines, D("20"))[0].message == "line 2: discount 20.01% on B is above the maximum 20%"


def test_validation_of_a_price_list():
    ok = {"price_list_id": "PL1", "currency": "KES", "valid_from": None, "valid_to": None,
          "items": [{"sku": "A", "unit_price": D("1.50"), "min_quantity": 1}]}
    assert validate_price_list(ok) == []
    assert validate_price_list({**ok, "items": []}) == []  # an empty list clears it
    bad = {"price_list_id": " ", "currency": "XXX", "valid_from": 2_000, "valid_to": 1_000,
           "items": [{"sku": "", "unit_price": D("-1"), "min_quantity": 0},
                     {"sku": "A", "unit_price": D("1.505"), "min_quantity": 2},
                     {"sku": "A", "unit_price": D("1.50"), "min_quantity": 2}]}
    assert validate_price_list(bad) == [
        "price_list_id is missing or empty", "unknown currency 'XXX'", "valid_to must not be before valid_from",
        "items[0].sku is missing or empty", "items[0].min_quantity must be a whole number of at least 1, got 0",
        "items[0].unit_price must not be negative, got -1", "items[2]: A with min_quantity 2 appears twice"]
    kes = {**ok, "items": [{"sku": "A", "unit_price": D("1.505"), "min_quantity": 1}]}
    assert validate_price_list(kes) == ["items[0].unit_price 1.505 has more decimals than KES allows"]
    many = {**ok, "items": [{"sku": f"S{n}", "unit_price": D(1), "min_quantity": 1} for n in range(MAX_ITEMS + 1)]}
    assert validate_price_list(many) == [f"a price list has at most {MAX_ITEMS} items, got {MAX_ITEMS + 1}"]
    assert VALIDATORS["price_list.updated"] is validate_price_list


# -- the fold ----------------------------------------------------------------------------------
def shop() -> DictState:
    """A (100.00, 16% tax) and B (50.00) in stock; C1 buys from PL1, C2 has no list."""
    state = DictState()
    run(state,
        catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": 100},
                      {"sku": "B", "price": "50.00", "stock_quantity": 100}], event_id="cat-1", tax_rate="16"),
        terms("C1", "0", event_id="cust-1", price_list="PL1"),
        terms("C2", "0", event_id="cust-2"),
        price_list("PL1", [{"sku": "A", "unit_price": "90.00"}, {"sku": "A", "unit_price": "80.00", "min_quantity": 10},
                           {"sku": "B", "unit_price": "45.00", "min_quantity": 5}], event_id="pl-1"))
    return state


def lines_of(out) -> list[tuple]:
    (invoice,) = emits(out, "ledger.invoices")
    return [(li["sku"], li["quantity"], li["unit_price"], li["price_source"], li["price_list_id"], li["total"])
            for li in invoice["lines"]]


def test_an_order_is_priced_by_the_customers_list_and_the_invoice_says_so():
    state = shop()
    stored = price_list_of(state, "t1", "PL1")
    assert stored is not None and (stored.updated_at, stored.event_id, len(stored.items)) == (600, "pl-1", 3)
    out = run(state, sale("O1", [{"sku": "A", "quantity": 2}, {"sku": "A", "quantity": 10}, {"sku": "B", "quantity": 4},
                                 {"sku": "B", "quantity": 5, "unit_price": "40.00"}],
                          event_id="o1", order=True, terms="ON_ACCOUNT", customer="C1"))
    assert lines_of(out) == [("A", 2, D("90.00"), "PRICE_LIST", "PL1", D("208.80")),
                             ("A", 10, D("80.00"), "PRICE_LIST", "PL1", D("928.00")),
                             ("B", 4, D("50.00"), "CATALOG", None, D("232.00")),
                             ("B", 5, D("40.00"), "LINE", None, D("232.00"))]
    assert emits(out, "sales.outcomes")[0]["total"] == D("1600.80")
    record = sale_of(state, "t1", "O1")
    assert record.invoice.lines[0].price_source == "PRICE_LIST"  # kept with the sale, for refunds


def test_a_customer_without_list_a_list_out_of_window_or_currency_take_the_catalog():
    state = shop()
    out = run(state, sale("S1", [{"sku": "A", "quantity": 10}], event_id="s1", customer="C2"))
    assert lines_of(out) == [("A", 10, D("100.00"), "CATALOG", None, D("1160.00"))]
    out = run(state, sale("S2", [{"sku": "A", "quantity": 1}], event_id="s2", customer="C1", currency="USD"))
    assert lines_of(out) == [("A", 1, D("100.00"), "CATALOG", None, D("116.00"))]
    run(state, price_list("PL1", [{"sku": "A", "unit_price": "90.00"}], event_id="pl-2", ts=700,
                          valid_from=1_000, valid_to=1_999))
    out = run(state, sale("S3", [{"sku": "A", "quantity": 1}], event_id="s3", customer="C1", ts=2_000))
    assert lines_of(out) == [("A", 1, D("100.00"), "CATALOG", None, D("116.00"))]
    out = run(state, sale("S4", [{"sku": "A", "quantity": 1}], event_id="s4", customer="C1", ts=1_999))
    assert lines_of(out) == [("A", 1, D("90.00"), "PRICE_LIST", "PL1", D("104.40"))]


def test_a_late_older_version_of_a_list_does_not_replace_the_newer_and_a_repeat_is_a_duplicate():
    state = shop()
    assert run(state, price_list("PL1", [{"sku": "A", "unit_price": "1.00"}], event_id="pl-old", ts=500)) == []
    assert [i.unit_price for i in price_list_of(state, "t1", "PL1").items] == [D("90.00"), D("80.00"), D("45.00")]
    again = price_list("PL1", [{"sku": "A", "unit_price": "90.00"}, {"sku": "A", "unit_price": "80.00",
                                                                     "min_quantity": 10},
                               {"sku": "B", "unit_price": "45.00", "min_quantity": 5}], event_id="pl-1")
    assert run(state, again) == []
    other = run(state, price_list("PL1", [{"sku": "A", "unit_price": "2.00"}], event_id="pl-1"))
    assert len(other) == 1 and isinstance(other[0], DeadLetter) and other[0].stage == "idempotency"
    assert other[0].error.startswith("IDEMPOTENCY_CONFLICT")
    assert price_list_of(state, "t1", "PL1").event_id == "pl-1"


def test_an_order_line_above_the_maximum_discount_is_refused():
    state = shop()
    config = FoldConfig(max_discount_percent=D("20"))
    out = run(state, sale("O1", [{"sku": "A", "quantity": 1, "discount_percent": "20"},
                                 {"sku": "B", "quantity": 1, "discount_percent": "100"}],
                          event_id="o1", order=True, customer="C2", terms="ON_ACCOUNT"), config=config)
    assert topics(out) == ["sales.outcomes"]
    outcome = out[0].value
    assert outcome["outcome"] == REFUSED
    assert outcome["reasons"] == [{"sku": "B", "code": "DISCOUNT_NOT_ALLOWED", "requested": None, "available": None,
                                   "message": "line 2: discount 100% on B is above the maximum 20%"}]
    out = run(state, sale("O2", [{"sku": "A", "quantity": 1, "discount_percent": "20"}], event_id="o2", order=True,
                          customer="C2", terms="ON_ACCOUNT"), config=config)
    assert emits(out, "sales.outcomes")[0]["outcome"] == ACCEPTED
    assert lines_of(out) == [("A", 1, D("100.00"), "CATALOG", None, D("92.80"))]  # 80.00 + 16% tax
    unlimited = run(state, sale("O3", [{"sku": "B", "quantity": 1, "discount_percent": "100"}], event_id="o3",
                                order=True, customer="C2", terms="ON_ACCOUNT"))
    assert emits(unlimited, "sales.outcomes")[0]["outcome"] == ACCEPTED  # no maximum configured


def test_a_pos_sale_above_the_maximum_discount_is_booked_with_a_warning():
    state = shop()
    out = run(state, sale("S1", [{"sku": "B", "quantity": 2, "discount_percent": "50"}], event_id="s1"),
              config=FoldConfig(max_discount_percent=D("10")))
    outcome = emits(out, "sales.outcomes")[0]
    assert (outcome["outcome"], outcome["total"], outcome["document_ids"]) == (
        ACCEPTED, D("58.00"), ["INV-S1", "PAY-S1-1", "JE-INV-S1"])
    assert outcome["reasons"] == [{"sku": "B", "code": "DISCOUNT_NOT_ALLOWED", "requested": None, "available": None,
                                   "message": "line 1: discount 50% on B is above the maximum 10%"}]


# -- properties --------------------------------------------------------------------------------
_money = st.decimals(min_value=0, max_value=500, places=2, allow_nan=False, allow_infinity=False)
_items = st.lists(st.tuples(st.sampled_from(["A", "B"]), _money, st.integers(1, 20)), max_size=8,
                  unique_by=lambda t: (t[0], t[2]))
_window = st.one_of(st.none(), st.integers(0, 4_000))


@settings(max_examples=150, deadline=None)
@given(items=_items, start=_window, end=_window, currency=st.sampled_from(["KES", "USD"]),
       ts=st.integers(0, 4_000), qty=st.integers(1, 30), sku=st.sampled_from(["A", "B", "Z"]),
       own=st.one_of(st.none(), _money), discount=st.one_of(st.none(), st.decimals(0, 100, places=2)),
       order=st.booleans())
def test_the_price_used_is_one_the_rules_allow_and_the_journal_balances(items, start, end, currency, ts, qty, sku,
                                                                        own, discount, order):
    if start is not None and end is not None and end < start:
        start, end = end, start
    state = DictState()
    catalog_prices = {"A": D("100.00"), "B": D("50.00")}
    line: dict = {"sku": sku, "quantity": qty}
    if own is not None:
        line["unit_price"] = str(own)
    if discount is not None:
        line["discount_percent"] = str(discount)
    config = FoldConfig(max_discount_percent=D("40"))
    outs = run(state,
               catalog("G", [{"sku": s, "price": str(p), "stock_quantity": 100} for s, p in catalog_prices.items()],
                       event_id="cat", tax_rate="16"),
               terms("C1", "0", event_id="cust", price_list="PL1"),
               price_list("PL1", [{"sku": s, "unit_price": str(p), "min_quantity": q} for s, p, q in items],
                          event_id="pl", currency=currency, valid_from=start, valid_to=end),
               sale("S1", [line], event_id="s1", ts=ts, order=order, customer="C1",
                    terms="ON_ACCOUNT" if order else "PAID"),
               config=config)
    out = outs[-1]
    for entry in emits(out, "ledger.journal"):
        assert sum(li["debit"] for li in entry["lines"]) == sum(li["credit"] for li in entry["lines"])
    invoices = emits(out, "ledger.invoices")
    breach = discount is not None and discount > D("40")
    if order and (breach or sku == "Z"):
        assert invoices == [] and emits(out, "sales.outcomes")[0]["outcome"] == REFUSED
        return
    if own is None and sku == "Z":
        assert topics(out) == ["DLQ"]  # NO_PRICE: neither a list nor the catalog knows Z
        return
    (invoice,) = invoices
    (li,) = invoice["lines"]
    valid = currency == "KES" and (start is None or start <= ts) and (end is None or ts <= end)
    eligible = [(q, p) for s, p, q in items if valid and s == sku and q <= qty]
    if own is not None:
        assert (li["unit_price"], li["price_source"]) == (own, "LINE")
    elif eligible:
        assert (li["unit_price"], li["price_source"], li["price_list_id"]) == (max(eligible)[1], "PRICE_LIST", "PL1")
    else:
        assert (li["unit_price"], li["price_source"]) == (catalog_prices[sku], "CATALOG")
    outcome = emits(out, "sales.outcomes")[0]
    assert outcome["outcome"] == ACCEPTED
    assert [r["code"] for r in outcome["reasons"]] == (["DISCOUNT_NOT_ALLOWED"] if breach else [])
    assert all(isinstance(o, Emit) for o in out)
