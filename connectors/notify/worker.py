"""`stockledger notify`: the webhook connector worker.

Two halves in one process:
- the consumer (this thread, `connectors.offsets.OffsetWorker` like the sink): reads `stock.levels`
  (inventory.change, one delivery row per SKU) and `catalog.groups` (catalog.update, one delivery row
  per product group, `payload.group_key`; issue 20) in batches and, in ONE PostgreSQL transaction,
  moves its stored offsets (fenced) and makes each record the pending level of every subscription of its
  tenant (`state.upsert_pending`: newest by offset wins).
  A killed notifier loses nothing: what is not committed is read again.
- the deliverer (an asyncio loop in a thread, aiohttp): claims due rows (leased, SKIP LOCKED, so
  several notifiers share the work and one (subscription, SKU) never has two requests in flight),
  POSTs the signed body, and records the outcome: 2xx delivered; 500/502/503/504, timeouts and
  connection errors retried after the schedule's next delay (the last repeats), at most until the
  dead-letter age after the first failure, then dead-lettered (ERROR log, metric, row); 4xx a data
  error (never retried, a row); anything else rejected (never retried, a row). A seed 001 circuit
  breaker per endpoint short-circuits tries while open (they count as failed tries) and, when it
  closes, makes every level waiting for that endpoint due at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from dataclasses import dataclass

import aiohttp
from sqlalchemy import Engine, create_engine

from connectors.notify import guard, payload, state, subscriptions
from connectors.notify.breaker import CLOSED, OPEN, STATE_VALUE, Breaker
from connectors.notify.metrics import NotifyMetrics
from connectors.offsets import REWIND_CHECK_S, TRANSIENT, Fenced, OffsetWorker, Stopped
from stockledger.codec import Codec, DecodeError
from stockledger.config import Settings
from stockledger.db import migrate
from stockledger.ops import OpsServer
from stockledger.retries import RetryPolicy, first_line, retrying_on
from stockledger.security import SecretError
from stockledger.topics import ensure_topics

log = logging.getLogger("stockledger.notify")

LEVELS_TOPIC = "stock.levels"
GROUPS_TOPIC = "catalog.groups"
BATCH_RECORDS = 500
BATCH_WAIT_S = 0.02  # after the first record of a batch, wait at most this long for more
POLL_S = 0.2  # the deliverer looks for due retries at least this often
GAUGES_S = 2.0
# Recording delivery outcomes while PostgreSQL is away: 1 s doubling to 30 s, until it works.
RECORDING = RetryPolicy(retrying_on(*TRANSIENT), first=1.0, cap=30.0, logger=log)
RETRYABLE_STATUS = frozenset((500, 502, 503, 504))


def default_group(settings: Settings) -> str:
    return f"{settings.app_id}-notify"


@dataclass
class Stats:
    records: int = 0  # stock.levels records consumed and committed
    levels: int = 0  # (subscription, SKU) pending levels written by those batches
    undecodable: int = 0
    deliveries: int = 0
    failures: int = 0
    dead_letters: int = 0
    fenced: int = 0
    rewound: int = 0
    retries: int = 0  # outages retried (PostgreSQL, Kafka)

    def line(self) -> str:
        return (f"records={self.records} levels={self.levels} deliveries={self.deliveries} failures={self.failures} "
                f"dead_letters={self.dead_letters} undecodable={self.undecodable} fenced={self.fenced} "
                f"rewound={self.rewound} retries={self.retries}")


def engine_for(url: str) -> Engine:
    """The consumer, claims, results and gauges may each hold a connection at once."""
    return create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)


class Notifier(OffsetWorker):
    """One notifier. Start several with the same group to share stock.levels' partitions and the deliveries."""

    def __init__(self, settings: Settings, *, group: str | None = None, topic_prefix: str = "",
                 instance_id: str | None = None, engine: Engine | None = None, stop: threading.Event | None = None,
                 metrics_port: int | None = None):
        self.settings = settings
        self.group = group or default_group(settings)
        self.topics = [topic_prefix + LEVELS_TOPIC, topic_prefix + GROUPS_TOPIC]
        self.groups_topic = topic_prefix + GROUPS_TOPIC
        self.instance_id = instance_id
        self.engine = engine or engine_for(settings.database_url)
        self.stop = stop or threading.Event()
        self.stats = Stats()
        self.codec = Codec(settings.schema_registry_url, auth=settings.registry_auth)
        self.buffer = []
        self.next = {}
        self.metrics = NotifyMetrics()
        self.metrics_port = settings.notify_metrics_port if metrics_port is None else metrics_port
        self.deliverer = Deliverer(self)
        self._http: OpsServer | None = None
        self.consuming = False  # /health: ready once consuming

    def prepare(self) -> None:
        revision = self.retrying("migrate", lambda: migrate.upgrade(self.engine))
        log.info("database at revision %s", revision)
        ensure_topics(self.settings.kafka_config(), self.settings.partitions, self.topics, compacted=tuple(self.topics))

    def health(self) -> tuple[bool, dict]:
        return self.consuming and not self.stop.is_set(), {"group": self.group,
                                                            "partitions": len(self.next)}

    def run(self) -> Stats:
        if self.metrics_port:  # /health answers 503 while migrating and waiting for an outage to end
            self._http = OpsServer(self.settings.metrics_host, self.metrics_port, self.metrics.registry,
                                   self.health).start()
        if not self.prepared():
            if self._http is not None:
                self._http.close()
            return self.stats
        self.deliverer.start()
        self.open_consumer()
        self.consuming = True
        log.info("notify %s consuming %s; retries after %s, dead letter after %s, timeout %s, "
                 "breaker %d failures / %s; metrics on %s:%s", self.group, ", ".join(self.topics),
                 self.settings.notify_retry_schedule,
                 self.settings.notify_dead_letter_after, self.settings.notify_timeout,
                 self.settings.notify_breaker_failures, self.settings.notify_breaker_open, self.settings.metrics_host,
                 self.metrics_port or "-")
        try:
            self._loop()
        except Stopped as exc:
            log.info("stopped while waiting to %s; what is not committed is read again at the next start", exc)
        finally:
            self.consumer.close()
            self.deliverer.close()
            self.consuming = False
            if self._http is not None:
                self._http.close()
            self.engine.dispose()
        log.info("notify stopped: %s", self.stats.line())
        return self.stats

    # -- consuming ----------------------------------------------------------------------------------
    def _loop(self) -> None:
        last_check = time.monotonic()
        while not self.stop.is_set():
            msgs = self.consumer.consume(num_messages=1, timeout=0.5)
            if msgs:
                msgs += self.consumer.consume(num_messages=BATCH_RECORDS - 1, timeout=BATCH_WAIT_S)
            for msg in msgs:
                self.take(msg)
            if self.buffer:
                self._flush()
            if time.monotonic() - last_check >= REWIND_CHECK_S:
                self.check_rewound()
                last_check = time.monotonic()

    def _flush(self) -> None:
        try:
            self.retrying("write pending deliveries", self._write)
        except Fenced as exc:
            self.stats.fenced += 1
            log.warning("%s", exc)
            stale = exc.partitions
            self.retrying("seek to stored offsets", lambda: self.seek_to_stored(stale))

    def _write(self) -> None:
        msgs = self.buffer
        moves = self.moves_of(msgs)
        tenants = sorted({k.split(b":", 1)[0].decode("utf-8", "replace") for m in msgs if (k := m.key())})
        levels: dict[tuple[str, str], state.Level] = {}
        with self.engine.begin() as conn:
            self.advance(conn, moves)
            stock_subs = subscriptions.by_tenant(conn, tenants, payload.EVENT_TYPE) if tenants else {}
            group_subs = subscriptions.by_tenant(conn, tenants, payload.CATALOG_EVENT_TYPE) if tenants else {}
            for msg in msgs:
                key = msg.key()
                tenant = key.split(b":", 1)[0].decode("utf-8", "replace") if key else ""
                is_group = msg.topic() == self.groups_topic
                ids = (group_subs if is_group else stock_subs).get(tenant)
                if not ids or msg.value() is None:
                    continue  # no subscriber (no need to decode), or a tombstone
                try:
                    rec = self.codec.decode(msg.value())
                except DecodeError as exc:
                    self.stats.undecodable += 1
                    log.warning("%s[%d]@%d skipped: %s", msg.topic(), msg.partition(), msg.offset(), exc)
                    continue
                if rec["tenant_id"] != tenant:
                    self.stats.undecodable += 1
                    log.warning("%s[%d]@%d skipped: key %r is not of tenant %r", msg.topic(), msg.partition(),
                                msg.offset(), key, rec["tenant_id"])
                    continue
                eid, body = payload.catalog_body(rec) if is_group else payload.body(rec)
                dkey = payload.group_key(rec["product_group_id"]) if is_group else rec["sku"]
                for sid in ids:
                    prev = levels.get((sid, dkey))
                    if prev is None or prev.offset < msg.offset():  # type: ignore[operator]
                        levels[(sid, dkey)] = state.Level(sid, dkey, rec["tenant_id"],
                                                                msg.partition(),  # type: ignore[arg-type]
                                                                msg.offset(), eid, body,  # type: ignore[arg-type]
                                                                msg.timestamp()[1])
            state.upsert_pending(conn, list(levels.values()))
        self.committed(moves)
        self.buffer = []
        self.stats.records += len(msgs)
        self.stats.levels += len(levels)
        if levels:
            self.deliverer.wake()


