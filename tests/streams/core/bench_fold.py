"""Micro-benchmark of the pure fold: ON_ACCOUNT sales of one customer through `serial_fold`.

streams/core/fold.py keeps a constant-size credit value and one key per invoice (O(1) per sale); the fold
before it (the legacy fold, deleted in issue 18; its answers are in tests/fixtures/legacy_fold.jsonl.gz)
held every open invoice and every applied id in the customer's credit value (O(n) per sale).
No services: run `.venv/bin/python tests/streams/core/bench_fold.py [--sales 5000] [--skus 1000] [--repeat 1]`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from streams.core import fold as new  # noqa: E402
from tests.streams.core.foldkit import catalog, sale, terms  # noqa: E402


def events(n: int, skus: int) -> list:
    """A catalog of `skus` SKUs, one customer with no limit, then `n` ON_ACCOUNT sales of that customer
    (half orders), each of one SKU in turn.

    A SKU's stock value keeps every delta stamped after its last count (stock.py), so few SKUs sold
    many times with no count make stock, not credit, grow per sale; many SKUs keep stock small and
    measure what credit costs."""
    prices = ("100.00", "33.33", "7.50")
    out = [catalog("G", [{"sku": f"K{k}", "price": prices[k % 3], "stock_quantity": 10 * n} for k in range(skus)],
                   event_id="cat", tax_rate="16", ts=0),
           terms("C1", "0", event_id="terms", ts=0)]
    for i in range(n):
        out.append(sale(f"S{i}", [{"sku": f"K{i % skus}", "quantity": 1 + i % 2}], event_id=f"e{i}",
                        ts=1_000 + i, order=i % 2 == 1, terms="ON_ACCOUNT", customer="C1"))
    return out


def rate(module, inputs: list, n: int, repeat: int) -> tuple[float, object, list]:
    best = float("inf")
    state = outputs = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        state, outputs = module.serial_fold(inputs)
        best = min(best, time.perf_counter() - t0)
    return n / best, state, outputs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sales", type=int, default=5_000)
    ap.add_argument("--skus", type=int, default=1_000, help="SKUs sold in turn (see events)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each; the best is reported")
    args = ap.parse_args()
    inputs = events(args.sales, args.skus)  # encoded and decoded once, outside the timing
    new_rate, new_state, _ = rate(new, inputs, args.sales, args.repeat)
    new_value = len(str(new_state.tables["credit"]["t1:C1"]))
    print(f"{args.sales} ON_ACCOUNT sales of one customer ({args.skus} SKUs in turn) through serial_fold")
    print(f"fold: {new_rate:10.0f} sales/s   customer credit value at the end: {new_value} chars")


if __name__ == "__main__":
    main()
