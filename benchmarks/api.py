"""HTTP API benchmark (issue 11), loopback only, against the stack from `stockledger stack up`.

200 concurrent clients POST seed 000 sales (a distinct Idempotency-Key each) to
`POST /integrations/piti/companies/{tenant}/sales` of a real `stockledger api` process, and, with
the same client session, to a bare aiohttp handler in a process of its own that builds and
publishes the same record with the same producer settings and answers after the delivery report.
Prints requests/s, p50 and p99 of both and the ratio. The API runs with no outcome wait (it answers
202 once the broker acknowledged; what it costs beyond the bare handler is the credential check,
the idempotency claim and stored answer in PostgreSQL, the checks and the outcome registration), and
no rate limit. No stream worker runs: the pipeline's own speed is benchmarks/sales.py's.
Bounded: --requests per target (default 4000), 60 s per request at most.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import percentile, say  # noqa: E402

from stockledger.config import Settings  # noqa: E402

CLIENTS = 200


def body(n: int) -> dict:
    return {"sale_id": f"BS-{n}", "currency": "KES", "payment_terms": "PAID",
            "line_items": [{"sku": f"B{n % 50:03d}", "quantity": 1 + n % 3, "unit_price": "12.50"},
                           {"sku": f"B{(n + 7) % 50:03d}", "quantity": 1, "unit_price": "3.99"}]}


# -- the bare handler: parse, build the record, publish, answer after the delivery report --------------
def bare_server(port: int) -> None:
    from aiohttp import web
    from confluent_kafka import Producer

    from api import events
    from api.idempotency import event_id
    from stockledger.codec import Codec
    from stockledger.produce import producer_config

    settings = Settings()
    codec = Codec(settings.schema_registry_url)
    codec.register("sales")
    producer = Producer({**producer_config(settings), "linger.ms": 2})

    async def handler(request: web.Request) -> web.Response:
        import json
        from decimal import Decimal

        tenant = request.match_info["company_id"]
        data = json.loads(await request.read(), parse_float=Decimal)
        [(topic, item)] = events.pos_sale(tenant, data, event_id(tenant, request.headers["Idempotency-Key"]),
                                         events.now_iso())
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        producer.produce(topic, codec.encode(topic, item.record), item.key,
                         on_delivery=lambda err, _m: loop.call_soon_threadsafe(fut.set_result, err))
        if await fut is not None:
            return web.json_response({"error": "not delivered"}, status=503)
        return web.json_response({"event_id": item.record["event_id"], "status": "ACCEPTED"}, status=202)

    async def poll_forever() -> None:
        while True:
            producer.poll(0)
            await asyncio.sleep(0.002)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/integrations/piti/companies/{company_id}/sales", handler)
        app.router.add_get("/health", lambda r: web.json_response({"status": "ok"}))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        asyncio.create_task(poll_forever())
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the load ----------------------------------------------------------------------------------------------
async def load(url: str, headers: dict, requests: int, label: str, first: int) -> tuple[float, list[float], dict]:
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_n = iter(range(first, first + requests))
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def client() -> None:
            for n in next_n:
                t0 = time.perf_counter()
                async with session.post(url, json=body(n), headers={**headers, "Idempotency-Key": f"bench-{n}"}) as r:
                    await r.read()
                    statuses[r.status] = statuses.get(r.status, 0) + 1
                latencies.append(time.perf_counter() - t0)

        async def progress() -> None:
            while True:
                await asyncio.sleep(2)
                say(f"  {label}: {len(latencies)}/{requests}")

        note = asyncio.create_task(progress())
        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        elapsed = time.perf_counter() - t0
        note.cancel()
    return elapsed, latencies, statuses


def report(label: str, elapsed: float, lat: list[float], statuses: dict) -> float:
    rps = len(lat) / elapsed
    print(f"{label:14} {rps:8.0f} requests/s  p50 {percentile(lat, 0.5) * 1000:6.1f} ms  "
          f"p99 {percentile(lat, 0.99) * 1000:6.1f} ms  statuses {dict(sorted(statuses.items()))}", flush=True)
    return rps


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000, help="requests per target (after 400 of warm-up)")
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("STOCKLEDGER_BENCH_API_PORT", "36167")))
    parser.add_argument("--bare-port", type=int, default=int(os.environ.get("STOCKLEDGER_BENCH_BARE_PORT", "36168")))
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        bare_server(args.bare_server)
        return 0

    from sqlalchemy import create_engine

    from cli.stack import Stack
    from cli.testing import WorkerProcess
    from stockledger import tenants
    from stockledger.db import migrate
    from stockledger.topics import ensure_topics

    settings = Settings()
    Stack(settings).up(say)
    ensure_topics(settings.bootstrap_servers, settings.partitions)
    engine = create_engine(settings.database_url)
    migrate.upgrade(engine)
    tenant = f"bench-{uuid.uuid4().hex[:6]}"
    creds = tenants.add(engine, settings.master_key(), tenant)
    engine.dispose()
    api = WorkerProcess(settings, "bench-api", args.api_port, command="api", port_flag="--port",
                        env={"STOCKLEDGER_API_RATE_LIMIT": "0", "STOCKLEDGER_API_OUTCOME_WAIT": "0"})
    bare = WorkerProcess(settings, "bench-bare", args.bare_port, command="bare")
    bare_argv = [sys.executable, __file__, "--bare-server", str(args.bare_port)]
    import subprocess

    api.start()
    bare.proc = subprocess.Popen(bare_argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        api.wait_ready(90)
        bare.wait_ready(90)
        path = f"/integrations/piti/companies/{tenant}/sales"
        targets = [("bare handler", bare.url + path, {}), ("stockledger api", api.url + path,
                                                          {"X-Integration-Key": creds.integration_key})]
        say(f"{CLIENTS} concurrent clients, {args.requests} sales per target, tenant {tenant}")
        rates = {}
        first = 0
        for label, url, headers in targets:
            asyncio.run(load(url, headers, 400, label + " warm-up", first))
            first += 400
            elapsed, lat, statuses = asyncio.run(load(url, headers, args.requests, label, first))
            first += args.requests
            rates[label] = report(label, elapsed, lat, statuses)
        print(f"ratio api / bare: {rates['stockledger api'] / rates['bare handler']:.2f}", flush=True)
    finally:
        api.stop()
        bare.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
