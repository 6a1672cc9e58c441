"""The one dead-letter builder: a Failure becomes the record for `<topic>.dlq`, encoded with the registry."""

from __future__ import annotations

from datetime import UTC, datetime

from stockledger.deadletter import DECODE, RULE, Failure, dead_letter, dlq_topic, encoded


def test_a_failure_becomes_its_dlq_record_with_the_original_key_and_bytes(codec):
    f = Failure("inventory.changes", 3, 41, b"t1:A", b"\x00not avro", DECODE, "not Confluent wire format")
    topic, value, key = encoded(codec, f, now_ms=1_767_000_000_000)
    assert (topic, key) == ("inventory.changes.dlq", b"t1:A") and dlq_topic(f.topic) == topic
    assert codec.decode(value) == {"key": b"t1:A", "value": b"\x00not avro", "topic": "inventory.changes",
                                   "partition": 3, "offset": 41, "error": "not Confluent wire format",
                                   "stage": "decode", "failed_at": datetime(2025, 12, 29, 9, 20, tzinfo=UTC)}
    assert dead_letter(f, 1_767_000_000_000)["failed_at"] == 1_767_000_000_000  # timestamp-millis


def test_the_sink_encodes_under_the_contract_subject_and_publishes_to_the_prefixed_dlq(codec):
    f = Failure("p-1.ledger.invoices", 0, 7, None, b"{}", RULE, "DUPLICATE")
    topic, value, key = encoded(codec, f, 5, subject="ledger.invoices.dlq")
    assert (topic, key) == ("p-1.ledger.invoices.dlq", None)
    assert value == codec.encode("ledger.invoices.dlq", dead_letter(f, 5))
    assert codec.decode(value)["topic"] == "p-1.ledger.invoices"
