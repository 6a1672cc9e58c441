"""The horizons through a real worker (SPEC 2, "Cost does not grow with history"): event ids forgotten after
the dedup horizon leave the state with tombstones on its changelog, and a SKU's deltas fold into its base."""

from __future__ import annotations

from cli.testing import read_topic, settle, tenant_records
from cli.testing import stock_of as stock
from stockledger.topics import state_topic
from streams.state import unpack
from streams.web import tenant_partition


def change(tenant: str, event_id: str, day: str, **data: object) -> dict:
    return {"event_id": event_id, "event_type": "inventory.change", "tenant_id": tenant,
            "timestamp": f"{day}T10:00:00Z", "data": {"sku": "H", **data}}


def changelog(settings, tenant: str) -> list[tuple[str, bytes | None]]:
    """(key, value) of the tenant's state changelog records, in order (value None: a tombstone)."""
    part = tenant_partition(tenant, settings.partitions)
    mine = f"\x1f{tenant}:"
    return [(m.key().decode(), m.value()) for m in read_topic(settings, state_topic(settings.app_id))
            if m.partition() == part and mine in m.key().decode()]


def test_event_ids_behind_the_dedup_horizon_are_forgotten_with_tombstones(worker, publish, settings, tenant):
    # the default dedup horizon is 35 days of the tenant's event time
    publish("inventory.changes", [change(tenant, "old", "2026-01-01", new_quantity=10),
                                  change(tenant, "mid", "2026-01-20", quantity_change=1)])
    settle(settings)
    publish("inventory.changes", [change(tenant, "new", "2026-03-01", quantity_change=2)])  # 59 days after "old"
    settle(settings)
    # the next batch after the forgetting one is committed turns the deletion into a tombstone
    publish("inventory.changes", [change(tenant, "next", "2026-03-01", quantity_change=3)])
    settle(settings)
    records = changelog(settings, tenant)
    old_key = f"seen\x1f{tenant}:old"
    writes = [value for key, value in records if key == old_key]
    assert len(writes) == 3 and writes[-1] is None  # remembered; deleted (undo history kept); tombstone
    assert unpack(writes[0])[0] is not None and unpack(writes[1])[0] is None
    mid_key = f"seen\x1f{tenant}:mid"  # 40 days behind: forgotten in the same sweep
    assert [v is None for k, v in records if k == mid_key] == [False, False, True]
    for kept in ("new", "next"):  # within the horizon: remembered
        assert [v for k, v in records if k == f"seen\x1f{tenant}:{kept}"][-1] is not None
    # the expiry queue of the tenant: its head is past the two forgotten ids
    [queue] = [unpack(v)[0] for k, v in records if k == f"expiry\x1f{tenant}:#"][-1:]
    assert queue["head"] == 2 and queue["tail"] == 4
    assert stock(worker, tenant, "H")["on_hand"] == 16

    # a duplicate of a forgotten id is new again; of a remembered one, changes nothing
    publish("inventory.changes", [change(tenant, "mid", "2026-01-20", quantity_change=1),
                                  change(tenant, "new", "2026-03-01", quantity_change=2)])
    settle(settings)
    # "mid" is applied again: 7 days behind the SKU's newest change, it adds to the SKU's base
    assert stock(worker, tenant, "H")["on_hand"] == 17
    levels = [r["value"] for r in tenant_records(settings, "stock.levels", tenant)]
    assert [(lv["on_hand"], lv["last_event_id"]) for lv in levels] == \
        [(10, "old"), (11, "mid"), (13, "new"), (16, "next"), (17, "mid")]


def test_a_hot_skus_deltas_go_to_chunks_and_a_late_count_drops_the_dead_ones(worker, publish, settings, tenant):
    """Issue 17: the SKU's head keeps fewer than STOCK_CHUNK (64) deltas, each full tail is closed once into its
    own key; a late count inside the chunks is exact, and the chunk wholly before it is deleted (tombstone)."""
    def at(second: int) -> str:
        return f"2026-01-01T10:{second // 60:02d}:{second % 60:02d}Z"

    deltas = [{"event_id": f"d{i}", "event_type": "inventory.change", "tenant_id": tenant, "timestamp": at(i),
               "data": {"sku": "H", "quantity_change": -1}} for i in range(200)]
    publish("inventory.changes", [change(tenant, "c0", "2026-01-01", new_quantity=1_000)] + deltas)  # c0 at 10:00:00
    settle(settings)
    assert stock(worker, tenant, "H")["on_hand"] == 1_000 - 199  # d0 is at the count's own time: inside it
    # a late count at 10:01:40 (d100's time): chunk 0 (d1..d64) is wholly before it, chunk 1 (d65..d128) not
    publish("inventory.changes", [{"event_id": "late", "event_type": "inventory.change", "tenant_id": tenant,
                                   "timestamp": at(100), "data": {"sku": "H", "new_quantity": 500}}])
    settle(settings)
    assert stock(worker, tenant, "H")["on_hand"] == 500 - 99  # d101..d199
    publish("inventory.changes", [change(tenant, "next", "2026-01-02", quantity_change=-1)])
    settle(settings)
    assert stock(worker, tenant, "H")["on_hand"] == 400
    records = changelog(settings, tenant)
    chunks = {k: [v for key, v in records if key == k] for k, _ in records if k.startswith("stock_chunks\x1f")}
    prefix = f"stock_chunks\x1f{tenant}:H#"
    assert sorted(chunks) == [f"{prefix}{n}" for n in range(3)]  # 199 deltas after the count: 3 chunks closed
    # chunk 0: written once, deleted by the late count (its undo copy kept), then a tombstone; 1 and 2 written once
    assert [v is None or unpack(v)[0] is None for v in chunks[f"{prefix}0"]] == [False, True, True]
    assert chunks[f"{prefix}0"][-1] is None
    assert [len(unpack(v)[0]["d"]) for n in (1, 2) for v in chunks[f"{prefix}{n}"]] == [128, 128]
    heads = [unpack(v)[0] for k, v in records if k == f"stock\x1f{tenant}:H"]
    assert max(len(h["deltas"]) for h in heads) < 2 * 64 and heads[-1]["chunks"][:3] == [1, 1, 3]
