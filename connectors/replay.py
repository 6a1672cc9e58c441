"""`stockledger replay sink|stream|dlq`: reprocess from an offset or a time after an incident.

- sink: rewind the offsets the sink stored in PostgreSQL for a topic. Running sink workers notice
  (at their next commit, or within a couple of seconds when idle) and write those records again;
  every row already there is skipped (ON CONFLICT DO NOTHING), so nothing is duplicated. Offsets
  only move back: moving them forward would leave records never written.
- stream: move the stream workers' committed offsets on an input topic with Kafka's admin API,
  refused while the group has live members (running workers would overwrite them); the workers'
  idempotent state makes reprocessing harmless.
- dlq: republish chosen dead letters' original key and value bytes to their source topic and
  partition, after the cause is fixed.
A time is turned into offsets by Kafka (offsets_for_times): the first record at or after it.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError

from connectors import store
from connectors.progress import Progress
from connectors.sink import default_group
from stockledger.codec import Codec, DecodeError
from stockledger.config import Settings
from stockledger.consume import start_positions
from stockledger.produce import producer_config
from stockledger.retries import produce
from stockledger.topics import DLQ_SUFFIX

Out = Callable[[str], None]
REPLAY_HEADER = "stockledger-replayed-from"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class ReplayError(RuntimeError):
    """The replay cannot be done as asked; nothing was changed."""


class ReplayRefused(ReplayError):
    """Refused because of the group's state (live members); nothing was changed."""


@dataclass(frozen=True, slots=True)
class Move:
    """One partition's offset: where it is, where it goes, and the log's bounds."""

    topic: str
    partition: int
    current: int | None  # None: nothing stored / committed yet
    target: int
    low: int
    high: int

    @property
    def moves(self) -> bool:
        return self.current != self.target

    def describe(self) -> str:
        cur = "none" if self.current is None else str(self.current)
        if not self.moves:
            what = "unchanged"
        elif self.current is None:
            what = "set"
        elif self.target < self.current:
            what = f"back {self.current - self.target:,} records"
        else:
            what = f"forward {self.target - self.current:,} records"
        return f"{self.topic}[{self.partition}]: {cur} -> {self.target} ({what}; log {self.low}..{self.high})"


def parse_partitions(text_: str | None) -> list[int] | None:
    """`0,2,3` -> [0, 2, 3]; None or empty -> every partition."""
    if not text_:
        return None
    try:
        return sorted({int(p) for p in text_.split(",") if p.strip()})
    except ValueError:
        raise ReplayError(f"--partitions: expected numbers separated by commas, got {text_!r}") from None


def parse_offsets(text_: str) -> dict[int, list[tuple[int, int]]]:
    """`0:12,0:15-20,3:7` -> {0: [(12, 12), (15, 20)], 3: [(7, 7)]} (inclusive ranges)."""
    out: dict[int, list[tuple[int, int]]] = {}
    for part in (p.strip() for p in text_.split(",")):
        if not part:
            continue
        try:
            p, _, rng = part.partition(":")
            lo, _, hi = rng.partition("-")
            first, last = int(lo), int(hi) if hi else int(lo)
            if first < 0 or last < first:
                raise ValueError
            out.setdefault(int(p), []).append((first, last))
        except ValueError:
            raise ReplayError(f"--offsets: expected PARTITION:OFFSET or PARTITION:FIRST-LAST, got {part!r}") from None
    if not out:
        raise ReplayError("--offsets: no records chosen")
    return out


# -- Kafka lookups ---------------------------------------------------------------------------------
def _lookup_consumer(settings: Settings) -> Consumer:
    """For metadata, watermarks and offsets_for_times only: it never subscribes, so never joins a group."""
    return Consumer({**settings.kafka_config(), "enable.auto.commit": False,
                     "group.id": f"stockledger-replay-{uuid.uuid4().hex[:8]}", "isolation.level": "read_committed"})


def topic_partitions(consumer: Consumer, topic: str, wanted: list[int] | None) -> list[int]:
    md = consumer.list_topics(topic, timeout=15).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        raise ReplayError(f"topic {topic!r} does not exist")
    have = sorted(md.partitions)
    if wanted is None:
        return have
    missing = sorted(set(wanted) - set(have))
    if missing:
        raise ReplayError(f"topic {topic} has partitions {have}; no {missing}")
    return wanted


