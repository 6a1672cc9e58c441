"""The webhook notifier's deliveries/s and latency, against a bare aiohttp client posting the same bodies
to the same loopback receiver, in one run.

1. Throughput: N stock.levels records of N different SKUs (nothing to coalesce) are published to a
   topic of the run's own, then a `stockledger notify` process (a subscription to the receiver)
   delivers them; timed from the first receipt to the last. Baseline: an aiohttp session posting the
   same bodies, signed the same way, with the same number of requests in flight.
2. Latency at --rate changes/s: records published at that rate for --seconds (SKUs chosen in turn
   from --skus, so a SKU changes every skus/rate seconds) while the notifier runs; latency = receipt
   at the receiver minus the produce() call of the record. A level overtaken by a newer one of its
   SKU before it was sent is coalesced (not sent) and not counted. Baseline: the bare client posting
   the same bodies at the same rate (send to receipt).
Needs the stack: `stockledger stack up` (or STOCKLEDGER_* variables pointing at one). Receiver and
metrics ports: --port (default 46160) and --port + 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import percentile, publish_at_rate, say, warm_producer  # noqa: E402

import aiohttp  # noqa: E402
import requests  # noqa: E402
from aiohttp import web  # noqa: E402

from connectors import migrate, store  # noqa: E402
from connectors.notify import payload, subscriptions  # noqa: E402
from connectors.progress import Progress  # noqa: E402
from stockledger.config import Settings  # noqa: E402
from stockledger.topics import ensure_topics  # noqa: E402
from streams.codec import Codec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


class Receiver:
    """Answers 200 at once and notes when each event_id arrived (time.time()); GET /count, /arrivals."""

    def __init__(self, port: int):
        self.port = port
        self.arrived: dict[str, float] = {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.arrived.setdefault(json.loads(body)["event_id"], time.time())
        return web.Response(text="ok")

    async def count(self, request: web.Request) -> web.Response:
        return web.json_response({"count": len(self.arrived)})

    async def arrivals(self, request: web.Request) -> web.Response:
        return web.json_response(self.arrived)

    def serve(self, lifetime: float) -> None:
        """Run (in a process of its own) until `lifetime` seconds have passed or it is stopped."""
        async def main() -> None:
            app = web.Application()
            app.router.add_post("/hook", self.handle)
            app.router.add_get("/count", self.count)
            app.router.add_get("/arrivals", self.arrivals)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port, backlog=1024).start()
            await asyncio.sleep(lifetime)
            await runner.cleanup()

        asyncio.run(main())


class RemoteReceiver:
    """The bench's handle on the receiver process."""

    def __init__(self, port: int, lifetime: float):
        self.port = port
        self.proc = subprocess.Popen([sys.executable, __file__, "--receiver", "--port", str(port),
                                      "--lifetime", str(lifetime)], cwd=ROOT)
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/count", timeout=2)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline and self.proc.poll() is None, "receiver did not start"
                time.sleep(0.1)

    def arrived(self) -> dict[str, float]:
        return requests.get(f"http://127.0.0.1:{self.port}/arrivals", timeout=30).json()

    def wait(self, ids: set[str], timeout: float, label: str) -> dict[str, float]:
        bar = Progress(len(ids), label)
        deadline = time.monotonic() + timeout
        while True:
            arrived = self.arrived()
            got = len(ids & arrived.keys())
            bar.update(got)
            if got >= len(ids) or time.monotonic() > deadline:
                bar.close()
                return arrived
            time.sleep(0.5)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def level(tenant: str, sku: str, n: int) -> dict:
    return {"tenant_id": tenant, "sku": sku, "on_hand": 1000 + n, "reserved": 0, "available": 1000 + n,
            "updated_at": datetime.now(timezone.utc), "last_event_id": f"ev-{n}", "location_id": "WH-MAIN",
            "reason": "POS_SALE"}


async def bare_post(url: str, secret: str, bodies: list[tuple[str, str]], concurrency: int,
                    rate: float | None = None) -> dict[str, float]:
    """POST every body (signed like the notifier) with `concurrency` in flight, or paced at `rate`/s.
    Returns each event_id's send time."""
    sent: dict[str, float] = {}
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def one(eid: str, body: str) -> None:
            async with sem:
                raw = body.encode()
                sent[eid] = time.time()
                async with session.post(url, data=raw, headers=payload.headers(secret, raw, eid)) as resp:
                    await resp.read()

        tasks = []
        t0 = time.perf_counter()
        for i, (eid, body) in enumerate(bodies):
            if rate:
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(eid, body)))
            if not rate and len(tasks) % 1000 == 0:
                await asyncio.sleep(0)
        await asyncio.gather(*tasks)
    return sent


