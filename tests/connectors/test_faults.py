"""Faults: a sink worker killed with SIGKILL in the middle of its batch transactions, and its
PostgreSQL stopped and started under it. The books must equal the unique documents exactly."""

from __future__ import annotations

import dataclasses
import random
import shutil
import signal
import time
import uuid

from sqlalchemy import text

from cli.stack.postgres import Postgres
from cli.testing import spare_port
from tests.connectors import support

KILLS = 3


def _workload(tenant: str) -> list[tuple[str, dict]]:
    """30,000 ledger records: 29,250 documents and entries, and 750 of them published a second time."""
    records = support.ledger_mix(tenant, 9000)
    assert len(records) == 29_250
    return records + records[::39][:750]


def _progress(engine, group: str) -> int:
    return sum(support.stored_offsets(engine, group).values())


def _in_transaction(engine, database: str) -> bool:
    """Whether the sink has a batch transaction open right now."""
    with engine.connect() as conn:
        return conn.execute(text("""SELECT count(*) FROM pg_stat_activity WHERE datname = :db
                                    AND pid <> pg_backend_pid() AND state IN ('active', 'idle in transaction')
                                    AND query NOT LIKE 'SELECT topic, partition, next_offset%'"""),
                            {"db": database}).scalar() > 0


def test_sink_killed_mid_batch_three_times_writes_every_document_once(settings, codec, tenant, sink_db, prefix,
                                                                      group, tmp_path):
    url, engine = sink_db
    database = url.rsplit("/", 1)[1]
    records = _workload(tenant)
    assert len(records) == 30_000
    support.publish(settings, codec, records, prefix)
    topics = [prefix + t for t in support.LEDGER_TOPICS]
    args = ("--batch-size", "1000", "--instance-id", "crash-1")  # static member: a restart takes over at once
    proc = support.spawn_sink(url, prefix, group, tmp_path / "sink.log", *args)
    rng = random.Random(5)
    at_kill = []
    try:
        for k in range(1, KILLS + 1):
            while _progress(engine, group) < k * len(records) // (KILLS + 1):
                assert proc.poll() is None, support.tail(proc)
                time.sleep(0.02)
            time.sleep(rng.uniform(0, 0.1))
            deadline = time.monotonic() + 10
            while not _in_transaction(engine, database):  # mid-batch: its transaction is open
                assert time.monotonic() < deadline, "the sink never had a transaction open"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            at_kill.append(_progress(engine, group))
            proc = support.spawn_sink(url, prefix, group, tmp_path / f"sink{k}.log", *args)
        support.wait_caught_up(engine, group, settings, topics, timeout=120, procs=[proc])
    finally:
        last = support.stats_of(support.stop_sink(proc))
    assert len(at_kill) == KILLS and all(0 < n < len(records) for n in at_kill), at_kill
    assert last["dead_letters"] == 0
    support.assert_books_equal(engine, tenant, support.expected_books(records))
    assert support.unbalanced_entries(engine, tenant) == []
    assert support.stored_offsets(engine, group) == support.end_offsets(settings, topics)


def test_postgres_down_at_start_then_stopped_and_started_mid_run_loses_and_duplicates_nothing(stack, settings, codec,
                                                                                              tenant, prefix,
                                                                         group, tmp_path):
    """A PostgreSQL of the test's own (the shared one serves others): not up yet when the sink starts,
    then stopped under it in the middle of a batch."""
    home = settings.home / f"sinkpg-{uuid.uuid4().hex[:6]}"  # not /tmp: the postgres user must reach it
    pg = Postgres(dataclasses.replace(settings, home=home, pg_port=spare_port()))
    url = support.database_url(pg.settings.pg_port, "stockledger")
    engine = support.new_engine(url)
    records = _workload(tenant)
    topics = [prefix + t for t in support.LEDGER_TOPICS]
    proc = support.spawn_sink(url, prefix, group, tmp_path / "sink.log", "--batch-size", "1000")
    try:
        support.wait_log(proc, "migrate failed")  # started before its database: waits for it
        pg.start(lambda m: None)
        pg.wait(lambda m: None)
        support.publish(settings, codec, records, prefix)
        while _progress(engine, group) < len(records) // 3:
            assert proc.poll() is None, support.tail(proc)
            time.sleep(0.02)
        deadline = time.monotonic() + 10
        while not _in_transaction(engine, "stockledger"):  # stopped in the middle of a batch
            assert time.monotonic() < deadline, "the sink never had a transaction open"
        assert pg.stop() is True  # fast shutdown: the open transaction rolls back
        stopped_at = time.monotonic()
        time.sleep(3)
        assert proc.poll() is None, support.tail(proc)  # still there, retrying
        engine.dispose()
        pg.start(lambda m: None)
        pg.wait(lambda m: None)
        assert _progress(engine, group) < len(records)
        support.wait_caught_up(engine, group, settings, topics, timeout=120, procs=[proc])
        recovered_in = time.monotonic() - stopped_at
        stats = support.stats_of(support.stop_sink(proc))
        assert stats["retries"] >= 1 and stats["dead_letters"] == 0, stats
        assert recovered_in < 60
        support.assert_books_equal(engine, tenant, support.expected_books(records))
        assert support.unbalanced_entries(engine, tenant) == []
        assert support.stored_offsets(engine, group) == support.end_offsets(settings, topics)
    finally:
        if proc.poll() is None:
            proc.kill()
        engine.dispose()
        pg.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_a_sink_waiting_for_its_database_stops_when_asked(stack, prefix, group, tmp_path):
    url = support.database_url(spare_port(), "stockledger")  # nothing listens there
    proc = support.spawn_sink(url, prefix, group, tmp_path / "sink.log")
    support.wait_log(proc, "migrate failed")
    started = time.monotonic()
    assert support.stats_of(support.stop_sink(proc, timeout=10))["records"] == 0
    assert time.monotonic() - started < 5
