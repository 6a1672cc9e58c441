"""The whole product group through a real worker (issue 20): kept, shown by `GET /catalog/{group}`, emitted on
catalog.groups; a group beyond the catalog bounds is dead-lettered at admit with its reason."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from cli import main as cli
from cli.testing import settle, tenant_records

SEED = Path(__file__).resolve().parent.parent / "fixtures" / "seed003"


def test_the_seed_group_is_kept_shown_and_emitted(worker, settings, tenant):
    assert cli.main(["produce", "catalog.updates", str(SEED / "catalog_update.json"), "--tenant", tenant]) == 0
    settle(settings)
    r = worker.get("/catalog/PG-1001", tenant=tenant)
    assert r.status_code == 200
    assert r.json() == {
        "tenant_id": tenant, "product_group_id": "PG-1001", "group_name": "iPhone 15", "version": 1,
        "updated_at": "2024-01-20T10:00:00Z", "event_id": "evt_550e8400-e29b", "description": "<p>Full HTML...</p>",
        "category_hierarchy": ["Electronics", "Smartphones", "Apple"], "tax_hsn": "85171300", "is_active": True,
        "tax_rate": None,
        "variants": [
            {"sku": "IPH15-128-BLK", "display_name": "iPhone 15 128GB Black", "price": "79900.00", "mrp": "89900.00",
             "attributes": {"Color": "Black", "Storage": "128GB"},
             "media": [{"url": "https://erp-cdn.com/u/iph15-blk.jpg", "is_main": True},
                       {"url": "https://erp-cdn.com/u/iph15-blk-back.jpg", "is_main": False}]},
            {"sku": "IPH15-128-BLU", "display_name": "iPhone 15 128GB Blue", "price": "79900.00", "mrp": None,
             "attributes": {"Color": "Blue", "Storage": "128GB"}, "media": []}]}
    out = tenant_records(settings, "catalog.groups", tenant)
    assert [(o["key"], o["value"]["version"], o["value"]["event_id"], len(o["value"]["variants"][0]["media"]))
            for o in out] == [(f"{tenant}:PG-1001", 1, "evt_550e8400-e29b", 2)]
    missing = worker.get("/catalog/NOPE", tenant=tenant)
    assert missing.status_code == 404
    assert missing.json()["error"] == f"unknown product group 'NOPE' for tenant '{tenant}'"


def _update(tenant: str, event_id: str, group: str, media: int) -> dict:
    return {"event_id": event_id, "event_type": "catalog.update", "tenant_id": tenant,
            "timestamp": datetime(2026, 3, 1, 10, 0, tzinfo=UTC), "source": "erp",
            "data": {"product_group_id": group, "group_name": group, "description": None, "category_hierarchy": [],
                     "tax_hsn": None, "is_active": True, "tax_rate": None,
                     "variants": [{"sku": f"{group}-1", "display_name": "v", "price": Decimal("1.0000"), "mrp": None,
                                   "stock_quantity": None, "attributes": {},
                                   "media": [{"url": f"https://cdn/{i}.jpg", "is_main": i == 0}
                                             for i in range(media)]}]}}


def test_a_group_beyond_the_bounds_is_dead_lettered_at_admit(worker, settings, codec, raw_producer, tenant):
    # published as another producer would (no `stockledger produce` check in front)
    for event in (_update(tenant, "big", "G-BIG", 11), _update(tenant, "ok", "G-OK", 10)):
        raw_producer.produce("catalog.updates", codec.encode("catalog.updates", event),
                             f"{tenant}:{event['data']['product_group_id']}".encode())
    assert raw_producer.flush(30) == 0
    settle(settings)
    dlq = [r["value"] for r in tenant_records(settings, "catalog.updates.dlq", tenant)]
    assert [(d["error"], d["stage"]) for d in dlq] == [
        ("CATALOG_OUT_OF_RANGE: data.variants[0].media: 11 entries; at most 10", "rule")]
    assert worker.get("/catalog/G-BIG", tenant=tenant).status_code == 404
    ok = worker.get("/catalog/G-OK", tenant=tenant).json()
    assert (ok["version"], len(ok["variants"][0]["media"])) == (1, 10)
