"""Kafka's own tools against the test stack: `stockledger stack kafka kafka-consumer-groups --describe`
shows a group's lag exactly as on any other Kafka system."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from stockledger.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[2]


def stockledger(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *argv], capture_output=True, text=True,
                          cwd=ROOT, env=dict(os.environ), timeout=300, stdin=subprocess.DEVNULL)


def test_consumer_group_lag(stack, settings):
    topic, group = f"tools-{uuid.uuid4().hex[:8]}", f"tools-group-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings.kafka_config(), 2, [topic])
    producer = Producer(settings.kafka_config())
    for partition, n in ((0, 5), (1, 2)):
        for i in range(n):
            producer.produce(topic, value=f"v{i}".encode(), partition=partition)
    assert producer.flush(30) == 0
    consumer = Consumer({**settings.kafka_config(), "group.id": group, "enable.auto.commit": False})
    try:  # the group has read 3 of partition 0's 5 records and all 2 of partition 1's, and left
        consumer.commit(offsets=[TopicPartition(topic, 0, 3), TopicPartition(topic, 1, 2)], asynchronous=False)
    finally:
        consumer.close()

    r = stockledger("stack", "kafka", "kafka-consumer-groups", "--describe", "--group", group)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"Consumer group '{group}' has no active members."
    header, *rows = [line.split() for line in r.stdout.splitlines() if line.strip()]
    assert header == ["GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST",
                      "CLIENT-ID"]
    assert sorted(rows, key=lambda row: int(row[2])) == [  # the tool lists partitions in no fixed order
        [group, topic, "0", "3", "5", "2", "-", "-", "-"],
        [group, topic, "1", "2", "2", "0", "-", "-", "-"],
    ]

    r = stockledger("stack", "kafka", "topics", "--describe", "--topic", topic)  # short names work too
    assert r.returncode == 0, r.stderr
    assert [line.split("\t")[1:3] for line in r.stdout.splitlines()[1:]] == [
        [f"Topic: {topic}", "Partition: 0"], [f"Topic: {topic}", "Partition: 1"]]


def test_unknown_tool_is_a_usage_error(stack):
    r = stockledger("stack", "kafka", "kafka-server-start")
    assert r.returncode == 2
    assert r.stderr.startswith("stack kafka: unknown Kafka tool 'kafka-server-start'; known: kafka-acls, ")
