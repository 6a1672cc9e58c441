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
