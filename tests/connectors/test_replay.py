"""`replay sink|stream|dlq` against the real stack: offsets move exactly where Kafka says, the books do
not change, a group with live members is refused, fixed dead letters land."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, TopicPartition
from sqlalchemy import text

from cli.main import main as cli_main
from connectors import replay
from tests.connectors import support
from tests.connectors.support import INVOICES, JOURNAL

HOUR = 3_600_000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _wait_records(sink_thread, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while sink_thread.sink.stats.records < n:
        assert time.monotonic() < deadline, f"sink wrote {sink_thread.sink.stats.records} of {n} records"
        time.sleep(0.05)


def test_sink_replay_from_offset_zero_and_from_a_time_leaves_the_books_unchanged(settings, codec, tenant, sink_db,
                                                                                 prefix, group, capsys):
    url, engine = sink_db
    now = int(time.time() * 1000)
    t1, t2 = now - 2 * HOUR, now - HOUR  # two waves, an hour apart
    records = support.ledger_mix(tenant, 600)
    first, second = records[:900], records[900:]
    topics = [prefix + t for t in support.LEDGER_TOPICS]
    support.publish(settings, codec, first, prefix, timestamp_ms=t1)
    after_first = support.end_offsets(settings, topics)
    support.publish(settings, codec, second, prefix, timestamp_ms=t2)
    ends = support.end_offsets(settings, topics)
    expected = support.expected_books(records)

    with support.SinkThread(settings, url, prefix, group) as st:
        support.wait_caught_up(engine, group, settings, topics)
        support.assert_books_equal(engine, tenant, expected)
        before = support.books(engine, tenant)

        # dry run through the command line: shows the moves, changes nothing
        invoices = prefix + INVOICES
        assert cli_main(["replay", "sink", "--topic", invoices, "--offset", "0", "--group", group,
                                "--dry-run", "--database-url", url]) == 0
        shown = capsys.readouterr().err
        for p in range(settings.partitions):
            assert f"{invoices}[{p}]: {ends[(invoices, p)]} -> 0 (back {ends[(invoices, p)]:,} records" in shown
        assert support.stored_offsets(engine, group) == ends

        # from offset 0, every topic, while the sink runs (idle): it writes everything again
        done = st.sink.stats.records
        for topic in topics:
            moves = replay.sink_replay(settings, topic, group=group, offset=0, engine=engine, out=lambda _l: None)
            assert {(m.partition, m.current, m.target) for m in moves} == \
                {(p, ends[(topic, p)], 0) for p in range(settings.partitions)}
        _wait_records(st, done + len(records))
        support.wait_caught_up(engine, group, settings, topics)
        assert st.sink.stats.records == done + len(records)  # all read and written again...
        assert support.books(engine, tenant) == before  # ...and nothing changed

        # from a time between the waves, two partitions of the journal: back to the first second-wave record
        journal = prefix + JOURNAL
        done = st.sink.stats.records
        moves = replay.sink_replay(settings, journal, group=group, partitions=[1, 2], to_time=_iso(t1 + HOUR // 2),
                                   engine=engine, wait=True, wait_timeout=60, out=lambda _l: None)
        assert [(m.partition, m.target) for m in moves] == [(1, after_first[(journal, 1)]),
                                                           (2, after_first[(journal, 2)])]
        again = sum(ends[(journal, p)] - after_first[(journal, p)] for p in (1, 2))
        assert again > 0
        _wait_records(st, done + again)
        support.wait_caught_up(engine, group, settings, topics)
        assert st.sink.stats.records == done + again
        assert support.books(engine, tenant) == before
    assert support.stored_offsets(engine, group) == ends


def test_sink_replay_only_moves_back(settings, codec, tenant, sink_db, prefix, group):
    url, engine = sink_db
    support.publish(settings, codec, support.ledger_mix(tenant, 40), prefix)
    topics = [prefix + t for t in support.LEDGER_TOPICS]
    with support.SinkThread(settings, url, prefix, group):
        support.wait_caught_up(engine, group, settings, topics)
    ends = support.end_offsets(settings, topics)
    lines = []
    moves = replay.sink_replay(settings, prefix + INVOICES, group=group, offset=10**9, engine=engine, out=lines.append)
    assert all(not m.moves for m in moves)
    assert support.stored_offsets(engine, group) == ends
    with pytest.raises(replay.ReplayError, match="exactly one of --offset and --to-time"):
        replay.sink_replay(settings, prefix + INVOICES, group=group, engine=engine, out=lines.append)
    with pytest.raises(replay.ReplayError, match="no \\[7\\]"):
        replay.sink_replay(settings, prefix + INVOICES, group=group, offset=0, partitions=[7], engine=engine)


# -- stream ----------------------------------------------------------------------------------------
class LiveMember:
    """A member of the group, polling in a thread until closed, as a running stream worker would."""

    def __init__(self, settings, group: str, topic: str):
        self.consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": group,
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        self.consumer.subscribe([topic])
        self.seen: list = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            msg = self.consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                self.seen.append(msg)
                self.consumer.commit(msg, asynchronous=False)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.consumer.close()  # leaves the group


def test_stream_replay_is_refused_while_the_group_is_live_then_moves_its_offsets_exactly(settings, codec, tenant):
    topic = f"test-{uuid.uuid4().hex[:10]}.sales"
    group = f"test-stream-{uuid.uuid4().hex[:8]}"
    support.create_topics(settings, [topic])
    try:
        now = int(time.time() * 1000)
        producer = support.Producer(support.producer_config(settings))
        for i in range(40):  # 20 an hour ago, 20 now-ish
            support.produce(producer, topic, f"v{i}".encode(), f"{tenant}:S{i}".encode(),
                            timestamp=now - HOUR + i if i < 20 else now - 60_000 + i)
        assert producer.flush(30) == 0
        after_first = {}
        ends = support.end_offsets(settings, [topic])
        c = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "probe"})
        for p in range(settings.partitions):  # where the second batch starts, read record by record
            c.assign([TopicPartition(topic, p, 0)])
            offs = []
            while len(offs) < ends[(topic, p)]:
                m = c.poll(1)
                if m is not None and not m.error():
                    offs.append((m.offset(), m.timestamp()[1]))
            after_first[p] = min([o for o, ts in offs if ts >= now - 30 * 60_000], default=ends[(topic, p)])
        c.close()

        member = LiveMember(settings, group, topic)
        deadline = time.monotonic() + 30
        while len(member.seen) < 40:
            assert time.monotonic() < deadline, f"member read {len(member.seen)} of 40"
            time.sleep(0.1)
        committed = {p: ends[(topic, p)] for p in range(settings.partitions)}
        half_hour_ago = _iso(now - 30 * 60_000)
        with pytest.raises(replay.ReplayRefused, match=f"group {group} has 1 live members"):
            replay.stream_replay(settings, topic, group=group, to_time=half_hour_ago, out=lambda _l: None)
        assert cli_main(["replay", "stream", "--topic", topic, "--group", group, "--to-time",
                                half_hour_ago]) == 1
        admin = replay._admin(settings)
        assert replay.committed_offsets(admin, group, topic, list(range(settings.partitions))) == committed
        member.close()

        moves = replay.stream_replay(settings, topic, group=group, to_time=half_hour_ago, dry_run=True,
                                     out=lambda _l: None)
        assert {m.partition: (m.current, m.target) for m in moves} == \
            {p: (committed[p], after_first[p]) for p in committed}
        assert replay.committed_offsets(admin, group, topic, list(committed)) == committed  # dry run

        replay.stream_replay(settings, topic, group=group, to_time=half_hour_ago, out=lambda _l: None)
        assert replay.committed_offsets(admin, group, topic, list(committed)) == after_first
        replay.stream_replay(settings, topic, group=group, partitions=[1], offset=0, out=lambda _l: None)
        assert replay.committed_offsets(admin, group, topic, list(committed)) == {**after_first, 1: 0}

        again = LiveMember(settings, group, topic)  # the worker restarts: reads from the new offsets
        want = 20 + after_first[1]
        deadline = time.monotonic() + 30
        while len(again.seen) < want:
            assert time.monotonic() < deadline, f"read {len(again.seen)} of {want}"
            time.sleep(0.1)
        time.sleep(0.5)
        again.close()
        got = sorted(int(m.value()[1:]) for m in again.seen)
        assert got == sorted(list(range(20, 40)) + [int(m.value()[1:]) for m in member.seen
                                                     if m.partition() == 1 and m.offset() < after_first[1]])
    finally:
        support.delete_topics(settings, [topic])


# -- dlq -------------------------------------------------------------------------------------------
def test_dlq_replay_republishes_the_chosen_dead_letters_after_the_fix(settings, codec, tenant, sink_db, prefix,
                                                                     group):
    url, engine = sink_db
    topics = [prefix + t for t in support.LEDGER_TOPICS]
    invoices_topic = prefix + INVOICES
    yen = []
    for n in range(3):
        inv = support.invoice(tenant, 100 + n)
        inv["currency"] = "JPY"
        yen.append((INVOICES, inv))
    usd = [(INVOICES, support.invoice(tenant, n)) for n in range(5)]
    with support.SinkThread(settings, url, prefix, group) as st:
        support.wait_caught_up(engine, group, settings, topics)  # migrated, partitions stored
        with engine.begin() as conn:  # an over-strict constraint: the "bug"
            conn.execute(text("ALTER TABLE invoices ADD CONSTRAINT invoices_no_yen CHECK (currency <> 'JPY')"))
        support.publish(settings, codec, usd + yen, prefix)
        support.wait_caught_up(engine, group, settings, topics)
        assert st.sink.stats.dead_letters == 3
        letters = support.read_topic(settings, invoices_topic + ".dlq")
        decoded = [(m, codec.decode(m.value())) for m in letters]
        assert all("invoices_no_yen" in dl["error"] and dl["stage"] == "rule" for _, dl in decoded)
        chosen, left = decoded[:2], decoded[2]
        spec = ",".join(f"{m.partition()}:{m.offset()}" for m, _ in chosen)
        before = support.end_offsets(settings, [invoices_topic])

        assert cli_main(["replay", "dlq", "--topic", invoices_topic, "--offsets", spec, "--dry-run"]) == 0
        assert support.end_offsets(settings, [invoices_topic]) == before  # nothing republished

        with engine.begin() as conn:  # the fix
            conn.execute(text("ALTER TABLE invoices DROP CONSTRAINT invoices_no_yen"))
        refs = replay.dlq_replay(settings, invoices_topic, offsets=replay.parse_offsets(spec), out=lambda _l: None)
        assert sorted((r.dlq_partition, r.dlq_offset) for r in refs) == sorted((m.partition(), m.offset())
                                                                               for m, _ in chosen)
        support.wait_caught_up(engine, group, settings, topics)
        with engine.connect() as conn:
            got = conn.execute(text("SELECT invoice_id FROM invoices WHERE tenant_id = :t AND currency = 'JPY'"),
                               {"t": tenant}).scalars().all()
        wanted = {codec.decode(dl["value"])["invoice_id"] for _, dl in chosen}
        assert set(got) == wanted  # the two chosen, not the third

        republished = [m for m in support.read_topic(settings, invoices_topic)
                       if dict(m.headers() or []).get(replay.REPLAY_HEADER)]
        assert sorted((m.partition(), m.key(), m.value()) for m in republished) == \
            sorted((dl["partition"], dl["key"], dl["value"]) for _, dl in chosen)  # same bytes, same partition

        replay.dlq_replay(settings, invoices_topic, out=lambda _l: None)  # all of them: two of them again
        support.wait_caught_up(engine, group, settings, topics)
    support.assert_books_equal(engine, tenant, support.expected_books(usd + yen))
    assert left[1]["topic"] == invoices_topic


def test_sink_replay_while_the_sink_is_busy_throws_its_batch_away_and_duplicates_nothing(
        settings, codec, tenant, sink_db, prefix, group, tmp_path):
    url, engine = sink_db
    first = support.ledger_mix(tenant, 2000)
    second = [(INVOICES, support.invoice(tenant, 100_000 + n)) for n in range(400)]  # only invoices: all rewound
    records = first + second
    topics = [prefix + t for t in support.LEDGER_TOPICS]
    invoices = prefix + INVOICES
    hold = tmp_path / "hold"  # while it exists the sink holds each batch before committing it
    support.publish(settings, codec, first, prefix)
    with support.SinkThread(settings, url, prefix, group, batch_size=500) as st:
        holder = support.BatchHolder(st.sink, hold)
        # every invoice partition has records written (else a rewind to 0 would move nothing)...
        support.wait_caught_up(engine, group, settings, topics, timeout=120)
        written = support.stored_offsets(engine, group)
        assert all(written[(invoices, p)] > 0 for p in range(settings.partitions))
        # ...and the sink is certainly busy when the replay begins: it has read a batch and waits to commit it
        hold.touch()
        support.publish(settings, codec, second, prefix)
        assert holder.holding.wait(60), f"the sink never held a batch: {st.sink.stats.line()}"
        held = {(m.topic(), m.partition()) for m in st.sink.buffer}
        assert held and all(t == invoices for t, _ in held)
        assert all(st.sink.next[k] == written[k] > 0 for k in held)  # the batch goes on from what is stored
        assert st.sink.stats.records == len(first)  # nothing of the second wave committed yet

        moves = replay.sink_replay(settings, invoices, group=group, offset=0, engine=engine, out=lambda _l: None)
        assert {(m.partition, m.current, m.target) for m in moves} == \
            {(p, written[(invoices, p)], 0) for p in range(settings.partitions)}
        assert holder.holding.is_set() and st.sink.stats.fenced == 0  # still mid-batch: the replay came first
        hold.unlink()
        support.wait_caught_up(engine, group, settings, topics, timeout=120)
        # noticed either at its next commit (the batch it was building is fenced) or by the periodic
        # check, whichever comes first; either way the records buffered from the old offsets are dropped
        assert st.sink.stats.fenced + st.sink.stats.rewound >= 1
        assert st.sink.stats.fenced >= 1  # held until after the replay: its commit is the first to see it
        # exactly: every record once, then every invoice of the first wave again; the held batch never counted
        again = len(records) + sum(1 for contract, _ in first if contract == INVOICES)
        _wait_records(st, again)  # its counter moves just after the commit that wait_caught_up saw
        assert st.sink.stats.records > len(records)  # some invoices read and written again
        assert st.sink.stats.records == again
    support.assert_books_equal(engine, tenant, support.expected_books(records))