def target_offsets(consumer: Consumer, topic: str, partitions: list[int], offset: int | None,
                   to_time: str | None) -> dict[int, tuple[int, int, int]]:
    """Partition -> (target, low, high). A time: Kafka's first offset at or after it (the end if none);
    an offset: clamped into the log's bounds."""
    if (offset is None) == (to_time is None):
        raise ReplayError("give exactly one of --offset and --to-time")
    bounds = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15, cached=False)
              for p in partitions}
    if to_time is not None:
        try:
            found = start_positions(consumer, topic, partitions, None, to_time)
        except ValueError as exc:
            raise ReplayError(f"--to-time: {exc}") from None
        return {tp.partition: (tp.offset, *bounds[tp.partition]) for tp in found}
    assert offset is not None
    if offset < 0:
        raise ReplayError("--offset must be 0 or more")
    return {p: (min(max(offset, lo), hi), lo, hi) for p, (lo, hi) in bounds.items()}


# -- sink ------------------------------------------------------------------------------------------
_LOCK_STORED = text("""
    SELECT partition, next_offset FROM sink_offsets
     WHERE group_id = :g AND topic = :t AND partition = ANY(CAST(:parts AS int[])) FOR UPDATE
""")
_REWIND = text("""
    UPDATE sink_offsets SET next_offset = :target, updated_at = now()
     WHERE group_id = :g AND topic = :t AND partition = :p
""")


def sink_replay(settings: Settings, topic: str, *, group: str | None = None, partitions: list[int] | None = None,
                offset: int | None = None, to_time: str | None = None, dry_run: bool = False,
                wait: bool = False, wait_timeout: float | None = None, engine: Engine | None = None,
                out: Out = _stderr) -> list[Move]:
    """Rewind the sink's stored offsets of `topic`; returns the moves (made, or planned on a dry run)."""
    group = group or default_group(settings)
    own_engine = engine is None
    engine = engine or store.engine_for(settings.database_url)
    consumer = _lookup_consumer(settings)
    try:
        parts = topic_partitions(consumer, topic, partitions)
        targets = target_offsets(consumer, topic, parts, offset, to_time)
        with engine.begin() as conn:
            try:
                rows = conn.execute(_LOCK_STORED, {"g": group, "t": topic, "parts": parts}).all()
                stored: dict[int, int] = {p: off for p, off in rows}
            except ProgrammingError:
                raise ReplayError("no sink_offsets table in this database: the sink has never run here") from None
            moves = []
            for p in parts:
                target, low, high = targets[p]
                current = stored.get(p)
                if current is None:
                    out(f"{topic}[{p}]: sink group {group} has stored nothing yet; skipped")
                    continue
                moves.append(Move(topic, p, current, min(target, current), low, high))
                if target > current:
                    out(f"{topic}[{p}]: target {target} is ahead of the stored {current}; left where it is "
                        "(forward would skip records)")
            verb = "would move" if dry_run else "moving"
            out(f"sink replay of {topic} for group {group}: {verb} {sum(m.moves for m in moves)} partitions")
            for m in moves:
                out("  " + m.describe())
            if dry_run:
                conn.rollback()
                return moves
            for m in moves:
                if m.moves:
                    conn.execute(_REWIND, {"g": group, "t": topic, "p": m.partition, "target": m.target})
        if wait:
            wait_resunk(engine, group, [m for m in moves if m.moves], wait_timeout, out)
        return moves
    finally:
        consumer.close()
        if own_engine:
            engine.dispose()


def wait_resunk(engine: Engine, group: str, moves: list[Move], timeout: float | None, out: Out) -> bool:
    """Show running sinks writing the rewound records again, until they are back where they were."""
    was = {(m.topic, m.partition): m.current if m.current is not None else m.target for m in moves}
    total = sum(was[(m.topic, m.partition)] - m.target for m in moves)
    if total <= 0:
        return True
    out("waiting for running sink workers to write them again (Ctrl-C stops waiting; the replay is done)")
    bar = Progress(total, "re-sinking")
    deadline = None if timeout is None else time.monotonic() + timeout
    keys = [(m.topic, m.partition) for m in moves]
    try:
        while True:
            with engine.begin() as conn:
                now = store.read_offsets(conn, group, keys)
            done = sum(min(max(now[k] - m.target, 0), was[k] - m.target)
                       for m in moves for k in [(m.topic, m.partition)])
            bar.update(done)
            if done >= total:
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.2)
    finally:
        bar.close()


