"""`stockledger produce TOPIC FILE`: validate every record, then publish them all, or nothing."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer

from stockledger import mapping
from stockledger.bounds import event_bounds
from stockledger.codec import Codec, local_schema
from stockledger.config import Settings
from stockledger.jsonconv import FieldError, compile_from_json
from stockledger.retries import produce as produce_waiting
from stockledger.topics import TopicSpec, ensure_topics, spec


class InputError(ValueError):
    """Input that cannot be published; the message names the file, record and field."""


@dataclass(frozen=True, slots=True)
class Prepared:
    key: str
    record: dict  # the Avro datum


def read_json_records(path: str) -> list[Any]:
    """A JSON document, a JSON array of documents, or JSON lines; `-` is standard input."""
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    stripped = text.lstrip()
    if not stripped:
        return []
    try:
        doc = json.loads(stripped, parse_float=Decimal)
        return doc if isinstance(doc, list) else [doc]
    except json.JSONDecodeError:
        pass
    lines = [line for line in text.splitlines() if line.strip()]
    try:  # one C-level parse for the whole file; line by line only to name a bad line
        return json.loads("[" + ",".join(lines) + "]", parse_float=Decimal)
    except json.JSONDecodeError:
        pass
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line, parse_float=Decimal))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: line {lineno}: not JSON: {exc.msg}") from None
    return records


def expand(topic: str, raw: Any, tenant: str | None, currency: str) -> list[Any]:
    """Seed 003 payload shapes become contract events; contract events pass through."""
    if isinstance(raw, dict) and (tenant is not None or "event_type" not in raw):
        if topic == "sales" and mapping.is_order_import(raw):
            return [mapping.order_import(raw, tenant, currency)]
        if topic == "inventory.changes" and mapping.is_adjust(raw):
            return mapping.adjust(raw, tenant)
        if tenant is not None and "tenant_id" not in raw and "event_type" in raw:
            return [{**raw, "tenant_id": tenant}]
    return [raw]


@cache
def _converter(topic: str) -> tuple[TopicSpec, Callable[[Any, str], Any]]:
    t = spec(topic)
    if t.key_field is None:
        raise InputError(f"{topic} is an output topic: stockledger publishes to it, producers do not")
    return t, compile_from_json(local_schema(t.schema))


def convert(topic: str, event: Any) -> Prepared:
    """One contract event checked against the topic's schema and the SPEC's bounds (QUANTITY_OUT_OF_RANGE,
    AMOUNT_OUT_OF_RANGE) and keyed `<tenant>:<natural id>` (tenant.settings: `<tenant>`); FieldError names the
    field that does not fit (the HTTP API answers it as a 400)."""
    t, conv = _converter(topic)
    record = conv(event, "")
    if record["event_type"] not in t.event_types:
        raise FieldError("event_type", f"{record['event_type']!r} does not belong on {topic} "
                                       f"(expected {' or '.join(t.event_types)})")
    beyond = event_bounds(record["event_type"], record["data"])  # SPEC 2, "Bounds"
    if beyond is not None:
        raise FieldError(beyond.field, f"{beyond.code}: {beyond.message}")
    if not t.key_field:  # tenant.settings: keyed by the tenant alone
        return Prepared(record["tenant_id"], record)
    return Prepared(f"{record['tenant_id']}:{record['data'][t.key_field]}", record)


def prepare(topic: str, path: str, raws: Iterable[Any], tenant: str | None = None,
            currency: str = "", max_errors: int = 10) -> list[Prepared]:
    """Convert and check every record against the topic's schema; raise InputError listing the problems."""
    _converter(topic)
    out: list[Prepared] = []
    errors: list[str] = []
    for number, raw in enumerate(raws, start=1):
        for event in expand(topic, raw, tenant, currency):
            try:
                out.append(convert(topic, event))
            except FieldError as exc:
                errors.append(f"{path}: record {number}: {exc}")
                if len(errors) >= max_errors:
                    break
        if len(errors) >= max_errors:
            errors.append(f"{path}: stopped after {max_errors} errors")
            break
    if errors:
        raise InputError("\n".join(errors))
    return out


def producer_config(settings: Settings) -> dict:
    return {
        **settings.kafka_config(),
        "enable.idempotence": True,
        # Java's partitioner (murmur2), as Faust and aiokafka use: a key lands on the same partition
        # whoever produces it, so co-partitioned topics and HTTP routing agree.
        "partitioner": "murmur2_random",
        "acks": "all",
        "linger.ms": 10,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 1_048_576,
    }


def publish(settings: Settings, topic: str, prepared: list[Prepared], codec: Codec | None = None,
            progress: Callable[[str], None] | None = None) -> int:
    """Encode and publish with an idempotent producer; raise if any record was not delivered."""
    codec = codec or Codec(settings.schema_registry_url, auth=settings.registry_auth)
    ensure_topics(settings.kafka_config(), settings.partitions, [topic])
    codec.register(topic)
    failures: list[str] = []

    def on_delivery(err, msg) -> None:
        if err is not None:
            failures.append(str(err))

    producer = Producer({**producer_config(settings), "on_delivery": on_delivery,
                         "delivery.report.only.error": True})
    encode = codec.encode
    last = time.monotonic()
    for n, item in enumerate(prepared, start=1):
        produce_waiting(producer, topic, encode(topic, item.record), item.key)
        if progress and n % 20_000 == 0 and time.monotonic() - last > 2:
            last = time.monotonic()
            progress(f"published {n}/{len(prepared)}")
    remaining = producer.flush(60)
    if remaining or failures:
        raise KafkaException(f"{remaining} records undelivered, {len(failures)} failed: {failures[:3]}")
    return len(prepared)


def produce_file(settings: Settings, topic: str, path: str, tenant: str | None = None,
                 currency: str = "", progress: Callable[[str], None] | None = None) -> int:
    prepared = prepare(topic, path, read_json_records(path), tenant, currency)
    return publish(settings, topic, prepared, progress=progress)
