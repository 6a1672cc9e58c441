"""Helpers of the webhook tests: a real HTTP receiver on loopback, stock.levels records, a notifier in
a thread, and the delivery state read back from PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import requests
from aiohttp import web
from confluent_kafka import Producer
from sqlalchemy import Engine, text

from cli.testing import free_port as free_port_in
from cli.testing import wait_for
from stockledger.config import Settings
from stockledger.produce import producer_config
from tests.connectors.support import WorkerThread

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
# Every test's receivers and notifier metrics ports (loopback only).
PORTS = range(27200, 27300)  # below the ephemeral range (32768-60999): no client connection holds one


def free_port() -> int:
    return free_port_in(PORTS.start, PORTS.stop)


@dataclass
class Request:
    n: int  # 0-based order of arrival
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def doc(self) -> dict:
        return json.loads(self.body)

    @property
    def sku(self) -> str:
        return self.doc["data"]["sku"]

    @property
    def quantity(self) -> int:
        return self.doc["data"]["new_quantity"]


class Receiver:
    """An aiohttp server on 127.0.0.1 in its own thread. `respond(n, body)` picks each answer's status
    (n counts requests from 0); `delay` holds every answer that long, `hold` chosen ones until the
    test lets them go. It stops by itself after
    `lifetime` seconds, so a failing test never leaves it running."""

    def __init__(self, respond: Callable[[int, bytes], int] = lambda n, body: 200, delay: float = 0.0,
                 lifetime: float = 240.0, hold: dict[int, threading.Event] | None = None):
        self.respond = respond
        self.delay = delay
        self.hold = hold or {}  # request n is answered only once hold[n] is set (at most 30 s)
        self.lifetime = lifetime
        self.port = free_port()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/stock"

    def ok(self) -> list[Request]:
        return [r for r in self.requests if 200 <= r.status < 300]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            n = len(self.requests)
            status = self.respond(n, body)
            self.requests.append(Request(n, status, body, dict(request.headers)))
        if self.delay:
            await asyncio.sleep(self.delay)
        if n in self.hold:
            await asyncio.to_thread(self.hold[n].wait, 30)
        return web.Response(status=status, text="ok" if status < 400 else "refused")

    async def _main(self) -> None:
        app = web.Application()
        app.router.add_post("/hooks/stock", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._stop = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        try:
            await asyncio.wait_for(self._stop.wait(), self.lifetime)
        except TimeoutError:
            pass
        await runner.cleanup()

    def __enter__(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10), "receiver did not start"
        return self

    def __exit__(self, *exc) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)


def level(tenant: str, sku: str, on_hand: int, n: int, reserved: int = 0, reason: str | None = "ADJUSTMENT",
          location: str | None = "WH-MAIN") -> dict:
    """The stock.levels record of the n-th change of a SKU."""
    return {"tenant_id": tenant, "sku": sku, "on_hand": on_hand, "reserved": reserved, "available": on_hand - reserved,
            "updated_at": T0 + timedelta(seconds=n), "last_event_id": f"ev-{sku}-{n}", "location_id": location,
            "reason": reason}


def publish_levels(settings: Settings, codec, topic: str, records: list[dict]) -> None:
    producer = Producer(producer_config(settings))
    for rec in records:
        value = codec.encode("stock.levels", rec)
        while True:
            try:
                producer.produce(topic, value, f"{rec['tenant_id']}:{rec['sku']}".encode())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(30) == 0


def notify_settings(settings: Settings, url: str, **knobs: object) -> Settings:
    """The test stack's settings on the test's own database, with shortened webhook knobs."""
    base = {"database_url_env": url, "notify_retry_schedule": "300ms", "notify_dead_letter_after": "1h",
            "notify_timeout": "2s", "notify_breaker_failures": 1000, "notify_breaker_open": "60s"}
    return replace(settings, **{**base, **knobs})


class NotifierThread(WorkerThread):
    """A notifier in this process (for tests that do not kill it), metrics on a port of its own."""

    name = "notifier"

    def __init__(self, settings: Settings, prefix: str, group: str):
        from connectors.notify.worker import Notifier

        stop = threading.Event()
        self.metrics_port = free_port()
        self.notifier = Notifier(settings, group=group, topic_prefix=prefix, stop=stop, metrics_port=self.metrics_port)
        super().__init__(self.notifier, stop)

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metric(self, name: str, **labels: str) -> float:
        from connectors.notify.metrics import scrape

        samples = scrape([requests.get(self.metrics_url, timeout=5).text])
        return sum(v for lab, v in samples.get(name, ()) if all(lab.get(k) == x for k, x in labels.items()))

    def __enter__(self) -> NotifierThread:
        super().__enter__()

        def up() -> bool:
            assert self.thread.is_alive(), f"notifier stopped: {self.error!r}"
            try:
                return requests.get(self.metrics_url, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, 60, "the notifier's metrics", interval=0.05)
        return self

    def close(self) -> None:
        super().close()
        if self.notifier.deliverer.error:
            raise self.notifier.deliverer.error


def deliveries(engine: Engine, tenant: str) -> dict[str, dict]:
    """sku -> its webhook_deliveries row (one subscription per test)."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM webhook_deliveries WHERE tenant_id = :t"), {"t": tenant}).mappings()
        return {r["sku"]: dict(r) for r in rows}


def failures(engine: Engine, tenant: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text("SELECT * FROM webhook_failures WHERE tenant_id = :t "
                                                   "ORDER BY failure_id"), {"t": tenant}).mappings()]