# -- stream ----------------------------------------------------------------------------------------
def _admin(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_config())


def live_members(admin: AdminClient, group: str) -> list[str]:
    """Members of `group` now, as `client_id@host`; empty for an empty or unknown group."""
    desc = admin.describe_consumer_groups([group], request_timeout=15)[group].result()
    return [f"{m.client_id}@{m.host}" for m in desc.members]


def committed_offsets(admin: AdminClient, group: str, topic: str, partitions: list[int]) -> dict[int, int | None]:
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    res = admin.list_consumer_group_offsets([req], request_timeout=15)[group].result()
    return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in res.topic_partitions}


def stream_replay(settings: Settings, topic: str, *, group: str | None = None, partitions: list[int] | None = None,
                  offset: int | None = None, to_time: str | None = None, dry_run: bool = False,
                  out: Out = _stderr) -> list[Move]:
    """Set the stream group's committed offsets on `topic`; refused while the group has live members."""
    group = group or settings.app_id
    admin = _admin(settings)
    consumer = _lookup_consumer(settings)
    try:
        members = live_members(admin, group)
        if members:
            raise ReplayRefused(f"group {group} has {len(members)} live members ({', '.join(members)}): "
                                "stop its workers first, then replay")
        parts = topic_partitions(consumer, topic, partitions)
        targets = target_offsets(consumer, topic, parts, offset, to_time)
        current = committed_offsets(admin, group, topic, parts)
        moves = [Move(topic, p, current.get(p), *targets[p]) for p in parts]
        out(f"stream replay of {topic} for group {group}: {'would move' if dry_run else 'moving'} "
            f"{sum(m.moves for m in moves)} partitions")
        for m in moves:
            out("  " + m.describe())
        if dry_run:
            return moves
        req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, m.partition, m.target) for m in moves])
        try:
            res = admin.alter_consumer_group_offsets([req], request_timeout=30)[group].result()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() in (KafkaError.UNKNOWN_MEMBER_ID,
                                                             KafkaError.REBALANCE_IN_PROGRESS):
                raise ReplayRefused(f"group {group} became active while replaying ({err.str()}); "
                                    "stop its workers first, then replay") from None
            raise
        failed = [tp for tp in res.topic_partitions if tp.error is not None]
        if failed:
            raise ReplayError(f"Kafka refused some offsets: {[(tp.partition, str(tp.error)) for tp in failed]}")
        now = committed_offsets(admin, group, topic, parts)
        wrong = {m.partition: now.get(m.partition) for m in moves if now.get(m.partition) != m.target}
        if wrong:
            raise ReplayError(f"offsets after the replay are not the targets: {wrong}")
        out(f"done: group {group} will read {topic} from the new offsets at its next start")
        return moves
    finally:
        consumer.close()


# -- dlq -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeadLetterRef:
    dlq_partition: int
    dlq_offset: int
    topic: str
    partition: int
    offset: int
    stage: str
    error: str
    key: bytes | None
    value: bytes | None


def _read_dlq(consumer: Consumer, dlq: str, ranges: dict[int, tuple[int, int]], codec: Codec,
              out: Out) -> Iterator[DeadLetterRef]:
    """Dead letters of `dlq` in the inclusive offset ranges per partition, with a progress bar."""
    bar = Progress(sum(hi - lo + 1 for lo, hi in ranges.values()), f"reading {dlq}")
    consumer.assign([TopicPartition(dlq, p, lo) for p, (lo, _) in ranges.items()])
    open_parts = set(ranges)

    def close(p: int) -> None:
        open_parts.discard(p)
        consumer.pause([TopicPartition(dlq, p)])

    idle_since = time.monotonic()
    try:
        while open_parts:
            msg = consumer.poll(0.2)
            if msg is None:  # past the range through control records (transactional producers)?
                for tp in consumer.position([TopicPartition(dlq, p) for p in open_parts]):
                    if tp.offset > ranges[tp.partition][1]:
                        close(tp.partition)
                if open_parts and time.monotonic() - idle_since > 15:
                    raise ReplayError(f"{dlq}: partitions {sorted(open_parts)} stopped short of the chosen offsets")
                continue
            idle_since = time.monotonic()
            if msg.error():
                raise ReplayError(f"{dlq}: {msg.error()}")
            p, o = msg.partition(), msg.offset()
            assert p is not None and o is not None
            if p not in open_parts:
                continue
            if o > ranges[p][1]:
                close(p)
                continue
            bar.advance()
            try:
                dl = codec.decode(msg.value())
                yield DeadLetterRef(p, o, dl["topic"], dl["partition"], dl["offset"], dl["stage"], dl["error"],
                                    dl["key"], dl["value"])
            except (DecodeError, KeyError) as exc:
                out(f"{dlq}[{p}]@{o}: not a dead letter ({exc}); skipped")
            if o >= ranges[p][1]:
                close(p)
    finally:
        bar.close()


