"""Demo data: a small, deterministic shop (catalog, stock, customers, sales) and the `demo` command."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

from stockledger.config import Settings

TENANT = "demo"
START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


def _ts(minutes: int) -> str:
    return (START + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def catalog(groups: int = 20, tenant: str = TENANT) -> list[dict]:
    rng = random.Random(1)
    out = []
    for g in range(1, groups + 1):
        variants = [{
            "sku": f"SKU-{g:03d}-{c}",
            "display_name": f"Product {g} {c}",
            "price": f"{rng.randint(100, 9000)}.{rng.choice(['00', '50', '99'])}",
            "stock_quantity": rng.randint(20, 80),
            "attributes": {"Color": c},
            "media": [],
        } for c in ("RED", "BLUE", "BLACK")]
        out.append({"event_id": f"cat-{g}", "event_type": "catalog.update", "tenant_id": tenant,
                    "timestamp": _ts(0), "source": "erp",
                    "data": {"product_group_id": f"PG-{g:03d}", "group_name": f"Product {g}", "is_active": True,
                             "tax_rate": "16", "category_hierarchy": ["Demo"], "variants": variants}})
    return out


def skus(groups: int = 20) -> list[str]:
    return [f"SKU-{g:03d}-{c}" for g in range(1, groups + 1) for c in ("RED", "BLUE", "BLACK")]


def inventory_changes(n: int, groups: int = 20, tenant: str = TENANT, seed: int = 2,
                      absolute_every: int = 10) -> Iterator[dict]:
    """Deltas with an occasional absolute count, one minute apart."""
    rng = random.Random(seed)
    all_skus = skus(groups)
    for i in range(1, n + 1):
        data: dict = {"sku": rng.choice(all_skus), "location_id": rng.choice(["WH-MAIN", "STORE-1"])}
        if absolute_every and i % absolute_every == 0:
            data.update(new_quantity=rng.randint(10, 60), reason="COUNT")
        else:
            data.update(quantity_change=rng.choice([-3, -2, -1, 1, 2, 5]), reason="ADJUSTMENT")
        yield {"event_id": f"inv-{seed}-{i}", "event_type": "inventory.change", "tenant_id": tenant,
               "timestamp": _ts(i), "source": "erp", "data": data}


def customers(tenant: str = TENANT) -> list[dict]:
    return [{"event_id": f"cust-{c}", "event_type": "customer.credit", "tenant_id": tenant, "timestamp": _ts(0),
             "data": {"customer_ref": f"CUST-{c}", "credit_limit": limit, "on_hold": False}}
            for c, limit in ((1, "10000"), (2, "50000"), (3, "0"))]


def sales(n: int, groups: int = 20, tenant: str = TENANT, seed: int = 3) -> Iterator[dict]:
    """Half POS sales (paid), half web orders (on account for known customers)."""
    rng = random.Random(seed)
    all_skus = skus(groups)
    for i in range(1, n + 1):
        pos = i % 2 == 1
        lines = [{"sku": rng.choice(all_skus), "quantity": rng.randint(1, 3)} for _ in range(rng.randint(1, 5))]
        data = {"sale_id": f"S-{seed}-{i}", "channel": "POS" if pos else "WEB", "currency": "KES",
                "payment_terms": "PAID" if pos else "ON_ACCOUNT", "line_items": lines}
        if not pos:
            data["customer_ref"] = f"CUST-{rng.randint(1, 3)}"
        yield {"event_id": f"sale-{seed}-{i}", "event_type": "sale.completed" if pos else "order.placed",
               "tenant_id": tenant, "timestamp": _ts(1000 + i), "source": "pos" if pos else "web", "data": data}


def demo_set(tenant: str = TENANT) -> dict[str, list[dict]]:
    """A few hundred events over the input topics."""
    return {
        "catalog.updates": catalog(tenant=tenant),
        "customers": customers(tenant),
        "inventory.changes": list(inventory_changes(200, tenant=tenant)),
        "sales": list(sales(60, tenant=tenant)),
    }


def start_background(settings: Settings, name: str, argv: list[str], progress: Callable[[str], None]) -> None:
    """A worker or sink that outlives this command; `stockledger stack down` stops it."""
    import sys

    from stockledger.stack._proc import Process

    proc = Process(name, settings.home / "run")
    if proc.pid() is None:
        proc.spawn([sys.executable, "-m", "stockledger.cli", *argv])
        progress(f"{name}: started (log {proc.logfile})")


def run(settings: Settings, progress: Callable[[str], None]) -> dict[str, int]:
    """Start the stack and a worker, publish the demo set, wait until the worker has applied it."""
    import requests

    from stockledger.produce import prepare, publish
    from stockledger.stack import Stack
    from stockledger.testing import committed_lag, wait_for
    from stockledger.topics import ensure_topics
    from streams.codec import Codec

    Stack(settings).up(progress)
    ensure_topics(settings.bootstrap_servers, settings.partitions, log=progress)
    start_background(settings, "worker-demo", ["worker", "--id", "demo", "--web-port", str(settings.web_port)],
                     progress)
    url = f"http://127.0.0.1:{settings.web_port}"
    wait_for(lambda: _healthy(requests, url), 180, "the worker to be ready")
    codec = Codec(settings.schema_registry_url)
    counts: dict[str, int] = {}
    for topic, events in demo_set().items():
        counts[topic] = publish(settings, topic, prepare(topic, "<demo>", events), codec=codec)
        progress(f"published {counts[topic]} demo events to {topic}")
    stream_inputs = ["catalog.updates", "inventory.changes", "stockledger-catalog-items"]
    wait_for(lambda: committed_lag(settings, settings.app_id, stream_inputs) == 0, 300,
             "the worker to apply the demo events")
    progress("the worker has applied every demo event")
    return counts


def _healthy(requests, url: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        return requests.get(url + "/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False
