"""`stockledger consume TOPIC`: decoded records as JSON lines, from the start, an offset or a time."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

from confluent_kafka import Consumer, TopicPartition

from stockledger.codec import Codec, DecodeError
from stockledger.config import Settings
from stockledger.jsonconv import parse_timestamp, to_json


def start_positions(consumer: Consumer, topic: str, partitions: list[int], offset: int | None,
                    from_time: str | None) -> list[TopicPartition]:
    """Where to start per partition; a time maps to offsets through Kafka (offsets_for_times)."""
    if from_time is not None:
        millis = parse_timestamp(from_time, "--from-time")
        found = consumer.offsets_for_times([TopicPartition(topic, p, millis) for p in partitions], timeout=15)
        out = []
        for tp in found:
            if tp.offset < 0:  # no record at or after that time: start at the end
                tp.offset = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=15)[1]
            out.append(tp)
        return out
    return [TopicPartition(topic, p, offset if offset is not None else 0) for p in partitions]


def records(settings: Settings, topic: str, offset: int | None = None, from_time: str | None = None,
            partition: int | None = None, follow: bool = False, idle_timeout: float = 2.0,
            codec: Codec | None = None) -> Iterator[dict]:
    """Yield {topic, partition, offset, key, timestamp, value} for committed records up to the current end."""
    codec = codec or Codec(settings.schema_registry_url, auth=settings.registry_auth)
    consumer = Consumer({
        **settings.kafka_config(),
        "group.id": f"stockledger-consume-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
    })
    try:
        md = consumer.list_topics(topic, timeout=15).topics[topic]
        if md.error is not None:
            raise ValueError(f"topic {topic}: {md.error}")
        partitions = sorted(md.partitions) if partition is None else [partition]
        consumer.assign(start_positions(consumer, topic, partitions, offset, from_time))
        at_end: set[int] = set()
        idle_since = time.monotonic()
        while follow or len(at_end) < len(partitions):
            msg = consumer.poll(0.5)
            if msg is None:
                if not follow and time.monotonic() - idle_since > idle_timeout and _caught_up(consumer, topic,
                                                                                              partitions):
                    break
                continue
            if msg.error():
                if msg.error().code() == -191:  # type: ignore[union-attr]  # _PARTITION_EOF
                    at_end.add(msg.partition())  # type: ignore[arg-type]
                    continue
                raise RuntimeError(str(msg.error()))
            idle_since = time.monotonic()
            at_end.discard(msg.partition())
            key = msg.key()
            try:
                value = to_json(codec.decode(msg.value()))
            except DecodeError as exc:
                value = {"undecodable": str(exc)}
            yield {"topic": topic, "partition": msg.partition(), "offset": msg.offset(),
                   "key": key.decode("utf-8", "replace") if key is not None else None,
                   "timestamp": msg.timestamp()[1], "value": value}
    finally:
        consumer.close()


def _caught_up(consumer: Consumer, topic: str, partitions: list[int]) -> bool:
    positions = consumer.position([TopicPartition(topic, p) for p in partitions])
    for tp in positions:
        high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=5, cached=False)[1]
        if tp.offset < 0 and high > 0:
            return False
        if tp.offset >= 0 and tp.offset < high:
            return False
    return True


def dump(settings: Settings, topic: str, out, meta: bool = False, **kwargs) -> int:
    n = 0
    for rec in records(settings, topic, **kwargs):
        out.write(json.dumps(rec if meta else rec["value"], ensure_ascii=False) + "\n")
        n += 1
    out.flush()
    return n
