"""Demo data: a small, deterministic shop (catalog, stock, customers, sales) and the `demo` command."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from stockledger.config import Settings

TENANT = "demo"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


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


def refunds(sold: list[dict], tenant: str = TENANT) -> list[dict]:
    """A refund of the first line of every fifth sale (some of them refused orders: refused too)."""
    out = []
    for n, sale in enumerate(sold[::5], start=1):
        line = sale["data"]["line_items"][0]
        out.append({"event_id": f"ref-{n}", "event_type": "refund.issued", "tenant_id": tenant,
                    "timestamp": _ts(3000 + n),
                    "data": {"refund_id": f"R-{n}", "sale_id": sale["data"]["sale_id"],
                             "lines": [{"sku": line["sku"], "quantity": 1}], "restock": True,
                             "refund_method": "CREDIT" if sale["data"]["payment_terms"] == "ON_ACCOUNT" else "CASH"}})
    return out


def payments(tenant: str = TENANT) -> list[dict]:
    """Each customer pays something off its oldest invoices (an overpayment is refused)."""
    return [{"event_id": f"pay-{c}", "event_type": "payment.received", "tenant_id": tenant, "timestamp": _ts(4000 + c),
             "data": {"payment_id": f"PM-{c}", "customer_ref": f"CUST-{c}", "amount": amount, "currency": "KES",
                      "method": "BANK"}} for c, amount in ((1, "1500.00"), (2, "2000.00"), (3, "999999.00"))]


def demo_set(tenant: str = TENANT) -> list[dict[str, list[dict]]]:
    """A few hundred events over the input topics, in rounds: payments and refunds follow their sales."""
    sold = list(sales(60, tenant=tenant))
    return [
        {"catalog.updates": catalog(tenant=tenant), "customers": customers(tenant)},
        {"inventory.changes": list(inventory_changes(200, tenant=tenant)), "sales": sold},
        {"payments": payments(tenant), "refunds": refunds(sold, tenant)},
    ]


def start_background(settings: Settings, name: str, argv: list[str], progress: Callable[[str], None]) -> None:
    """A worker or sink that outlives this command; `stockledger stack down` stops it."""
    import sys

    from cli.stack._proc import Process

    proc = Process(name, settings.home / "run")
    if proc.pid() is None:
        proc.spawn([sys.executable, "-m", "cli.main", *argv])
        progress(f"{name}: started (log {proc.logfile})")


def run(settings: Settings, progress: Callable[[str], None]) -> dict[str, int]:
    """Start the stack, a worker and a sink, publish the demo set in rounds, wait until the books are written."""
    import requests

    from cli.stack import Stack
    from cli.testing import committed_lag, settle, wait_for
    from stockledger.codec import Codec
    from stockledger.produce import prepare, publish
    from stockledger.topics import OUTPUTS, ensure_topics

    Stack(settings).up(progress)
    ensure_topics(settings.kafka_config(), settings.partitions, log=progress)
    start_background(settings, "worker-demo", ["worker", "--id", "demo", "--web-port", str(settings.web_port)],
                     progress)
    start_background(settings, "sink-demo", ["sink", "--instance-id", "sink-demo"], progress)
    url = f"http://127.0.0.1:{settings.web_port}"
    wait_for(lambda: _healthy(requests, url), 180, "the worker to be ready")
    codec = Codec(settings.schema_registry_url, auth=settings.registry_auth)
    counts: dict[str, int] = {}
    for round_ in demo_set():
        for topic, events in round_.items():
            counts[topic] = publish(settings, topic, prepare(topic, "<demo>", events), codec=codec)
            progress(f"published {counts[topic]} demo events to {topic}")
        settle(settings, timeout=300)
    progress("the worker has applied every demo event")
    ledger = [t.name for t in OUTPUTS if t.name.startswith("ledger.")]
    wait_for(lambda: committed_lag(settings, f"{settings.app_id}-sink", ledger) == 0, 300,
             "the sink to write the books")
    progress("the sink has written the books")
    return counts


def _healthy(requests, url: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        return requests.get(url + "/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False
