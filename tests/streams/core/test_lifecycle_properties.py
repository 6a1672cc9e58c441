"""Properties of the order lifecycle (SPEC 8) over random tenant logs, under IMMEDIATE and RESERVE and both
credit policies: after every event reserved is never negative and equals, per SKU, the open quantities of
the RESERVE orders not held; every order line keeps shipped + cancelled + open = ordered; every journal
entry balances and the books reconcile (bookskit.differences); and serial_fold gives the same state.
The tenant's chart of accounts (SPEC 8, `accounts`) is SPEC's, overridden from the start, or changed in
the middle of the log (and back): the books reconcile by role whatever codes the chart gave them."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.fold import DictState, SaleRecord, fold, serial_fold, stock_of
from streams.core.journal import DEFAULT_ACCOUNTS, Accounts

from .bookskit import differences
from .foldkit import cancel, catalog, check_outputs, configure, count, payment, refund, release, sale, ship, terms
from .test_fold import CFG

UNIT_TOTAL = {"A": Decimal("116.00"), "B": Decimal("58.00")}  # 100.00 and 50.00, 16% tax
ORDERS = ("O1", "O2", "O3", "O4")
CHARTS = ({}, {"cash": "1001", "clearing": "1015", "bank": "1030", "receivable": "1105", "tax_payable": "2200",
               "revenue": "4100", "returns": "4110"},
          {"receivable": "1199", "revenue": "4999", "bank": "1039"})  # codes of no other role of any chart
LINES = st.lists(st.tuples(st.sampled_from(["A", "B"]), st.integers(1, 4)), min_size=1, max_size=3)
PLACE = st.tuples(st.just("order"), st.sampled_from(ORDERS), LINES, st.sampled_from(["PAID", "ON_ACCOUNT"]))
ACTIONS = st.one_of(
    PLACE,
    st.tuples(st.just("ship"), st.sampled_from(ORDERS), LINES),
    st.tuples(st.just("ship"), st.sampled_from(ORDERS), LINES),
    st.tuples(st.just("cancel"), st.sampled_from(ORDERS), st.none() | LINES),
    st.tuples(st.just("release"), st.sampled_from(ORDERS)),
    st.tuples(st.just("refund"), st.sampled_from(ORDERS), LINES, st.sampled_from(["CASH", "CREDIT"]), st.booleans()),
    st.tuples(st.just("count"), st.sampled_from(["A", "B"]), st.integers(0, 30)),
    st.tuples(st.just("chart"), st.sampled_from(range(len(CHARTS)))),
    st.tuples(st.just("payment"), st.sampled_from(["BANK", "CASH", "MOBILE"]), st.sampled_from(["10.00", "116.00"])),
)


@st.composite
def logs(draw):
    fulfilment = draw(st.sampled_from(["IMMEDIATE", "RESERVE"]))
    policy = draw(st.sampled_from(["REFUSE", "HOLD"]))
    events = [configure(event_id="cfg", order_fulfilment=fulfilment, credit_policy=policy,
                        accounts=CHARTS[draw(st.sampled_from(range(len(CHARTS))))]),
              catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": draw(st.integers(5, 25))},
                            {"sku": "B", "price": "50.00", "stock_quantity": draw(st.integers(5, 25))}],
                      event_id="cat", tax_rate="16", ts=500),
              terms("C1", draw(st.sampled_from(["0", "0", "300", "800"])), draw(st.sampled_from([False, False, True])),
                    event_id="cust")]
    ts = 1_000
    actions = draw(st.lists(PLACE, min_size=1, max_size=4)) + draw(st.lists(ACTIONS, max_size=30))
    placed: dict[str, list[tuple[str, int]]] = {}
    for n, action in enumerate(actions):
        ts += 10
        eid = f"e{n}"
        kind, oid = action[0], action[1]
        if kind in ("ship", "cancel") and action[2] is not None and oid in placed and draw(st.booleans()):
            # mostly lines of the order itself (at most what it ordered), so that many are accepted
            lines = [(sku, min(qty, q)) for (sku, qty), (_, q) in zip(placed[oid], action[2], strict=False)]
            action = (kind, oid, lines)
        if kind == "order":
            placed.setdefault(oid, action[2])
            lines, terms_ = action[2], action[3]
            items = [{"sku": s, "quantity": q} for s, q in lines]
            total = sum((UNIT_TOTAL[s] * q for s, q in lines), Decimal(0))
            pays = [{"method": "CARD", "amount": str(total)}] if terms_ == "PAID" else None
            events.append(sale(oid, items, event_id=eid, ts=ts, order=True, terms=terms_, customer="C1",
                               payments=pays))
        elif kind == "ship":
            events.append(ship(oid, f"SH{n}", [{"sku": s, "quantity": q} for s, q in action[2]], event_id=eid, ts=ts))
        elif kind == "cancel":
            lines = None if action[2] is None else [{"sku": s, "quantity": q} for s, q in action[2]]
            events.append(cancel(oid, f"X{n}", lines, event_id=eid, ts=ts))
        elif kind == "release":
            events.append(release(oid, event_id=eid, ts=ts))
        elif kind == "refund":
            events.append(refund(f"R{n}", oid, [{"sku": s, "quantity": q} for s, q in action[2]], event_id=eid,
                                 ts=ts, method=action[3], restock=action[4]))
        elif kind == "chart":
            events.append(configure(event_id=eid, ts=ts, accounts=CHARTS[action[1]]))
        elif kind == "payment":
            events.append(payment(f"P{n}", "C1", action[2], event_id=eid, ts=ts, method=action[1]))
        else:
            events.append(count(action[1], action[2], event_id=eid, ts=ts))
    return events


def charts_of(events) -> dict[str, list[Accounts]]:
    """Every chart the tenant's log put in force (SPEC's is in force until the first configuration)."""
    used = [DEFAULT_ACCOUNTS]
    for event in events:
        if event.record["event_type"] == "tenant.configured" and event.record["data"].get("accounts") is not None:
            used.append(Accounts.with_overrides(event.record["data"]["accounts"]))
    return {"t1": used}


def check_invariants(state: DictState) -> None:
    open_reserved = {"A": 0, "B": 0}
    for raw in state.tables["sales"].values():
        order = SaleRecord.from_dict(raw).order
        if order is None:
            continue
        for li in order.lines:
            assert min(li.shipped, li.cancelled, li.open) >= 0, li
            assert li.shipped + li.cancelled + li.open == li.ordered, li
            if order.reserves and not order.held:
                open_reserved[li.sku] += li.open
        if not order.reserves and not order.held:
            assert all(li.open == 0 for li in order.lines), order
    for sku in ("A", "B"):
        stock = stock_of(state, "t1", sku)
        reserved = 0 if stock is None else stock.reserved
        assert reserved >= 0
        assert reserved == open_reserved[sku], (sku, reserved, open_reserved)


@settings(max_examples=300, deadline=None)
@given(logs())
def test_reserved_open_lines_and_books_hold_after_every_event(events):
    state, outputs, charts = DictState(), [], charts_of(events)
    for n, event in enumerate(events):
        out = fold(state, event, CFG)
        check_outputs(out)
        assert not any(getattr(o, "error", "").startswith("INTERNAL_ERROR") for o in out), out
        outputs += out
        check_invariants(state)
        assert differences(state, outputs, charts) == [], (n, event.record["event_type"], event.record["data"])
    again, again_out = serial_fold(events)
    assert again == state and again_out == outputs