def latencies(sent: dict[str, float], arrived: dict[str, float]) -> list[float]:
    return [arrived[i] - t for i, t in sent.items() if i in arrived]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000, help="records of the throughput run (default 5000)")
    ap.add_argument("--rate", type=int, default=500, help="changes/s of the latency run (default 500)")
    ap.add_argument("--seconds", type=int, default=20, help="length of the latency run (default 20)")
    ap.add_argument("--skus", type=int, default=2000, help="SKUs the latency run cycles through (default 2000)")
    ap.add_argument("--port", type=int, default=46160)
    ap.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)  # the receiver process
    ap.add_argument("--lifetime", type=float, default=900, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.receiver:
        Receiver(args.port).serve(args.lifetime)
        return 0

    settings = Settings()
    run = uuid.uuid4().hex[:6]
    prefix, tenant, group = f"bench-{run}.", f"bench-{run}", f"bench-notify-{run}"
    topic = prefix + "stock.levels"
    ensure_topics(settings.bootstrap_servers, settings.partitions, [topic])
    codec = Codec(settings.schema_registry_url)
    engine = store.engine_for(settings.database_url)
    migrate.upgrade(engine)
    rx = RemoteReceiver(args.port, lifetime=900)
    url = f"http://127.0.0.1:{args.port}/hook"
    sub, secret = subscriptions.add(engine, settings.master_key(), tenant, url, allow_private=True)
    concurrency = settings.notify_concurrency
    say(f"run {run}: tenant {tenant}, receiver {url}, {concurrency} requests in flight at most")

    # 1. throughput
    recs = [level(tenant, f"SKU-{i:06d}", i) for i in range(args.n)]
    say(f"publishing {args.n} levels of {args.n} SKUs ...")
    publish_at_rate(settings, topic, [(payload.event_id(r), f"{tenant}:{r['sku']}", codec.encode("stock.levels", r))
                                      for r in recs], rate=50_000)
    metrics_port = args.port + 1
    log = open(ROOT / ".stack" / f"bench-notify-{run}.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "stockledger.cli", "notify", "--topic-prefix", prefix, "--group",
                             group, "--metrics-port", str(metrics_port), "--loglevel", "warning"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ})
    try:
        ids = {payload.event_id(r) for r in recs}
        arrived = rx.wait(ids, 300, "notifier (throughput)")
        times = sorted(arrived[i] for i in ids if i in arrived)
        notify_rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
        bodies = [payload.body(r) for r in recs]
        bare_bodies = [(f"bare-{eid}", body.replace(eid, f"bare-{eid}")) for eid, body in bodies]
        bare_rate = 0.0
        for attempt in range(2):  # best of two, like the other benchmarks' baselines
            t0 = time.perf_counter()
            asyncio.run(bare_post(url, secret, [(f"{eid}-{attempt}", b) for eid, b in bare_bodies], concurrency))
            bare_rate = max(bare_rate, args.n / (time.perf_counter() - t0))
        say(f"throughput: notifier {notify_rate:,.0f} deliveries/s, bare aiohttp {bare_rate:,.0f}/s")

        # 2. latency at a steady rate
        total = args.rate * args.seconds
        recs = [level(tenant, f"L-{i % args.skus:06d}", args.n + i) for i in range(total)]
        say(f"latency: {total} changes at {args.rate}/s over {args.skus} SKUs ...")
        warm = level("bench-nobody", "WARM", 0)  # a tenant with no subscription: connects the producer
        producer = warm_producer(settings, topic, b"bench-nobody:WARM", codec.encode("stock.levels", warm))
        sent = publish_at_rate(settings, topic, [(payload.event_id(r), f"{tenant}:{r['sku']}",
                                                  codec.encode("stock.levels", r)) for r in recs], rate=args.rate,
                               producer=producer)
        last_per_sku = {r["sku"]: payload.event_id(r) for r in recs}
        arrived = rx.wait(set(last_per_sku.values()), 120, "notifier (every SKU's last level)")
        lat = latencies(sent, arrived)
        coalesced = total - len(lat)
        bare_bodies = [(f"bare-{eid}", body.replace(eid, f"bare-{eid}")) for eid, body in (payload.body(r) for r in recs)]
        bare_sent = asyncio.run(bare_post(url, secret, bare_bodies, concurrency, rate=args.rate))
        time.sleep(0.5)
        bare_lat = latencies(bare_sent, rx.arrived())
    finally:
        proc.terminate()
        proc.wait(60)
        rx.close()
        subscriptions.remove(engine, sub.subscription_id)
        engine.dispose()
    p = {q: percentile(lat, q) * 1000 for q in (0.5, 0.95, 0.99)} if lat else {}
    b = {q: percentile(bare_lat, q) * 1000 for q in (0.5, 0.95, 0.99)} if bare_lat else {}
    print(json.dumps({"deliveries_per_s": round(notify_rate), "bare_per_s": round(bare_rate),
                      "ratio": round(notify_rate / bare_rate, 3) if bare_rate else None,
                      "rate": args.rate, "changes": total, "delivered": len(lat), "coalesced": coalesced,
                      "p50_ms": round(p.get(0.5, 0), 1), "p95_ms": round(p.get(0.95, 0), 1),
                      "p99_ms": round(p.get(0.99, 0), 1),
                      "bare_p50_ms": round(b.get(0.5, 0), 1), "bare_p99_ms": round(b.get(0.99, 0), 1)}))
    say(f"notifier: {notify_rate:,.0f} deliveries/s (bare aiohttp {bare_rate:,.0f}/s, ratio "
        f"{notify_rate / bare_rate:.2f}); at {args.rate} changes/s: p50 {p.get(0.5, 0):.0f} ms, p95 {p.get(0.95, 0):.0f} ms, "
        f"p99 {p.get(0.99, 0):.0f} ms ({coalesced} of {total} coalesced); bare client p50 {b.get(0.5, 0):.1f} ms, "
        f"p99 {b.get(0.99, 0):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
