"""produce -> Kafka -> consume against the real stack, with the seed 003 examples as fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import main as cli
from cli.testing import end_offsets
from stockledger.codec import local_schema
from stockledger.consume import records
from stockledger.jsonconv import compile_from_json
from stockledger.produce import expand, read_json_records
from stockledger.topics import spec

SEED = Path(__file__).resolve().parent.parent / "fixtures" / "seed003"
CASES = [
    ("catalog.updates", "catalog_update.json"),
    ("inventory.changes", "inventory_change.json"),
    ("sales", "order_import.json"),
    ("inventory.changes", "adjust.json"),
]


def tenant_values(settings, topic: str, tenant: str) -> list[dict]:
    return [r["value"] for r in records(settings, topic) if r["value"].get("tenant_id") == tenant]


@pytest.mark.parametrize("topic,fixture", CASES)
def test_seed_examples_round_trip(stack, settings, tenant, topic, fixture, capsys):
    path = SEED / fixture
    assert cli.main(["produce", topic, str(path), "--tenant", tenant, "--currency", "INR"]) == 0
    convert = compile_from_json(local_schema(spec(topic).schema))
    expected = [convert(e, "") for raw in read_json_records(str(path)) for e in expand(topic, raw, tenant, "INR")]
    got = [convert(v, "") for v in tenant_values(settings, topic, tenant)]
    if fixture == "adjust.json":  # stamped at publication: compare the rest
        for e, g in zip(expected, got, strict=True):
            assert abs(g.pop("timestamp") - e.pop("timestamp")) < 60_000
    assert len(got) == len(expected) >= 1
    assert got == expected


def test_seed_catalog_fields_come_back_exactly(stack, settings, tenant):
    assert cli.main(["produce", "catalog.updates", str(SEED / "catalog_update.json"), "--tenant", tenant]) == 0
    [event] = tenant_values(settings, "catalog.updates", tenant)
    assert event["timestamp"] == "2024-01-20T10:00:00Z"
    black, blue = event["data"]["variants"]
    assert (black["sku"], black["price"], black["mrp"], black["stock_quantity"]) == ("IPH15-128-BLK", "79900.00",
                                                                                     "89900.00", 50)
    assert black["attributes"] == {"Color": "Black", "Storage": "128GB"}
    assert (blue["sku"], blue["mrp"], blue["stock_quantity"]) == ("IPH15-128-BLU", None, 42)


def test_mapped_payloads_get_contract_keys(stack, settings, tenant):
    assert cli.main(["produce", "sales", str(SEED / "order_import.json"), "--tenant", tenant]) == 0
    assert cli.main(["produce", "inventory.changes", str(SEED / "adjust.json"), "--tenant", tenant]) == 0
    [sale] = [r for r in records(settings, "sales") if r["value"].get("tenant_id") == tenant]
    [adj] = [r for r in records(settings, "inventory.changes") if r["value"].get("tenant_id") == tenant]
    assert sale["key"] == f"{tenant}:ORD-WEB-1001"
    assert sale["value"]["event_type"] == "order.placed"
    assert sale["value"]["data"]["line_items"][0]["unit_price"] == "79900.00"
    assert adj["key"] == f"{tenant}:IPH15-128-BLK"
    assert adj["value"]["data"]["quantity_change"] == -1
    assert adj["value"]["data"]["location_id"] == "WH-MAIN"


def _event(tenant: str, n: int, **data) -> dict:
    return {"event_id": f"e{n}", "event_type": "inventory.change", "tenant_id": tenant,
            "timestamp": "2026-01-01T00:00:00Z", "data": {"sku": f"S{n}", **data}}


def test_json_lines_and_arrays(stack, settings, tenant, tmp_path):
    lines = tmp_path / "in.jsonl"
    lines.write_text("\n".join(json.dumps(_event(tenant, n, quantity_change=n)) for n in range(1, 4)) + "\n")
    array = tmp_path / "in.json"
    array.write_text(json.dumps([_event(tenant, n, new_quantity=n) for n in range(4, 6)]))
    assert cli.main(["produce", "inventory.changes", str(lines)]) == 0
    assert cli.main(["produce", "inventory.changes", str(array)]) == 0
    got = sorted(tenant_values(settings, "inventory.changes", tenant), key=lambda v: v["event_id"])
    assert [(v["event_id"], v["data"]["quantity_change"], v["data"]["new_quantity"]) for v in got] == [
        ("e1", 1, None), ("e2", 2, None), ("e3", 3, None), ("e4", None, 4), ("e5", None, 5)]


@pytest.mark.parametrize("bad,field,why", [
    ({"quantity_change": "ten"}, "data.quantity_change", "expected an integer"),
    ({"quantity_chnage": 1}, "data.quantity_chnage", "is not a field of this schema"),
    ({"new_quantity": 1.5}, "data.new_quantity", "expected an integer"),
])
def test_invalid_record_publishes_nothing(stack, settings, tenant, tmp_path, capsys, bad, field, why):
    path = tmp_path / "bad.jsonl"
    good = [_event(tenant, n, quantity_change=1) for n in range(1, 3)]
    broken = _event(tenant, 3, **bad)
    path.write_text("\n".join(json.dumps(e) for e in good + [broken]) + "\n")
    before = end_offsets(settings, "inventory.changes")
    assert cli.main(["produce", "inventory.changes", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: record 3: {field}: {why}" in err
    assert end_offsets(settings, "inventory.changes") == before
    assert tenant_values(settings, "inventory.changes", tenant) == []


def test_missing_field_and_wrong_event_type_are_named(stack, tmp_path, tenant, capsys):
    path = tmp_path / "bad.json"
    e1 = _event(tenant, 1, quantity_change=1)
    del e1["data"]["sku"]
    e2 = {**_event(tenant, 2, quantity_change=1), "event_type": "sale.completed"}
    path.write_text(json.dumps([e1, e2]))
    assert cli.main(["produce", "inventory.changes", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: record 1: data.sku: is required" in err
    assert f"{path}: record 2: event_type: 'sale.completed' does not belong on inventory.changes" in err


def test_consume_from_offset_and_time(stack, settings, tenant, tmp_path):
    path = tmp_path / "in.jsonl"
    events = [{**_event(tenant, n, quantity_change=n), "data": {"sku": "ONE-SKU", "quantity_change": n}}
              for n in range(1, 6)]
    path.write_text("\n".join(json.dumps(e) for e in events))
    assert cli.main(["produce", "inventory.changes", str(path)]) == 0
    mine = [r for r in records(settings, "inventory.changes") if r["value"].get("tenant_id") == tenant]
    part = mine[0]["partition"]
    third = mine[2]["offset"]
    tail = [r["value"]["event_id"] for r in records(settings, "inventory.changes", offset=third, partition=part)
            if r["value"].get("tenant_id") == tenant]
    assert tail == ["e3", "e4", "e5"]
    ts = mine[3]["timestamp"]
    first = next(r["value"]["event_id"] for r in mine if r["timestamp"] >= ts)
    from_time = records(settings, "inventory.changes", from_time=str(ts), partition=part)
    assert [r["value"]["event_id"] for r in from_time if r["value"].get("tenant_id") == tenant][0] == first


def test_unknown_topic_is_a_usage_error(stack, tmp_path, capsys):
    path = tmp_path / "x.json"
    path.write_text("{}")
    assert cli.main(["produce", "no.such.topic", str(path)]) == 2
    assert "unknown topic 'no.such.topic'" in capsys.readouterr().err
