"""Dead letters of the sink: a record that can never be written goes to `<topic>.dlq`, whole.

The record is built by the project's one builder (`stockledger.deadletter`): `decode` (bytes that are
not a record of ours), `validate` (a record that does not fit its table) or `rule` (the database
refused it: a constraint of the books). Dead letters are delivered before the batch's offsets commit, so none is
lost; a crash between the two can deliver one twice (at least once, and replaying it twice is
harmless: the sink writes every row once).
"""

from __future__ import annotations

import time

from confluent_kafka import KafkaException, Producer

from connectors.rows import contract_topic
from stockledger.codec import Codec
from stockledger.deadletter import Failure, encoded
from stockledger.retries import produce
from stockledger.topics import DLQ_SUFFIX


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
            topic, value, key = encoded(self.codec, f, now, contract_topic(f.topic) + DLQ_SUFFIX)
            produce(self.producer, topic, value, key, on_delivery=on_delivery)
        remaining = self.producer.flush(self.timeout)
        if remaining or errors:
            raise KafkaException(f"dead letters not delivered: {remaining} pending, errors {errors[:3]}")