def dlq_replay(settings: Settings, topic: str, *, offsets: dict[int, list[tuple[int, int]]] | None = None,
               partitions: list[int] | None = None, offset: int | None = None, to_time: str | None = None,
               dry_run: bool = False, codec: Codec | None = None, out: Out = _stderr) -> list[DeadLetterRef]:
    """Republish chosen dead letters (original key and value bytes) to their source topic and partition.

    `topic` is the DLQ or its source topic. Chosen are the `offsets` ranges, else every record from
    `offset` / `to_time` (default: the beginning) in `partitions` (default: all).
    """
    dlq = topic if topic.endswith(DLQ_SUFFIX) else topic + DLQ_SUFFIX
    codec = codec or Codec(settings.schema_registry_url, auth=settings.registry_auth)
    consumer = _lookup_consumer(settings)
    try:
        parts = topic_partitions(consumer, dlq, sorted(offsets) if offsets else partitions)
        bounds = {p: consumer.get_watermark_offsets(TopicPartition(dlq, p), timeout=15, cached=False) for p in parts}
        ranges: dict[int, tuple[int, int]] = {}
        wanted: dict[int, set[int]] | None = None
        if offsets:
            wanted = {}
            for p, spans in offsets.items():
                lo, hi = bounds[p]
                for first, last in spans:
                    if first < lo or last >= hi:
                        raise ReplayError(f"{dlq}[{p}] holds offsets {lo}..{hi - 1}; {first}-{last} is outside")
                    wanted.setdefault(p, set()).update(range(first, last + 1))
                ranges[p] = (min(wanted[p]), max(wanted[p]))
        else:
            starts = (target_offsets(consumer, dlq, parts, offset, to_time) if offset is not None or to_time
                      else {p: (lo, lo, hi) for p, (lo, hi) in bounds.items()})
            ranges = {p: (starts[p][0], bounds[p][1] - 1) for p in parts if starts[p][0] < bounds[p][1]}
        chosen = [d for d in _read_dlq(consumer, dlq, ranges, codec, out)
                  if wanted is None or d.dlq_offset in wanted.get(d.dlq_partition, ())] if ranges else []
    finally:
        consumer.close()
    out(f"{'would republish' if dry_run else 'republishing'} {len(chosen)} dead letters of {dlq}")
    for d in chosen:
        out(f"  {dlq}[{d.dlq_partition}]@{d.dlq_offset} -> {d.topic}[{d.partition}] (was @{d.offset}; "
            f"{d.stage}: {d.error})")
    if dry_run or not chosen:
        return chosen
    _republish(settings, chosen, dlq)
    out(f"done: {len(chosen)} records republished")
    return chosen


def _republish(settings: Settings, chosen: list[DeadLetterRef], dlq: str) -> None:
    errors: list[str] = []

    def on_delivery(err, _msg) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer(producer_config(settings))
    md = producer.list_topics(timeout=15).topics
    bar = Progress(len(chosen), "republishing")
    for d in chosen:
        parts = md.get(d.topic).partitions if d.topic in md else {}
        partition = d.partition if d.partition in parts else -1  # the original one; -1: by key
        headers: list[tuple[str, str | bytes | None]] = [
            (REPLAY_HEADER, f"{dlq}:{d.dlq_partition}:{d.dlq_offset}".encode())]
        produce(producer, d.topic, d.value, d.key, partition=partition, headers=headers, on_delivery=on_delivery)
        bar.advance()
    remaining = producer.flush(60)
    bar.close()
    if remaining or errors:
        raise ReplayError(f"republishing failed: {remaining} undelivered, errors {errors[:3]}")
