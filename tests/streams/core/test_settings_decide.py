"""Each tenant setting decides (SPEC 8): the same event, before and after a tenant.configured, decided
differently, with exact outputs; the process configuration (FoldConfig) is only the fallback."""

from __future__ import annotations

from decimal import Decimal

from streams.core.fold import (
    DAY_MS,
    EXPIRY_SWEEP,
    DeadLetter,
    DictState,
    FoldConfig,
    fold,
    sale_of,
    serial_fold,
    stock_of,
    tenant_config,
)
from streams.core.journal import DEFAULT_ACCOUNTS, Accounts
from streams.core.settings import TenantSettings

from .foldkit import (
    cancel,
    catalog,
    check_outputs,
    configure,
    count,
    delta,
    emits,
    payment,
    refund,
    release,
    sale,
    terms,
)

D = Decimal
CFG = FoldConfig()
CHART = {"cash": "1001", "clearing": "1015", "bank": "1030", "receivable": "1105", "tax_payable": "2200",
         "revenue": "4100", "returns": "4110"}


def run(state: DictState, *inputs, config: FoldConfig = CFG):
    out = []
    for event in inputs:
        got = fold(state, event, config)
        check_outputs(got)
        out.extend(got)
    return out


def shop(config: FoldConfig = CFG) -> DictState:
    """A (100.00) and B (50.00), 16% tax, 10 and 5 in stock; C1 without a limit, C2 with a limit of 300."""
    state = DictState()
    run(state, catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": 10},
                             {"sku": "B", "price": "50.00", "stock_quantity": 5}], event_id="cat", tax_rate="16"),
        terms("C1", "0", event_id="cust-1"), terms("C2", "300", event_id="cust-2"), config=config)
    return state


def lines_of(entry: dict) -> list[tuple[str, Decimal, Decimal]]:
    return [(x["account"], x["debit"], x["credit"]) for x in entry["lines"]]


def outcome(out) -> dict:
    return emits(out, "sales.outcomes")[-1]


# -- tenant_config: what wins ------------------------------------------------------------------------
def test_tenant_config_takes_each_value_the_tenant_set_and_keeps_the_process_value_of_the_others():
    process = FoldConfig(default_tax_percent=D("5"), late_count_horizon_ms=7 * DAY_MS, dedup_horizon_ms=None,
                         max_discount_percent=D("10"))
    assert tenant_config(process, TenantSettings()) is process
    got = tenant_config(process, TenantSettings(max_discount_percent=D("20"), dedup_horizon_days=2,
                                                accounts=(("bank", "1030"),)))
    assert got == FoldConfig(default_tax_percent=D("5"), late_count_horizon_ms=7 * DAY_MS, dedup_horizon_ms=2 * DAY_MS,
                             max_discount_percent=D("20"), accounts=Accounts(bank="1030"))
    full = tenant_config(process, TenantSettings(default_tax_percent=D("0"), late_count_horizon_days=0,
                                                 max_discount_percent=D("0"), dedup_horizon_days=0))
    assert (full.default_tax_percent, full.late_count_horizon_ms, full.dedup_horizon_ms, full.max_discount_percent,
            full.accounts) == (D("0"), 0, 0, D("0"), DEFAULT_ACCOUNTS)


# -- default_currency ---------------------------------------------------------------------------------
def test_an_order_that_names_no_currency_takes_the_tenant_default_and_usd_until_one_is_set():
    state = shop()
    first = run(state, sale("O1", [{"sku": "A", "quantity": 1}], event_id="o1", order=True, currency=""))
    run(state, configure(event_id="cfg", ts=2_100, default_currency="KES"))
    second = run(state, sale("O2", [{"sku": "A", "quantity": 1}], event_id="o2", ts=2_200, order=True, currency=""))
    named = run(state, sale("O3", [{"sku": "A", "quantity": 1}], event_id="o3", ts=2_300, order=True,
                            currency="JPY"))
    for out, currency in ((first, "USD"), (second, "KES"), (named, "JPY")):
        assert [(v["invoice_id"], v["currency"], v["total"]) for v in emits(out, "ledger.invoices")] == [
            (f"INV-{outcome(out)['id']}", currency, D("116.00") if currency != "JPY" else D("116"))]
        assert emits(out, "ledger.journal")[0]["currency"] == currency
        assert (outcome(out)["outcome"], outcome(out)["currency"]) == ("ACCEPTED", currency)
    assert [sale_of(state, "t1", s).currency for s in ("O1", "O2", "O3")] == ["USD", "KES", "JPY"]


