"""A partition's state restore that meets the broker away is tried again until the broker is back.

The crash test's surviving worker stalled for good after the broker restart: a rebalance had just
assigned it tenant-log partitions, their restores (`PartitionStore.begin`) were reading the state
changelog when the broker died, the restore raised (librdkafka reports the lost connection as an
error of `consume`; the watermark and committed-offset requests time out), the task died silently,
`ready` stayed clear, and the fold agent waited on it for ever holding frames it never acked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

import streams.state as state_mod
from stockledger.topics import state_topic
from streams.state import _OFFSET_KEY, PartitionStore

RECORDS = 200


def test_a_restore_that_meets_the_broker_away_is_tried_again_until_it_is_back(stack, settings, tmp_path,
                                                                                monkeypatch):
    mine = dataclasses.replace(settings, app_id=f"restore-{uuid.uuid4().hex[:8]}")
    topic = state_topic(mine.app_id)
    admin = AdminClient(mine.kafka_config())
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                  config={"cleanup.policy": "compact"})])[topic].result(30)
    producer = Producer(mine.kafka_config())
    for i in range(RECORDS):
        producer.produce(topic, f"value-{i}".encode(), f"key-{i}".encode(), partition=0)
    assert producer.flush(30) == 0

    monkeypatch.setattr(state_mod, "KAFKA_TIMEOUT", 3.0)  # each attempt fails fast while the broker is away
    store = PartitionStore(mine, tmp_path, 0, f"{mine.app_id}-tenant-log", mine.app_id)
    notes: list[str] = []

    async def scenario() -> None:
        assert stack.kafka.kill()
        broker_back = False
        try:
            task = asyncio.ensure_future(store.begin("w-test", notes.append))
            deadline = time.monotonic() + 120
            # the broker is away: the restore must not give up, but say it failed and try again
            while not any("trying again" in n for n in notes):
                assert not task.done(), f"the restore ended while the broker was away: {task.exception()!r}"
                assert time.monotonic() < deadline, f"no failed attempt reported in 120 s: {notes}"
                await asyncio.sleep(0.2)
            assert not store.ready.is_set()
            await asyncio.get_running_loop().run_in_executor(None, stack.kafka.start, lambda m: None)
            await asyncio.get_running_loop().run_in_executor(None, stack.kafka.wait, lambda m: None)
            broker_back = True
            await asyncio.wait_for(task, 240)
        finally:
            if not broker_back:
                stack.kafka.start(lambda m: None)
                stack.kafka.wait(lambda m: None)

    asyncio.run(scenario())
    assert store.ready.is_set() and store.session is not None
    assert store.start == store.next == store.committed == 0  # the group never committed this log
    assert store.db[_OFFSET_KEY] == str(RECORDS).encode()
    assert {bytes(k): bytes(v) for k, v in store.db.items() if k != _OFFSET_KEY} == {
        f"key-{i}".encode(): f"value-{i}".encode() for i in range(RECORDS)}
    store.close()