class Deliverer:
    """The HTTP half: an asyncio loop in its own thread."""

    def __init__(self, notifier: Notifier):
        s = notifier.settings
        self.n = notifier
        self.delays = s.notify_retry_delays
        self.max_age = s.notify_dead_letter_after_s
        self.timeout = s.notify_timeout_s
        self.lease = 2 * self.timeout + 1  # a claimed row is tried again if its notifier died mid-request
        self.concurrency = max(1, s.notify_concurrency)
        self.breakers: dict[str, Breaker] = {}
        self.resolver = subscriptions.SecretResolver(notifier.engine, s.master_key())
        self.outcomes: list[state.Outcome] = []
        self.releases: set[str] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None

    # -- lifecycle (called from the consumer's thread) ------------------------------------------------
    def start(self) -> None:
        self.thread = threading.Thread(target=self._main, name="notify-deliverer", daemon=True)
        self.thread.start()
        self.ready.wait(30)

    def wake(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._wake.set)

    def close(self) -> None:
        if self.loop is not None and self.thread is not None:
            self.loop.call_soon_threadsafe(self._stopping.set)
            self.thread.join(self.timeout + 30)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 (reported, and the process stops)
            self.error = exc
            log.exception("deliverer failed; stopping")
            self.n.stop.set()
        finally:
            self.ready.set()

    # -- the loop ---------------------------------------------------------------------------------------
    async def _run(self) -> None:
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._results = asyncio.Event()
        self.loop = asyncio.get_running_loop()  # last: wake() may be called from now on
        # Every connection's addresses are checked (connectors.notify.guard), so no DNS cache.
        connector = aiohttp.TCPConnector(limit=self.concurrency, limit_per_host=self.concurrency,
                                         resolver=guard.GuardedResolver(), use_dns_cache=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        tasks: set[asyncio.Task] = set()
        self._closing = False
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            writer = asyncio.create_task(self._writer())
            gauges = asyncio.create_task(self._gauges())
            self.ready.set()
            while not self._stopping.is_set():
                self._wake.clear()
                free = self.concurrency - len(tasks)
                claims: list[state.Claim] = []
                if free > 0:
                    try:
                        claims = await asyncio.to_thread(self._claim, free)
                    except TRANSIENT as exc:
                        log.warning("claiming due deliveries failed (%s: %s); trying again", type(exc).__name__,
                                    first_line(exc))
                        await asyncio.sleep(1.0)
                backlog = free > 0 and len(claims) == free  # maybe more are due: claim again as slots free up
                for c in claims:
                    t = asyncio.create_task(self._guarded(session, c))
                    tasks.add(t)
                    # this round's backlog, bound now: a lambda would read a later round's value at completion
                    t.add_done_callback(functools.partial(self._done, tasks, backlog=backlog))
                if backlog and len(tasks) < self.concurrency:
                    continue
                try:
                    await asyncio.wait_for(self._wake.wait(), POLL_S)
                except TimeoutError:
                    pass
            if tasks:  # in flight at stop: let them finish (bounded by the request timeout)
                await asyncio.wait(tasks, timeout=self.timeout + 1)
            self._results.set()
            self._closing = True
            await writer
            gauges.cancel()

    def _done(self, tasks: set, task: asyncio.Task, backlog: bool) -> None:
        tasks.discard(task)
        if backlog:
            self._wake.set()

    def _claim(self, n: int) -> list[state.Claim]:
        with self.n.engine.begin() as conn:
            return state.claim_due(conn, n, self.lease)

    def _breaker(self, url: str) -> Breaker:
        br = self.breakers.get(url)
        if br is None:
            br = self.breakers[url] = Breaker(self.n.settings.notify_breaker_failures,
                                              self.n.settings.notify_breaker_open_s)
            self.n.metrics.breaker.labels(url).set(STATE_VALUE[CLOSED])
        return br

    async def _guarded(self, session: aiohttp.ClientSession, c: state.Claim) -> None:
        try:
            await self._try(session, c)
        except Exception:  # a bug, not the endpoint: the row is tried again when its lease ends
            log.exception("delivery of %s %s to %s failed unexpectedly; tried again in %g s", c.tenant_id,
                          payload.shown_key(c.sku),
                          c.url, self.lease)

    async def _try(self, session: aiohttp.ClientSession, c: state.Claim) -> None:
        br = self._breaker(c.url)
        before = br.state
        if not br.allow(time.monotonic()):
            self._failed(c, "circuit_open", "not sent: circuit breaker open", None, endpoint=False)
            return
        if br.state != before:
            self.n.metrics.breaker.labels(c.url).set(STATE_VALUE[br.state])
            log.warning("breaker %s for %s: one probe goes through", br.state, c.url)
        try:
            secret = self.resolver.secret(c.subscription_id, c.tenant_id, c.secret_sealed, c.secret_from_tenant,
                                          time.monotonic())
        except (LookupError, SecretError) as exc:
            br.probing = False
            self._failed(c, "config", f"no signing secret: {exc}", None, endpoint=False)
            return
        raw = c.body.encode("utf-8")
        status: int | None = None
        literal = None if c.allow_private else guard.literal_refusal(c.url)
        if literal is not None:
            br.probing = False
            self._failed(c, "config", f"not sent: {literal}", None, endpoint=False)
            return
        allow = guard.ALLOW_PRIVATE.set(c.allow_private)
        sent = time.perf_counter()
        try:
            async with session.post(c.url, data=raw, headers=payload.headers(secret, raw, c.event_id),
                                    allow_redirects=False) as resp:
                status = resp.status
                answer = (await resp.content.read(300)).decode("utf-8", "replace")
        except guard.PrivateAddress as exc:
            br.probing = False
            self._failed(c, "config", f"not sent: {exc}", None, endpoint=False)
            return
        except TimeoutError:
            self._failed(c, "timeout", f"no answer within {self.timeout:g} s", None)
            return
        except (aiohttp.ClientError, OSError) as exc:
            if isinstance(getattr(exc, "os_error", None), guard.PrivateAddress):
                br.probing = False
                self._failed(c, "config", f"not sent: {exc.os_error}", None, endpoint=False)  # type: ignore[union-attr]
                return
            self._failed(c, "connection", f"{type(exc).__name__}: {first_line(exc)}"[:300], None)
            return
        finally:
            guard.ALLOW_PRIVATE.reset(allow)
            self.n.metrics.request.observe(time.perf_counter() - sent)
        if 200 <= status < 300:
            self._delivered(c, br)
        elif status in RETRYABLE_STATUS:
            self._failed(c, "server_error", f"HTTP {status}: {answer}".strip()[:300], status)
        else:
            cls, kind = ("client_error", "data_error") if 400 <= status < 500 else ("unexpected_status", "rejected")
            self._closed_by(br, c.url)  # the endpoint answered: it is up
            self.n.metrics.failures.labels(c.tenant_id, cls).inc()
            self.n.stats.failures += 1
            self._push(state.Outcome(c, kind, f"HTTP {status}: {answer}".strip()[:300], status))

    def _delivered(self, c: state.Claim, br: Breaker) -> None:
        self._closed_by(br, c.url)
        self.n.metrics.deliveries.labels(c.tenant_id).inc()
        if c.record_ms:
            self.n.metrics.latency.labels(c.tenant_id).observe(max(0.0, time.time() - c.record_ms / 1000))
        self.n.stats.deliveries += 1
        self._push(state.Outcome(c, "delivered"))

    def _closed_by(self, br: Breaker, url: str) -> None:
        left = br.success()
        if left is not None:
            self.n.metrics.breaker.labels(url).set(STATE_VALUE[CLOSED])
            log.warning("breaker closed for %s (was %s): everything waiting for it goes now", url, left)
            self.releases.add(url)

    def _failed(self, c: state.Claim, cls: str, error: str, status: int | None, endpoint: bool = True) -> None:
        """A failed try that is retried, or dead-lettered once the chain is old enough."""
        self.n.metrics.failures.labels(c.tenant_id, cls).inc()
        self.n.stats.failures += 1
        if endpoint:
            br = self._breaker(c.url)
            if br.failure(time.monotonic()):
                self.n.metrics.breaker.labels(c.url).set(STATE_VALUE[OPEN])
                log.warning("breaker open for %s after %d consecutive failures; half-open in %s", c.url, br.failures,
                            self.n.settings.notify_breaker_open)
        age = (c.db_now - c.first_failed_at).total_seconds() if c.first_failed_at is not None else 0.0
        if (c.first_failed_at is not None and age >= self.max_age) or self.max_age <= 0:
            self._push(state.Outcome(c, "dead_letter", error, status))
        else:
            delay = self.delays[min(c.attempts, len(self.delays) - 1)]
            self._push(state.Outcome(c, "retry", error, status, delay))

    def _push(self, outcome: state.Outcome) -> None:
        self.outcomes.append(outcome)
        self._results.set()

    # -- results and gauges ------------------------------------------------------------------------------
    async def _writer(self) -> None:
        while True:
            await self._results.wait()
            self._results.clear()
            batch, self.outcomes = self.outcomes, []
            releases, self.releases = self.releases, set()
            if batch or releases:
                await RECORDING.acall_async(functools.partial(asyncio.to_thread, self._record, batch, releases),
                                            f"recording {len(batch)} delivery outcomes", on_retry=self.n.count_retry)
            for o in batch:
                self._report(o)
            if batch or releases:
                self._wake.set()
            if self._closing and not self.outcomes:
                return

    def _record(self, batch: list[state.Outcome], releases: set[str]) -> None:
        with self.n.engine.begin() as conn:
            state.record(conn, batch, self.max_age)
            for url in sorted(releases):
                state.release(conn, url)

    def _report(self, o: state.Outcome) -> None:
        c = o.claim
        if o.kind == "dead_letter":
            self.n.metrics.dead_letters.labels(c.tenant_id).inc()
            self.n.stats.dead_letters += 1
            log.error("webhook dead-lettered: tenant %s subscription %s sku %s event %s to %s, %d tries since %s: %s",
                      c.tenant_id, c.subscription_id, payload.shown_key(c.sku), c.event_id, c.url, c.attempts + 1,
                      (c.first_failed_at or c.db_now).isoformat(), o.error)
        elif o.kind in ("data_error", "rejected"):
            log.warning("webhook %s (not retried): tenant %s subscription %s sku %s event %s to %s: %s", o.kind,
                        c.tenant_id, c.subscription_id, payload.shown_key(c.sku), c.event_id, c.url, o.error)
        elif o.kind == "retry":
            log.info("webhook try %d failed: tenant %s sku %s to %s: %s; next in %g s", c.attempts + 1, c.tenant_id,
                     payload.shown_key(c.sku), c.url, o.error, o.delay)

    async def _gauges(self) -> None:
        while True:
            try:
                counts = await asyncio.to_thread(self._pending_counts)
                self.n.metrics.set_pending(counts)
            except TRANSIENT as exc:
                log.debug("pending counts: %s", exc)
            await asyncio.sleep(GAUGES_S)

    def _pending_counts(self) -> dict[str, tuple[int, int]]:
        with self.n.engine.connect() as conn:
            return state.pending_counts(conn)

