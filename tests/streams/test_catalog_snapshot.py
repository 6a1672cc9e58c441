"""The snapshot lists catalog-only SKUs with quantity 0 (issue 20), in key order with the stocked ones."""

from __future__ import annotations

from cli.testing import settle

from .test_sales_pipeline import catalog


def test_a_sku_only_the_catalog_knows_is_in_the_snapshot_with_quantity_0(worker, publish, settings, tenant):
    event = catalog(tenant, [("CS-B", "10.00", 4)], group="CS")
    event["data"]["variants"].insert(0, {"sku": "CS-A", "display_name": "CS-A", "price": "5.00"})
    event["data"]["variants"].append({"sku": "CS-C", "display_name": "CS-C", "price": "7.00"})
    publish("catalog.updates", [event])
    settle(settings)
    rows = worker.get("/inventory/snapshot", tenant=tenant).json()
    assert [(r["sku"], r["qty"], r["on_hand"], r["reserved"], r["available"]) for r in rows] == [
        ("CS-A", 0, 0, 0, 0), ("CS-B", 4, 4, 0, 4), ("CS-C", 0, 0, 0, 0)]
    text = worker.get("/inventory/snapshot", tenant=tenant, format="csv").text
    assert text == "sku,qty,on_hand,reserved,available\r\nCS-A,0,0,0,0\r\nCS-B,4,4,0,4\r\nCS-C,0,0,0,0\r\n"
