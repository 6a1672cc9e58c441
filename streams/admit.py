"""Admit: the first step of every input record. Decode, check, dead-letter or forward to the tenant log.

One Faust agent per input topic takes the records in whole fetched runs (`faustfix.consumer.Feed`:
no Faust event or stream per record). Each record is decoded with the one codec and checked
(envelope, the topic's event types, the bounds of its quantities and amounts, the rules of its
payload); a bad one goes to `<topic>.dlq` with its original key and bytes, where it was read and
why, and the stream carries on.
Good records are forwarded, in the order read, to the tenant log keyed by their tenant, many per
frame (`streams.tenantlog`); their decoded records wait for this worker's fold
(`tenantlog.Admitted`). The batch's input offsets are acked only once Kafka has every frame and
dead letter of it (at-least-once: a frame forwarded twice after a crash carries event ids the fold
recognises); the agent goes on with the next batch meanwhile (`outbox.Acks`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from stockledger.bounds import event_bounds
from stockledger.codec import DecodeError, RegistryUnavailable
from stockledger.deadletter import DECODE, RULE, VALIDATE, Failure, encoded
from stockledger.retries import RetryPolicy, retrying_on
from stockledger.topics import INPUTS
from streams.core.fold import VALIDATORS, internal_error
from streams.faustfix.consumer import feed
from streams.outbox import Acks
from streams.tenantlog import FrameWriter, tenant_partition

log = logging.getLogger("stockledger.worker")

BATCH, WITHIN = 2000, 0.005  # records per admit step, and how long a step waits to fill
# While the schema registry is away a record waits (0.5 s doubling to 30 s); it is never dead-lettered for that.
REGISTRY_DOWN = RetryPolicy(retrying_on(RegistryUnavailable), first=0.5, cap=30.0, logger=log)


EVENT_TYPES: dict[str, tuple[str, ...]] = {t.name: t.event_types for t in INPUTS}  # topic -> its event types


def check(record: Mapping[str, Any], topic: str) -> tuple[str, str] | None:
    """Why (reason, stage) an input record must be dead-lettered, or None when it may go to the tenant
    log: the envelope is `validate`, the payload's rules are `rule`."""
    event_types = EVENT_TYPES[topic]
    if record.get("event_type") not in event_types or not isinstance(record.get("data"), dict):
        return f"expected {' or '.join(event_types)}, got {record.get('event_type')!r}", VALIDATE
    if not record.get("tenant_id") or not record.get("event_id"):
        return "tenant_id and event_id must not be empty", VALIDATE
    beyond = event_bounds(record["event_type"], record["data"])
    if beyond is not None:  # SPEC 2, "Bounds": QUANTITY_OUT_OF_RANGE / AMOUNT_OUT_OF_RANGE
        return str(beyond), RULE
    reasons = VALIDATORS[record["event_type"]](record["data"])
    return ("; ".join(reasons), RULE) if reasons else None


def admission(record: Mapping[str, Any], topic: str) -> tuple[str, str] | None:
    """`check`, and a record that makes the check itself fail is dead-lettered alone (INTERNAL_ERROR)."""
    try:
        return check(record, topic)
    except Exception as exc:  # a defect of ours must not stop the stream
        log.exception("admission check failed on a %s record", topic)
        return internal_error(exc), RULE


async def decode(codec: Any, value: bytes | None) -> dict:
    """The record in `value`; while the registry is down, wait (a record is never dead-lettered for that)."""
    try:
        return codec.decode(value)
    except RegistryUnavailable as exc:  # the first try stays on the fast path; the policy makes the next ones
        return await REGISTRY_DOWN.acall(lambda: codec.decode(value), "decoding (schema registry)", failed=exc)


async def admit(p: Any, messages: list[Any], acks: Acks) -> None:
    """One step of an admit agent over records of one input topic (`faustfix.consumer.Feed.take`): forward
    the good ones, dead-letter the rest, then ack."""
    codec, outbox, metrics, admitted = p.codec, p.outbox, p.metrics, p.admitted
    admitted.sweep()
    batch = outbox.batch()
    writers: dict[str, FrameWriter] = {}
    bound: dict[str, int] = {}  # tenant -> its tenant-log partition
    partitions = p.settings.partitions
    topic = messages[0].topic
    now, started = time.time(), time.perf_counter()
    for partition, offset in {m.partition: m.offset for m in messages}.items():
        p.watchdog.track(topic, partition, offset)
    metrics.processed.labels(topic).inc(len(messages))
    latency = metrics.latency.labels(topic).observe
    for msg in messages:
        latency(max(now - msg.timestamp, 0.0))
        try:
            record = await decode(codec, msg.value)
        except DecodeError as exc:
            reason, stage = str(exc), DECODE
        else:
            refusal = admission(record, topic)
            if refusal is None:
                tenant = record["tenant_id"]
                writer = writers.get(tenant)
                if writer is None:
                    writer = writers[tenant] = FrameWriter()
                    bound[tenant] = tenant_partition(tenant, partitions)
                writer.add(topic, msg.partition, msg.offset, msg.key, msg.value)
                admitted.keep(topic, msg.partition, msg.offset, msg.value, record, bound[tenant])
                continue
            reason, stage = refusal
        metrics.dead_lettered.labels(topic).inc()
        log.warning("dead letter %s[%s]@%s: %s", topic, msg.partition, msg.offset, reason)
        outbox.produce(batch, *encoded(codec, Failure(topic, msg.partition, msg.offset, msg.key, msg.value, stage,
                                                      reason)))
    for tenant, writer in writers.items():
        key = tenant.encode()
        for frame in writer.close():
            outbox.produce(batch, p.log_topic, frame, key)
    metrics.admit_batch.observe(time.perf_counter() - started)
    await acks.after(batch, messages)


def install(p: Any) -> None:
    for name in EVENT_TYPES:
        _agent(p, name)


def _agent(p: Any, name: str) -> None:
    records = feed(p.app, name)  # the topic's records skip Faust's streams: whole fetched runs

    @p.app.agent(p.topic(name), name=f"admit-{name}")
    async def admit_agent(stream: Any) -> None:  # the stream subscribes the topic; it never has an event
        acks = Acks(records.ack)

        async def loop() -> None:
            while True:
                await admit(p, await records.take(BATCH, WITHIN), acks)
        await p.vitals.guard(f"admit-{name}", loop)
