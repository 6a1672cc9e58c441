"""Dead letters of the sink: a record that can never be written goes to `<topic>.dlq`, whole.

The DLQ record (schemas/dead_letter.avsc) keeps the original key and value bytes, where they were
(topic, partition, offset), a readable reason and the stage: `decode` (bytes that are not a record
of ours), `validate` (a record that does not fit its table) or `rule` (the database refused it: a
constraint of the books). Dead letters are delivered before the batch's offsets commit, so none is
lost; a crash between the two can deliver one twice (at least once, and replaying it twice is
harmless: the sink writes every row once).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaException, Producer

from stockledger.topics import DLQ_SUFFIX
from streams.codec import Codec

from connectors.rows import contract_topic

DECODE, VALIDATE, RULE = "decode", "validate", "rule"


@dataclass(frozen=True, slots=True)
class Failure:
    """A consumed record the sink cannot write, and why."""

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
    return {"key": f.key, "value": f.value, "topic": f.topic, "partition": f.partition, "offset": f.offset,
            "error": f.error, "stage": f.stage,
            "failed_at": now_ms if now_ms is not None else int(time.time() * 1000)}


class DeadLetters:
    """Publishes failures with the project's idempotent producer and waits until Kafka has them."""

    def __init__(self, producer: Producer, codec: Codec, timeout: float = 30.0):
        self.producer = producer
        self.codec = codec
        self.timeout = timeout

    def send(self, failures: list[Failure]) -> None:
        """Deliver every failure or raise KafkaException (the caller then commits nothing)."""
        if not failures:
            return
        errors: list[str] = []

        def on_delivery(err, _msg) -> None:
            if err is not None:
                errors.append(str(err))

        now = int(time.time() * 1000)
        for f in failures:
            # Encoded under the contract DLQ subject, published to this topic's own DLQ.
            value = self.codec.encode(contract_topic(f.topic) + DLQ_SUFFIX, dead_letter(f, now))
            while True:
                try:
                    self.producer.produce(dlq_topic(f.topic), value, f.key, on_delivery=on_delivery)
                    break
                except BufferError:
                    self.producer.poll(0.05)
        remaining = self.producer.flush(self.timeout)
        if remaining or errors:
            raise KafkaException(f"dead letters not delivered: {remaining} pending, errors {errors[:3]}")
