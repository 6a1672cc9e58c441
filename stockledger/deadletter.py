"""The one dead-letter builder of the project: what failed, where it was read, and why.

A `<topic>.dlq` record (stockledger/schemas/dead_letter.avsc) keeps the original key and value bytes, where they
were (topic, partition, offset), a readable reason and the stage that refused it: `decode` (bytes that
are not a record of ours), `validate` (a record that breaks the envelope or the topic's rules),
`rule` (a business rule found only when applied: NO_PRICE, PAYMENT_MISMATCH, or the database
refusing a row), `idempotency` (an event id used again with other content).

Steps say what failed (a `Failure`, or the core's `DeadLetter` output); the runtimes (the admit and fold
agents of the stream workers, the PostgreSQL sink) turn it into the record to send with `encoded`, and
nothing else builds or encodes a dead letter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from stockledger.topics import DLQ_SUFFIX

DECODE, VALIDATE, RULE, IDEMPOTENCY = "decode", "validate", "rule", "idempotency"


@dataclass(frozen=True, slots=True)
class Failure:
    """A consumed record that cannot be processed, and why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    stage: str
    error: str


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def dead_letter(f: Failure, now_ms: int | None = None) -> dict:
    """The DLQ record (an Avro datum of stockledger/schemas/dead_letter.avsc) for `f`."""
    return {"key": f.key, "value": f.value, "topic": f.topic, "partition": f.partition, "offset": f.offset,
            "error": f.error, "stage": f.stage,
            "failed_at": now_ms if now_ms is not None else int(time.time() * 1000)}


def encoded(codec: Any, f: Failure, now_ms: int | None = None, subject: str | None = None
            ) -> tuple[str, bytes, bytes | None]:
    """(topic, value, key) of the dead letter of `f`, ready to send: to `<f.topic>.dlq`, with the original key,
    the value encoded by `codec` under `subject` (by default that DLQ topic's own)."""
    topic = dlq_topic(f.topic)
    return topic, codec.encode(subject or topic, dead_letter(f, now_ms)), f.key