def test_a_held_order_keeps_the_currency_of_its_placement_when_the_default_changes_before_its_release():
    state = shop()
    run(state, configure(event_id="cfg", ts=100, credit_policy="HOLD", default_currency="KES"),
        sale("O1", [{"sku": "A", "quantity": 3}], event_id="o1", order=True, terms="ON_ACCOUNT", customer="C2",
             currency=""),
        configure(event_id="cfg2", ts=2_100, default_currency="EUR"))
    assert sale_of(state, "t1", "O1").currency == "KES"
    out = run(state, release("O1", event_id="rel"))
    assert [(v["currency"], v["total"]) for v in emits(out, "ledger.invoices")] == [("KES", D("348.00"))]
    assert (outcome(out)["kind"], outcome(out)["outcome"], outcome(out)["currency"]) == ("RELEASE", "ACCEPTED", "KES")


def test_payments_finer_than_the_tenant_default_currency_are_dead_lettered_and_the_sale_kept_as_failed():
    state = shop()
    run(state, configure(event_id="cfg", default_currency="JPY"))
    out = run(state, sale("S1", [{"sku": "X", "quantity": 1, "unit_price": "10"}], event_id="s1", currency="",
                          payments=[{"method": "CASH", "amount": "10.50"}]))
    assert len(out) == 1 and isinstance(out[0], DeadLetter) and out[0].stage == "rule"
    assert out[0].error == "INVALID_PAYMENT: payment 1: amount 10.5000 has more decimals than JPY allows"
    record = sale_of(state, "t1", "S1")
    assert (record.status, record.currency) == ("FAILED", "JPY")


# -- max_discount_percent -----------------------------------------------------------------------------
def test_the_tenant_maximum_discount_wins_over_the_process_one_in_both_directions():
    config = FoldConfig(max_discount_percent=D("10"))
    fifteen = [{"sku": "A", "quantity": 1, "discount_percent": "15"}]
    eight = [{"sku": "A", "quantity": 1, "discount_percent": "8"}]
    state = shop(config)
    before = run(state, sale("O1", fifteen, event_id="o1", order=True), config=config)
    assert outcome(before)["outcome"] == "REFUSED"
    assert [(r["code"], r["sku"], r["message"]) for r in outcome(before)["reasons"]] == [
        ("DISCOUNT_NOT_ALLOWED", "A", "line 1: discount 15% on A is above the maximum 10%")]
    run(state, configure(event_id="cfg", ts=2_100, max_discount_percent="20"), config=config)
    after = run(state, sale("O2", fifteen, event_id="o2", ts=2_200, order=True), config=config)
    assert (outcome(after)["outcome"], emits(after, "ledger.invoices")[0]["net_total"]) == ("ACCEPTED", D("85.00"))
    run(state, configure(event_id="cfg2", ts=2_300, max_discount_percent="5"), config=config)
    lower = run(state, sale("O3", eight, event_id="o3", ts=2_400, order=True), config=config)
    assert [(r["code"], r["message"]) for r in outcome(lower)["reasons"]] == [
        ("DISCOUNT_NOT_ALLOWED", "line 1: discount 8% on A is above the maximum 5%")]
    pos = run(state, sale("S4", eight, event_id="s4", ts=2_500), config=config)  # a POS sale: booked, warned
    assert (outcome(pos)["outcome"], [r["code"] for r in outcome(pos)["reasons"]]) == (
        "ACCEPTED", ["DISCOUNT_NOT_ALLOWED"])


