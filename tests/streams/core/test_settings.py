"""Tenant settings as events (SPEC 8): tenant.configured folded into the tenant's state, read by later events."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from streams.core.fold import DeadLetter, DictState, FoldConfig, fold, serial_fold
from streams.core.settings import (
    HOLD,
    IMMEDIATE,
    REFUSE,
    RESERVE,
    TenantSettings,
    settings_of,
    validate_tenant_configured,
)

from .foldkit import check_outputs, configure, emits, sale

D = Decimal
CFG = FoldConfig()


def run(state: DictState, *inputs, config: FoldConfig = CFG):
    out = []
    for event in inputs:
        got = fold(state, event, config)
        check_outputs(got)
        out.extend(got)
    return out


def test_the_defaults_before_any_tenant_configured():
    assert settings_of(DictState(), "t1") == TenantSettings(IMMEDIATE, REFUSE, "USD", None, None, None, None, ())


def test_a_field_left_out_keeps_its_value_and_nothing_is_emitted():
    state = DictState()
    out = run(state, configure(event_id="c1", order_fulfilment="RESERVE", default_tax_percent="16"),
              configure(event_id="c2", credit_policy="HOLD", default_currency="KES"),
              configure(event_id="c3", accounts={"bank": "1030"}))
    assert out == []
    got = settings_of(state, "t1")
    assert got == TenantSettings(RESERVE, HOLD, "KES", D("16.0000"), None, None, None, (("bank", "1030"),))
    assert (got.reserves, got.holds, got.chart().bank, got.chart().cash) == (True, True, "1030", "1000")
    assert state.tables["settings"] == {"t1": got.to_dict()}
    run(state, configure(event_id="c4", order_fulfilment="IMMEDIATE", late_count_horizon_days=7,
                         dedup_horizon_days=30, max_discount_percent="12.5"))
    assert settings_of(state, "t1") == TenantSettings(IMMEDIATE, HOLD, "KES", D("16.0000"), D("12.5000"), 7, 30,
                                                      (("bank", "1030"),))


def test_settings_are_per_tenant():
    state = DictState()
    run(state, configure(event_id="c1", tenant="t2", order_fulfilment="RESERVE"))
    assert settings_of(state, "t1") == TenantSettings()
    assert settings_of(state, "t2").order_fulfilment == RESERVE


def test_the_tenant_default_tax_applies_to_later_sales_and_the_process_default_stays_the_fallback():
    config = FoldConfig(default_tax_percent=D("5"))
    state = DictState()
    line = [{"sku": "X", "quantity": 2, "unit_price": "10"}]
    first = emits(run(state, sale("S1", line, event_id="s1"), config=config), "ledger.invoices")[0]
    run(state, configure(event_id="c1", ts=2_500, default_tax_percent="16"), config=config)
    second = emits(run(state, sale("S2", line, event_id="s2", ts=3_000), config=config), "ledger.invoices")[0]
    assert (first["tax_total"], first["total"]) == (D("1.00"), D("21.00"))
    assert (second["tax_total"], second["total"]) == (D("3.20"), D("23.20"))
    assert second["lines"][0]["tax_percent"] == D("16")


def test_a_redelivered_configuration_changes_nothing_and_other_content_under_its_id_is_dead_lettered():
    state = DictState()
    run(state, configure(event_id="c1", credit_policy="HOLD"))
    assert run(state, configure(event_id="c1", credit_policy="HOLD")) == []
    out = run(state, configure(event_id="c1", credit_policy="REFUSE"))
    assert len(out) == 1 and isinstance(out[0], DeadLetter) and out[0].stage == "idempotency"
    assert out[0].error.startswith("IDEMPOTENCY_CONFLICT: event_id c1 was used before with different content")
    assert settings_of(state, "t1").credit_policy == HOLD


def test_serial_fold_decides_the_same():
    events = [configure(event_id="c1", default_tax_percent="10"),
              sale("S1", [{"sku": "X", "quantity": 1, "unit_price": "10"}], event_id="s1")]
    state, out = serial_fold(events)
    assert settings_of(state, "t1").default_tax_percent == D("10")
    assert emits(out, "ledger.invoices")[0]["total"] == D("11.00")


def test_the_validator_names_every_bad_field():
    assert validate_tenant_configured({}) == []
    assert validate_tenant_configured({"order_fulfilment": "RESERVE", "credit_policy": "HOLD",
                                       "default_currency": "KES", "default_tax_percent": D("16"),
                                       "accounts": {"bank": "1030"}}) == []
    assert validate_tenant_configured({
        "order_fulfilment": "LATER", "credit_policy": "MAYBE", "default_currency": "kes",
        "default_tax_percent": D("100.01"), "max_discount_percent": D("-1"), "late_count_horizon_days": -1,
        "dedup_horizon_days": 10_000, "accounts": {"vault": "9", "bank": " "}}) == [
        "order_fulfilment must be one of IMMEDIATE, RESERVE, got 'LATER'",
        "credit_policy must be one of REFUSE, HOLD, got 'MAYBE'",
        "default_currency must be an ISO 4217 code that stockledger books, got 'kes'",
        "default_tax_percent must be from 0 to 100, got Decimal('100.01')",
        "max_discount_percent must be from 0 to 100, got Decimal('-1')",
        "late_count_horizon_days must be a whole number of days from 0 to 3650, got -1",
        "dedup_horizon_days must be a whole number of days from 0 to 3650, got 10000",
        "unknown account roles ['vault']; known: " + str(sorted(
            ["cash", "clearing", "bank", "receivable", "tax_payable", "revenue", "returns"])),
        "accounts ['bank'] must name a non-empty account code"]
    # a code stockledger cannot round to (no minor unit known), and one account for two roles, are refused
    assert validate_tenant_configured({"default_currency": "XYZ", "accounts": {"bank": "1000", "returns": "4000"}}) \
        == ["default_currency must be an ISO 4217 code that stockledger books, got 'XYZ'",
            "accounts: roles ['cash', 'bank'] would share account '1000'",
            "accounts: roles ['revenue', 'returns'] would share account '4000'"]
    assert validate_tenant_configured({"accounts": {"bank": "1000", "cash": "1001"}}) == []


@given(st.lists(st.fixed_dictionaries({}, optional={
    "order_fulfilment": st.sampled_from(["IMMEDIATE", "RESERVE"]),
    "credit_policy": st.sampled_from(["REFUSE", "HOLD"]),
    "default_currency": st.sampled_from(["USD", "KES", "EUR"]),
    "default_tax_percent": st.decimals(0, 100, places=2).map(str)}), max_size=6))
def test_the_last_given_value_of_each_field_wins(changes):
    events = [configure(event_id=f"c{n}", **change) for n, change in enumerate(changes)]
    state, out = serial_fold(events)
    assert out == []
    expected = TenantSettings()
    for change in changes:
        expected = expected.configured(change)
    assert settings_of(state, "t1") == expected
    for name in ("order_fulfilment", "credit_policy", "default_currency"):
        given_values = [c[name] for c in changes if name in c]
        assert getattr(expected, name) == (given_values[-1] if given_values else getattr(TenantSettings(), name))
