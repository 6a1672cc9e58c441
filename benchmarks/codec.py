"""Codec benchmark (issue 17): fastavro against the compiled readers and writers, per record, no stack needed.

Three records as the benchmarks publish them (converted by `stockledger.produce.prepare`):
  - an inventory.change (benchmarks/stock.py's: a delta of one SKU);
  - a sale.completed with 5 line items (unit price, discount and tax as decimals) and 2 payments;
  - a catalog.update with 20 variants (price and MRP decimals, stock quantity, 2 attributes, 1 medium).
For each: reading the Avro body of its Confluent-framed value, as `Codec.decode` did
(`fastavro.schemaless_reader(io.BytesIO(value[5:]), schema, None)`) against the compiled reader
(`read(value, 5)`, after checking that both give the same record), and writing it (fastavro's
`schemaless_writer` with fastavro's own decimal writer against the compiled writer, after checking both
give the same bytes). Printed: us/record (the best of --repeat timings of about --seconds each) and the
ratio compiled/fastavro. Aim (issue 17's brief): inventory.change read <= 2.0 us.

    .venv/bin/python benchmarks/codec.py [--repeat 5] [--seconds 0.2]
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import fastavro.write
from fastavro._logical_writers_py import prepare_bytes_decimal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stockledger.avroreader import compile_reader  # noqa: E402
from stockledger.avrowriter import compile_writer  # noqa: E402
from stockledger.codec import local_schema  # noqa: E402
from stockledger.produce import prepare  # noqa: E402
from stockledger.topics import spec  # noqa: E402

T0 = 1_767_225_600_000
AIM_READ_US = 2.0


def records() -> list[tuple[str, str, dict]]:
    tenant = "bench-5f2c9a1e"
    change = {"event_id": "b12345", "event_type": "inventory.change", "tenant_id": tenant, "timestamp": T0 + 12345,
              "data": {"sku": "S000345", "quantity_change": -1}}
    lines = [{"sku": f"S{n:06d}", "quantity": n + 1, "unit_price": f"{100 + 7 * n}.50", "discount_percent": "2.5",
              "tax_percent": "16"} for n in range(5)]
    sale = {"event_id": "s-000123", "event_type": "sale.completed", "tenant_id": tenant, "timestamp": T0 + 99,
            "source": "pos", "data": {"sale_id": "S-000123", "channel": "POS", "currency": "KES",
                                      "location_id": "shop-1", "payment_terms": "PAID", "line_items": lines,
                                      "payments": [{"method": "CASH", "amount": "1000.00"},
                                                   {"method": "CARD", "amount": "1797.35", "reference": "T-88"}]}}
    variants = [{"sku": f"S{n:06d}", "display_name": f"Shirt {n}", "price": f"{10 + n}.50", "mrp": f"{20 + n}",
                 "stock_quantity": 1000 + n, "attributes": {"size": "M", "colour": "blue"},
                 "media": [{"url": f"https://cdn.example/{n}.jpg", "is_main": True}]} for n in range(20)]
    catalog = {"event_id": "c-1", "event_type": "catalog.update", "tenant_id": tenant, "timestamp": T0,
               "data": {"product_group_id": "G-1", "group_name": "Shirts", "tax_rate": "16", "variants": variants}}
    return [("inventory.change", "inventory.changes", change), ("sale.completed (5 lines, 2 payments)", "sales", sale),
            ("catalog.update (20 variants)", "catalog.updates", catalog)]


def best(fn: Callable[[], Any], repeat: int, seconds: float) -> float:
    """us per call: the best of `repeat` timings of about `seconds` each."""
    timer = timeit.Timer(fn)
    number, took = timer.autorange()
    number = max(1, int(number * seconds / max(took, 1e-9)))
    return min(timer.repeat(repeat, number)) / number * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="timings per figure, the best is kept (default 5)")
    ap.add_argument("--seconds", type=float, default=0.2, help="length of one timing (default 0.2)")
    args = ap.parse_args()
    print(f"codec: us/record, best of {args.repeat}; Python {platform.python_version()}, "
          f"fastavro {fastavro.__version__}")
    print(f"  {'record':38} {'bytes':>5}   {'read: fastavro':>14} {'compiled':>8} {'ratio':>5}   "
          f"{'write: fastavro':>15} {'compiled':>8} {'ratio':>5}")
    inventory_read = 0.0
    for label, topic, raw in records():
        schema = local_schema(spec(topic).schema)
        record = prepare(topic, "<bench>", [raw])[0].record
        read, write = compile_reader(schema), compile_writer(schema)
        assert read is not None and write is not None

        def fastavro_write(record: dict = record, schema: Any = schema) -> bytes:
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, schema, record)
            return buf.getvalue()

        hook = fastavro.write.LOGICAL_WRITERS["bytes-decimal"]  # the codec's decimal_bytes, once it is imported
        fastavro.write.LOGICAL_WRITERS["bytes-decimal"] = prepare_bytes_decimal  # fastavro's own, for its figure
        try:
            body = fastavro_write()
            assert write(record) == body, label
            fa_write = best(fastavro_write, args.repeat, args.seconds)
        finally:
            fastavro.write.LOGICAL_WRITERS["bytes-decimal"] = hook
        co_write = best(lambda record=record, write=write: write(record), args.repeat, args.seconds)
        value = b"\x00\x00\x00\x00\x01" + body
        expected = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema, None)
        assert read(value, 5) == expected and repr(read(value, 5)) == repr(expected), label
        fa_read = best(lambda value=value, schema=schema: fastavro.schemaless_reader(io.BytesIO(value[5:]), schema,
                                                                                      None), args.repeat, args.seconds)
        co_read = best(lambda value=value, read=read: read(value, 5), args.repeat, args.seconds)
        if topic == "inventory.changes":
            inventory_read = co_read
        print(f"  {label:38} {len(body):5}   {fa_read:14.2f} {co_read:8.2f} {co_read / fa_read:5.2f}   "
              f"{fa_write:15.2f} {co_write:8.2f} {co_write / fa_write:5.2f}")
    verdict = "met" if inventory_read <= AIM_READ_US else "NOT met"
    print(f"  aim: inventory.change read <= {AIM_READ_US} us: {inventory_read:.2f} us, {verdict}")


if __name__ == "__main__":
    main()