# -- late_count_horizon_days --------------------------------------------------------------------------
def test_the_tenant_lateness_horizon_decides_whether_a_late_count_is_exact_or_stale():
    def log(configured: bool) -> list:
        events = [count("A", 100, event_id="c0", ts=0),
                  delta("A", -2, event_id="d2", ts=2 * DAY_MS),
                  delta("A", -3, event_id="d5", ts=5 * DAY_MS)]
        if configured:
            events.append(configure(event_id="cfg", ts=5 * DAY_MS + 1, late_count_horizon_days=1))
        return events + [delta("A", -1, event_id="d6", ts=6 * DAY_MS),
                         count("A", 50, event_id="late", ts=DAY_MS + DAY_MS // 2)]

    default, default_out = serial_fold(log(False))
    short, short_out = serial_fold(log(True))
    # 7 days (the process's): every delta kept, the late count is exact: 50 - 2 - 3 - 1
    a = stock_of(default, "t1", "A")
    assert (a.on_hand, a.base_ts, a.deltas) == (44, None, ((2 * DAY_MS, -2), (5 * DAY_MS, -3), (6 * DAY_MS, -1)))
    assert emits(default_out, "inventory.alerts") == []
    # 1 day (the tenant's): the delta of day 2 fell into the base at day 6, the count before it is stale
    a = stock_of(short, "t1", "A")
    assert (a.on_hand, a.base_ts, a.base_qty, a.deltas) == (94, 2 * DAY_MS, -2, ((5 * DAY_MS, -3), (6 * DAY_MS, -1)))
    assert [(v["alert"], v["on_hand"], v["event_id"]) for v in emits(short_out, "inventory.alerts")] == [
        ("STALE_ABSOLUTE", 94, "late")]


# -- dedup_horizon_days -------------------------------------------------------------------------------
def test_the_tenant_dedup_horizon_decides_whether_a_redelivered_id_is_a_duplicate():
    def log(configured: bool) -> list:
        events = [delta("A", 5, event_id="d1", ts=0)]
        if configured:
            events.append(configure(event_id="cfg", ts=1, dedup_horizon_days=1))
        return events + [delta("A", 1, event_id="d2", ts=2 * DAY_MS), delta("A", 5, event_id="d1", ts=0)]

    default, default_out = serial_fold(log(False))
    short, short_out = serial_fold(log(True))
    assert stock_of(default, "t1", "A").on_hand == 6  # 35 days: d1 is still remembered, its redelivery ignored
    assert [v["last_event_id"] for v in emits(default_out, "stock.levels")] == ["d1", "d2"]
    assert stock_of(short, "t1", "A").on_hand == 11  # 1 day: d1 was forgotten at d2, so it is applied again
    assert [v["last_event_id"] for v in emits(short_out, "stock.levels")] == ["d1", "d2", "d1"]


def test_a_shorter_dedup_horizon_forgets_ids_queued_before_it_by_their_timestamps_a_sweep_at_a_time():
    """The choice: the queue keeps each id's timestamp, not an expiry, and the horizon in force at an
    event applies to the whole queue from that event on, at most EXPIRY_SWEEP ids per event, in order."""
    events = [delta("A", 1, event_id=f"d{n}", ts=n) for n in range(6)]
    events.append(configure(event_id="cfg", ts=10, dedup_horizon_days=1))
    state, _ = serial_fold(events)
    assert len(state.tables["seen"]) == 7  # nothing forgotten yet: the newest event is 10 ms after the first
    run(state, delta("B", 1, event_id="x1", ts=2 * DAY_MS))
    forgotten = {f"t1:d{n}" for n in range(EXPIRY_SWEEP)}
    assert set(state.tables["seen"]) == {f"t1:d{n}" for n in range(6)} - forgotten | {"t1:cfg", "t1:x1"}
    run(state, delta("B", 1, event_id="x2", ts=2 * DAY_MS + 1))
    assert set(state.tables["seen"]) == {"t1:x1", "t1:x2"}
    # a longer horizon again keeps what is not yet forgotten; what is forgotten stays forgotten
    run(state, configure(event_id="cfg2", ts=2 * DAY_MS + 2, dedup_horizon_days=30),
        delta("B", 1, event_id="x3", ts=9 * DAY_MS))
    assert set(state.tables["seen"]) == {"t1:x1", "t1:x2", "t1:cfg2", "t1:x3"}
    again, _ = serial_fold([*events, delta("B", 1, event_id="x1", ts=2 * DAY_MS),
                            delta("B", 1, event_id="x2", ts=2 * DAY_MS + 1),
                            configure(event_id="cfg2", ts=2 * DAY_MS + 2, dedup_horizon_days=30),
                            delta("B", 1, event_id="x3", ts=9 * DAY_MS)])
    assert again == state


# -- accounts -----------------------------------------------------------------------------------------
def test_every_journal_entry_of_a_tenant_uses_its_chart_sales_payments_refunds_and_cancellations():
    state = shop()
    default_sale = run(state, sale("O0", [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}], event_id="o0",
                                   order=True, terms="ON_ACCOUNT", customer="C1"))
    assert lines_of(emits(default_sale, "ledger.journal")[0]) == [
        ("1100", D("290.00"), D("0")), ("4000", D("0"), D("250.00")), ("2100", D("0"), D("40.00"))]
    run(state, configure(event_id="cfg", ts=2_050, accounts=CHART))
    on_account = run(state, sale("O1", [{"sku": "A", "quantity": 2}, {"sku": "B", "quantity": 1}], event_id="o1",
                                 ts=2_100, order=True, terms="ON_ACCOUNT", customer="C1"))
    assert lines_of(emits(on_account, "ledger.journal")[0]) == [
        ("1105", D("290.00"), D("0")), ("4100", D("0"), D("250.00")), ("2200", D("0"), D("40.00"))]
    paid = run(state, sale("S2", [{"sku": "A", "quantity": 1}], event_id="s2", ts=2_200,
                           payments=[{"method": "CARD", "amount": "100.00"}, {"method": "CASH", "amount": "16.00"}]))
    assert lines_of(emits(paid, "ledger.journal")[0]) == [
        ("1015", D("100.00"), D("0")), ("1001", D("16.00"), D("0")), ("4100", D("0"), D("100.00")),
        ("2200", D("0"), D("16.00"))]
    bank = run(state, payment("P1", "C1", "100.00", event_id="p1", ts=2_300, invoice="INV-O1"))
    mobile = run(state, payment("P2", "C1", "50.00", event_id="p2", ts=2_310, invoice="INV-O1", method="MOBILE"))
    assert lines_of(emits(bank, "ledger.journal")[0]) == [("1030", D("100.00"), D("0")), ("1105", D("0"), D("100.00"))]
    assert lines_of(emits(mobile, "ledger.journal")[0]) == [("1015", D("50.00"), D("0")), ("1105", D("0"), D("50.00"))]
    cash_back = run(state, refund("R1", "S2", [{"sku": "A", "quantity": 1}], event_id="r1", ts=2_400))
    assert lines_of(emits(cash_back, "ledger.journal")[0]) == [
        ("4110", D("100.00"), D("0")), ("2200", D("16.00"), D("0")), ("1001", D("0"), D("116.00"))]
    cancelled = run(state, cancel("O1", "X1", [{"sku": "B", "quantity": 1}], event_id="x1", ts=2_500))
    assert lines_of(emits(cancelled, "ledger.journal")[0]) == [
        ("4110", D("50.00"), D("0")), ("2200", D("8.00"), D("0")), ("1105", D("0"), D("58.00"))]
    # the sale booked before the chart changed keeps its entry; a refund of it now uses the new chart
    old = run(state, refund("R0", "O0", [{"sku": "B", "quantity": 1}], event_id="r0", ts=2_600, method="CREDIT"))
    assert lines_of(emits(old, "ledger.journal")[0]) == [
        ("4110", D("50.00"), D("0")), ("2200", D("8.00"), D("0")), ("1105", D("0"), D("58.00"))]
    # an empty map restores SPEC's chart
    run(state, configure(event_id="cfg2", ts=2_700, accounts={}))
    back = run(state, payment("P3", "C1", "10.00", event_id="p3", ts=2_800, invoice="INV-O0"))
    assert lines_of(emits(back, "ledger.journal")[0]) == [("1020", D("10.00"), D("0")), ("1100", D("0"), D("10.00"))]


def test_the_settings_of_one_tenant_never_decide_another_tenants_events():
    state = shop()
    run(state, configure(event_id="cfg", tenant="t2", accounts=CHART, default_currency="KES",
                         max_discount_percent="0"))
    out = run(state, sale("O1", [{"sku": "A", "quantity": 1, "discount_percent": "5"}], event_id="o1", order=True,
                          terms="ON_ACCOUNT", customer="C1", currency=""))
    assert outcome(out)["outcome"] == "ACCEPTED"
    [entry] = emits(out, "ledger.journal")
    assert (entry["currency"], [x["account"] for x in entry["lines"]]) == ("USD", ["1100", "4000", "2100"])


def test_the_serial_fold_decides_every_setting_the_same():
    events = [catalog("G", [{"sku": "A", "price": "100.00", "stock_quantity": 10}], event_id="cat", tax_rate="16"),
              terms("C1", "0", event_id="cust"),
              configure(event_id="cfg", ts=600, default_currency="KES", max_discount_percent="20", accounts=CHART,
                        late_count_horizon_days=1, dedup_horizon_days=1, default_tax_percent="8"),  # A's 16% wins
              sale("O1", [{"sku": "A", "quantity": 2, "discount_percent": "15"}], event_id="o1", order=True,
                   terms="ON_ACCOUNT", customer="C1", currency=""),
              payment("P1", "C1", "100.00", event_id="p1", invoice="INV-O1", currency="KES"),
              delta("A", 1, event_id="d1", ts=3 * DAY_MS)]
    state, out = serial_fold(events)
    again, again_out = serial_fold(events)
    assert (again, again_out) == (state, out)
    stepped = DictState()
    assert run(stepped, *events) == out and stepped == state
    [inv] = emits(out, "ledger.invoices")
    assert (inv["currency"], inv["net_total"], inv["tax_total"], inv["total"]) == ("KES", D("170.00"), D("27.20"),
                                                                                   D("197.20"))
    assert [lines_of(e) for e in emits(out, "ledger.journal")] == [
        [("1105", D("197.20"), D("0")), ("4100", D("0"), D("170.00")), ("2200", D("0"), D("27.20"))],
        [("1030", D("100.00"), D("0")), ("1105", D("0"), D("100.00"))]]
    # at d1 the tenant's 1-day horizon forgets the first EXPIRY_SWEEP ids queued (cat, cust, cfg, o1)
    assert set(state.tables["seen"]) == {"t1:p1", "t1:d1"}


def test_books_of_an_overridden_chart_reconcile_by_role_and_not_by_spec_codes():
    from .bookskit import differences

    state = shop()
    out = run(state, configure(event_id="cfg", accounts=CHART),
              sale("O1", [{"sku": "A", "quantity": 2}], event_id="o1", order=True, terms="ON_ACCOUNT", customer="C1"),
              payment("P1", "C1", "100.00", event_id="p1", invoice="INV-O1"))
    assert differences(state, out) == []  # SPEC's chart and the tenant's chart now
    assert differences(state, out, {"t1": [DEFAULT_ACCOUNTS]}) == [
        "t1: 1100 is 0, customers owe 132.0000", "t1 KES: 4000+4010 is 0, documents 200.00",
        "t1 KES: 2100 is 0, documents 32.00", "t1 KES: bank 1020 is 0, payments - refunds 100.0000"]


def test_the_remembered_tenant_config_is_per_process_config_and_per_stored_value():
    from streams.core.fold import _configured

    stored = TenantSettings(dedup_horizon_days=2).to_dict()
    one, two = FoldConfig(max_discount_percent=D("1")), FoldConfig(max_discount_percent=D("2"))
    assert (_configured(one, stored).max_discount_percent, _configured(two, stored).max_discount_percent) == (
        D("1"), D("2"))
    assert _configured(one, dict(stored)) is _configured(one, stored)  # an equal value decoded again: a hit
    other = TenantSettings(dedup_horizon_days=3, accounts=(("bank", "1030"),)).to_dict()
    assert _configured(one, other) == tenant_config(one, TenantSettings.from_dict(other))
    assert _configured(one, other).dedup_horizon_ms == 3 * DAY_MS and _configured(one, stored).dedup_horizon_ms == \
        2 * DAY_MS
