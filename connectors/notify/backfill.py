"""`stockledger webhook add ... --backfill` (and `webhook backfill ID`): a new subscriber first gets the
current state of its tenant, then the live changes, with nothing missed in between and nothing repeated.

How (SPEC 7, issue 20):
1. The subscription is stored (committed) first: from then on, every record the notifier ingests for
   the tenant is made pending for it (`subscriptions.by_tenant` is read in each batch's transaction).
2. Then the end offsets of `stock.levels` and `catalog.groups` are taken. A record at or beyond them was
   written after step 1, so the notifier ingests it with the subscription in place: it is live.
3. Everything before those offsets is read (both topics are compacted: the newest record per key is
   there), keeping the tenant's newest record per SKU and per group, and made pending for the
   subscription with the notifier's own upsert (`state.upsert_pending`), which keeps per key only
   the newest record by offset and never one older than or equal to what is pending or delivered.
   A record the live notifier made pending or delivered already wins over the same or an older one
   from the snapshot, and a newer live one replaces a snapshot one still waiting: so the overlap
   between the snapshot and the live stream is delivered once, and in order per key.
A SKU that only the catalog knows (no stock.levels record) is part of the state too: an
inventory.change subscriber gets it with new_quantity 0 (as the snapshot shows it), at offset -1, so
any real level of that SKU replaces it or follows it.
Running it again sends nothing twice (the same upsert refuses what is pending or delivered).
Reading the snapshot is a scan of both topics (their size, not the tenant's), done once per subscriber.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from sqlalchemy import Engine

from connectors.notify import payload, state
from connectors.notify.subscriptions import Subscription
from stockledger.codec import Codec, DecodeError
from stockledger.config import Settings

log = logging.getLogger("stockledger.notify")

LEVELS_TOPIC, GROUPS_TOPIC = "stock.levels", "catalog.groups"
CATALOG_ONLY_OFFSET = -1  # a catalog-only SKU's level 0: before every real level of the SKU


@dataclass
class BackfillResult:
    levels: int = 0  # SKUs made pending (their newest level)
    catalog_only: int = 0  # of which SKUs only the catalog knows (new_quantity 0)
    groups: int = 0  # groups made pending (their newest version)
    records: int = 0  # records read
    undecodable: int = 0

    def line(self) -> str:
        return (f"backfill: {self.levels} SKU levels ({self.catalog_only} catalog-only at 0), {self.groups} groups "
                f"from {self.records} records")


def _end_offsets(consumer: Consumer, topic: str, timeout: float) -> list[tuple[TopicPartition, int, int]]:
    meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if meta is None or meta.error is not None:
        return []  # no such topic yet: nothing was ever written to it
    out = []
    for p in sorted(meta.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
        out.append((TopicPartition(topic, p, OFFSET_BEGINNING), low, high))
    return out


def _read(settings: Settings, topics: list[str], tenant: str, timeout: float) -> tuple[dict, int]:
    """(topic, key) -> (partition, offset, value bytes) of the tenant's newest record before the end offsets
    taken now, and the number of records read."""
    consumer = Consumer({**settings.kafka_config(), "group.id": f"backfill-{uuid.uuid4().hex[:12]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    newest: dict[tuple[str, bytes], tuple[int, int, bytes | None]] = {}
    read = 0
    prefix = tenant.encode() + b":"
    try:
        ends: dict[tuple[str, int], int] = {}
        assign = []
        for topic in topics:
            for tp, low, high in _end_offsets(consumer, topic, timeout):
                if high > low:
                    ends[(topic, tp.partition)] = high
                    assign.append(tp)
        if not assign:
            return newest, 0
        consumer.assign(assign)
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill: reading {', '.join(topics)} took longer than {timeout:g} s")
            for msg in consumer.consume(num_messages=500, timeout=0.5):
                if msg.error() is not None:
                    raise KafkaException(msg.error())
                topic, part, offset = str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)
                where = (topic, part)
                end = ends.get(where)
                if end is None or offset >= end:
                    continue  # live: the notifier sends it
                read += 1
                key = msg.key()
                if isinstance(key, bytes) and key.startswith(prefix):
                    newest[(topic, key)] = (part, offset, msg.value())
                if offset >= end - 1:
                    del ends[where]
            for (topic, part), end in list(ends.items()):  # a partition whose last records are compacted away
                position = consumer.position([TopicPartition(topic, part)])[0].offset
                if position >= end:
                    del ends[(topic, part)]
    finally:
        consumer.close()
    return newest, read


def run(settings: Settings, engine: Engine, sub: Subscription, *, topic_prefix: str = "",
        timeout: float = 300.0, codec: Codec | None = None) -> BackfillResult:
    """Make the tenant's current state pending for `sub` (stored and committed before this is called)."""
    codec = codec or Codec(settings.schema_registry_url, auth=settings.registry_auth)
    levels_topic, groups_topic = topic_prefix + LEVELS_TOPIC, topic_prefix + GROUPS_TOPIC
    wants_stock = payload.EVENT_TYPE in sub.events
    wants_groups = payload.CATALOG_EVENT_TYPE in sub.events
    topics = ([levels_topic] if wants_stock else []) + [groups_topic]  # groups: for catalog-only SKUs too
    newest, read = _read(settings, topics, sub.tenant_id, timeout)
    result = BackfillResult(records=read)
    rows: list[state.Level] = []
    stocked: set[str] = set()
    catalog_skus: dict[str, object] = {}  # SKU -> its group's updated_at
    for (topic, _key), (partition, offset, value) in sorted(newest.items(), key=lambda kv: kv[1][:2]):
        if value is None:
            continue  # a tombstone
        try:
            rec = codec.decode(value)
        except DecodeError as exc:
            result.undecodable += 1
            log.warning("backfill: %s[%d]@%d skipped: %s", topic, partition, offset, exc)
            continue
        if rec.get("tenant_id") != sub.tenant_id:
            result.undecodable += 1
            continue
        ms = int(time.time() * 1000)
        if topic == levels_topic:
            eid, body = payload.body(rec)
            rows.append(state.Level(sub.subscription_id, rec["sku"], sub.tenant_id, partition, offset, eid, body, ms))
            stocked.add(rec["sku"])
            result.levels += 1
        else:
            for v in rec["variants"]:
                catalog_skus.setdefault(v["sku"], rec["updated_at"])
            if wants_groups:
                eid, body = payload.catalog_body(rec)
                rows.append(state.Level(sub.subscription_id, payload.group_key(rec["product_group_id"]),
                                        sub.tenant_id, partition, offset, eid, body, ms))
                result.groups += 1
    if wants_stock:
        for sku in sorted(set(catalog_skus) - stocked):
            zero = {"tenant_id": sub.tenant_id, "sku": sku, "on_hand": 0, "reserved": 0, "available": 0,
                    "updated_at": catalog_skus[sku], "last_event_id": None}
            eid, body = payload.body(zero)
            rows.append(state.Level(sub.subscription_id, sku, sub.tenant_id, 0, CATALOG_ONLY_OFFSET, eid, body,
                                    int(time.time() * 1000)))
            result.levels += 1
            result.catalog_only += 1
    with engine.begin() as conn:
        state.upsert_pending(conn, rows)
    log.info("subscription %s: %s", sub.subscription_id, result.line())
    return result
