"""A Faust consumer that hands each partition's records to the agents in offset order, none skipped.

faust-streaming 0.15.3 loses records in five places: `getmany` stops mid-batch when the flow is
suspended or the generation changes, it drops records of partitions paused for recovery, its drain
loop cancels a delivery that is waiting on a full agent buffer when a rebalance begins, an agent's
stream skips a record fetched before the last rebalance, and the agents' buffers are emptied when a
rebalance starts and again when the flow resumes (after Faust has sought to the committed offsets,
so what was delivered in between is gone). In every case aiokafka's fetch position has already moved
past them, so the next record read lies beyond a hole. Faust's own loop then records the hole as a
"gap" (meant for compacted topics and transaction markers) and commits past it: the records are never
processed, and nothing says so (seen: web orders whose saga messages vanished after a SIGKILL,
payments applied out of order).

Two more paths lose a record after it was delivered: a delivery that waits (on a full agent buffer
or the producer) across a buffer clear or a seek puts its record into the emptied buffer ahead of
the records the clear threw away, and a record the stream skips as stale is still acked, so the
commit can pass it before it is read again. Faust's commit then steps over a one-record hole at the
head of a partition (it compares the first acked offset with the committed one off by one).

Our input and internal topics are neither compacted nor transactional, so their offsets are dense.
This consumer keeps the next offset it owes every such partition. A record beyond it means records
were dropped: the partition is sought back to the owed offset and the record is discarded, so the
agents see every record, in order. Records below it were already delivered (a batch fetched before
a seek) and are discarded too, and so are records of an earlier generation, which the stream would
skip. A partition that goes quiet below its high watermark (the last record dropped) is sought back
by a timer. A delivery in flight when a buffer is cleared or its partition sought is marked stale,
so the stream skips it and it is read again in its place; acks of stale records are ignored, and a
dense partition commits only from its committed offset on, never over a hole. Other topics keep
Faust's behaviour.

Topics with a `Feed` (`feed`) skip Faust's per-record delivery (conductor, channel, event, stream)
altogether: the records of a partition that one fetch brought, checked in order as above, are handed
to the feed as one list (a run), and the agent takes whole runs and acks the records itself. A run
is delivered or stale as one: the rules above apply to it as they apply to one record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from itertools import zip_longest
from typing import Any, cast

from aiokafka.errors import IllegalStateError
from faust.transport.consumer import CONSUMER_FETCHING, notify
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock
from mode import Service

from streams.faustfix.fetch import FetchingThread

log = logging.getLogger("stockledger.worker")

RESEEK_AFTER = 2.0  # seconds; a rewind whose records have not come back by then is sought again
TAIL_AFTER = 4.0  # seconds a partition may sit below its high watermark without delivering anything
STALE = -1  # generation id given to a record whose delivery was overtaken by a clear or a seek


class Feed:
    """The records of one dense topic for its agent, as runs: the records of one partition that one
    fetch brought, in offset order, none skipped (`OrderedConsumer` checks them as it would check
    records delivered one at a time). The runs of one fetch arrive together (a bundle) and `take`
    interleaves them record by record, the order Faust delivered them in (its getmany goes round the
    partitions), so partitions advance together as before.

    `take` gives the agent at most the records it asks for (the rest of a bundle waits in the feed,
    and is dropped with it by a clear); a bundle whose records are stale (overtaken by a buffer
    clear or a seek, or of an earlier generation, or taken while the flow is suspended) is skipped
    unacked, as Faust's stream skips such a record: it is read again in its place. `ack` acks through
    the consumer (which ignores acks of stale records). `clear` empties the feed with the agents' buffers.
    """

    def __init__(self, app: Any, topic: str, bundles: int = 8):
        self.app = app
        self.topic = topic
        self._bundles: asyncio.Queue[list[list[Any]]] = asyncio.Queue(bundles)
        self._left: list[Any] = []  # records of a bundle taken beyond `most`, for the next `take`

    async def put(self, bundle: list[list[Any]]) -> None:
        await self._bundles.put(bundle)

    def clear(self) -> None:
        self._left = []
        bundles = self._bundles
        while not bundles.empty():
            bundles.get_nowait()

    def _current(self, records: list[Any]) -> bool:
        app = self.app
        return records[0].generation_id == app.consumer_generation_id and app.flow_control.is_active()

    def _records(self, bundle: list[list[Any]]) -> list[Any]:
        """The bundle's records, its runs interleaved (none if it is stale)."""
        if not self._current(bundle[0]):
            return []
        if len(bundle) == 1:
            records = bundle[0]
        else:
            records = [m for ms in zip_longest(*bundle) for m in ms if m is not None]
        self.app.consumer._unacked_messages.update(records)  # noqa: SLF001 (pending acks, as Faust's stream tracks them)
        return records

    async def take(self, most: int, within: float) -> list[Any]:
        """At most `most` records, in order: what was left of a bundle, the next current bundle, and
        more bundles already fetched, waiting at most `within` seconds for them once one is in."""
        bundles = self._bundles
        records, self._left = (self._left if self._left and self._current(self._left) else []), []
        while not records:
            records = list(self._records(await bundles.get()))
        deadline = time.monotonic() + within
        while len(records) < most:
            if bundles.empty():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    bundle = await asyncio.wait_for(bundles.get(), left)
                except TimeoutError:
                    break
            else:
                bundle = bundles.get_nowait()
            records += self._records(bundle)
        if len(records) > most:
            records, self._left = records[:most], records[most:]
        return records

    def ack(self, records: list[Any]) -> None:
        self.app.consumer.ack_all(records)


def feed(app: Any, topic: str) -> Feed:
    """The feed of `topic` (after `install`): its records skip Faust's streams and go to `Feed.take`.
    The topic must still be subscribed (an agent on it) and have acks enabled."""
    feeds = cast(OrderedTransport, app.transport).feeds
    f = feeds.get(topic)
    if f is None:
        f = feeds[topic] = Feed(app, topic)
    return f


class OrderedConsumer(faust_aiokafka.Consumer):
    """aiokafka consumer whose dense topics are delivered gap-free."""

    def _new_consumer_thread(self) -> FetchingThread:
        return FetchingThread(self, loop=self.loop, beacon=self.beacon)  # fetch.py: Faust's 1.5 s fetch wait

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._owed: dict[TP, int] = {}  # next offset the agents must see, per dense partition
        self._rewinding: dict[TP, tuple[int, float]] = {}
        self._idle: dict[TP, tuple[int, float]] = {}  # owed offset below the high watermark, since when
        # first offset delivered since the last seek, for partitions that have no committed offset yet
        self._first_read: dict[TP, int] = {}
        self._in_flight: list[Any] = []  # the record or run being delivered (the drain loop delivers one at a time)
        self._runs: dict[TP, list[Any]] = {}  # per partition with a feed, the run being gathered from a fetch
        self._journal: dict[TP, deque] = {}  # recent deliveries, stale marks and ignored acks, for `describe`
        self._dense: dict[str, bool] = {}  # per topic, see `dense`
        self._counted = 0  # dense records fetched at their owed offset (only the fault hook `drop_every` reads it)
        self._watch_queue_clears()

    def _watch_queue_clears(self) -> None:
        """Faust empties every agent's buffer when a rebalance starts and again whenever the flow
        resumes; what was delivered there is gone unprocessed and unacked. After each clear, every
        partition owes its committed offset again (what it had processed is read again, in order)."""
        flow_control = self.app.flow_control
        clear = flow_control.clear

        def clear_and_forget() -> None:
            clear()
            for f in cast(OrderedTransport, self.transport).feeds.values():
                f.clear()
            self._forget()

        flow_control.clear = clear_and_forget  # type: ignore[method-assign]

    def _forget(self, tps: set[TP] | None = None) -> None:
        """Owe the committed offset again (all partitions, or `tps`). A delivery still in flight
        would land in a buffer whose earlier records are gone: it is marked stale, so the stream
        skips it and it is read again in order."""
        if tps is None:
            self._owed.clear()
            self._rewinding.clear()
            self._runs.clear()
        else:
            for tp in tps:
                self._owed.pop(tp, None)
                self._rewinding.pop(tp, None)
                self._runs.pop(tp, None)
        for tp in (tps if tps is not None else list(self._journal)):
            head = self.head(tp)
            if head is not None:
                self._note(tp, head, "owed reset to the head")
        in_flight = self._in_flight
        if in_flight and (tps is None or any(m.tp in tps for m in in_flight)):
            for message in in_flight:
                message.generation_id = STALE
            self._note(in_flight[0].tp, in_flight[0].offset, "stale: overtaken")

    def dense(self, topic: str) -> bool:
        """Acked topics other than changelogs: every offset holds one record."""
        dense = self._dense.get(topic)
        if dense is None:
            dense = self._dense[topic] = (not topic.endswith("-changelog")
                                          and self.app.topics.acks_enabled_for(topic))
        return dense

    def owed(self, tp: TP) -> int | None:
        owed = self._owed.get(tp)
        return owed if owed is not None else self.head(tp)

    def head(self, tp: TP) -> int | None:
        """The first offset not known processed: the committed one, or, before the partition's
        first commit, the first one read since the last seek."""
        committed = self._committed_offset.get(tp)
        return committed if committed is not None else self._first_read.get(tp)

    async def perform_seek(self) -> None:
        await super().perform_seek()
        self._first_read.clear()
        self._forget()  # every partition now reads from its committed offset

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        self._first_read.pop(partition, None)
        if self._committed_offset.get(partition) is None:
            self._first_read[partition] = offset
        self._forget({partition})
        self._owed[partition] = offset

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._first_read.pop(tp, None)
        self._forget(set(revoked))
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        for tp in assigned:
            self._first_read.pop(tp, None)
        self._forget(set(assigned))
        await super().on_partitions_assigned(assigned, generation_id)

    def _note(self, tp: TP, offset: int, what: str, generation: int | None = None) -> None:
        """Cheap on the hot path: raw tuples, formatted only by `describe`."""
        journal = self._journal.get(tp)
        if journal is None:
            journal = self._journal[tp] = deque(maxlen=256)
        journal.append((time.monotonic(), offset, what, generation))

    def describe(self, tp: TP) -> str:
        """Where a partition's delivery and commits stand, for the stall warning."""
        acked = sorted(self._acked.get(tp) or ())
        unacked = sorted(m.offset for m in self._unacked_messages if m.tp == tp)
        head = self.head(tp)
        history = [f"{at:.3f} {offset} {what}" + ("" if generation is None else f" (generation {generation})")
                   for at, offset, what, generation in self._journal.get(tp, ())
                   if head is not None and abs(offset - head) <= 2]
        return (f"owed {self._owed.get(tp)}, committed {self._committed_offset.get(tp)}, "
                f"acked {acked[:3]}..{acked[-1:]} ({len(acked)}), unacked {unacked[:5]} ({len(unacked)}), "
                f"position {self._read_offset.get(tp)}, generation {self.app.consumer_generation_id}, "
                f"history near the head {history}, now {time.monotonic():.3f}")

    def ack(self, message: Any) -> bool:
        """A dense record skipped as stale (older generation, flow suspended) is not processed, yet
        the stream acks it; counting that ack would let the commit pass it before it is read again."""
        if self.dense(message.topic) and (message.generation_id != self.app.consumer_generation_id
                                          or not self.app.flow_control.is_active()):
            self._note(message.tp, message.offset, "ack ignored (stale, or flow suspended)", message.generation_id)
            message.acked = True
            self._unacked_messages.discard(message)
            return False
        return cast(bool, super().ack(message))

    def ack_all(self, messages: list[Any]) -> None:
        """`ack` for every message of a feed's step at once (dense topics with acks: the feeds'): the same
        bookkeeping as Faust's `Consumer.ack` (under its `ack_lock`, each offset counted once, none below
        the committed offset) and the same stale rule as `ack`, with one lock and one wake-up for the lot
        instead of per record."""
        generation, current = self.app.consumer_generation_id, self.app.flow_control.is_active()
        committed_offsets, acked_index, acked, unacked = (self._committed_offset, self._acked_index, self._acked,
                                                         self._unacked_messages)
        with ack_lock:
            try:
                for message in messages:
                    if message.generation_id != generation or not current:
                        self._note(message.tp, message.offset, "ack ignored (stale, or flow suspended)",
                                   message.generation_id)
                        message.acked = True
                        unacked.discard(message)
                        continue
                    if message.acked:
                        continue
                    message.acked = True
                    tp, offset = message.tp, message.offset
                    committed = committed_offsets[tp]
                    if committed is None or offset >= committed:
                        index = acked_index[tp]
                        if offset not in index:
                            unacked.discard(message)
                            index.add(offset)
                            acked[tp].append(offset)
                            self._n_acked += 1
            finally:
                notify(self._waiting_for_ack)

    def _new_offset(self, tp: TP) -> int | None:
        """Faust lets the first acked offset be one past the committed one (it treats the committed
        offset as the last one processed; Kafka's is the next to read), so a lost record at the head
        was committed over. A dense partition commits only a run that starts at its committed offset."""
        if self.dense(tp.topic):
            acked = self._acked.get(tp)
            head = self.head(tp)
            if acked and head is not None and min(acked) > head:
                return None
        return cast("int | None", super()._new_offset(tp))

    async def _rewind(self, tp: TP, owed: int, found: int) -> None:
        """Seek back to the first record not delivered, once per hole (again if it does not come)."""
        pending = self._rewinding.get(tp)
        now = time.monotonic()
        if pending is not None and pending[0] == owed and now - pending[1] < RESEEK_AFTER:
            return
        if pending is None or pending[0] != owed:
            cast(OrderedTransport, self.transport).on_rewind(tp.topic)
            log.warning("%s[%s]: reached %s but %s was never delivered; reading again from %s",
                        tp.topic, tp.partition, found, owed, owed)
        self._rewinding[tp] = (owed, now)
        try:
            await self._seek(tp, owed)
        except IllegalStateError:  # revoked meanwhile: its next owner reads from the committed offset
            self._rewinding.pop(tp, None)

    @Service.timer(2.0)
    async def _heal_tails(self) -> None:
        """A dropped record with none after it leaves no hole to see: the partition just goes quiet
        below its high watermark. Such a partition is sought back to what it owes; if it was merely
        slow, the seek costs a fetch and nothing else, since delivery is decided by offset."""
        if not self.flow_active or self.app.rebalancing:
            self._idle.clear()
            return
        now = time.monotonic()
        for tp in self.assignment():
            owed = self.owed(tp) if self.dense(tp.topic) and tp not in self._paused_partitions else None
            highwater = self.highwater(tp) if owed is not None else None
            if owed is None or highwater is None or highwater <= owed:
                self._idle.pop(tp, None)
                continue
            since = self._idle.get(tp)
            if since is None or since[0] != owed:
                self._idle[tp] = (owed, now)
            elif now - since[1] >= TAIL_AFTER:
                self._idle.pop(tp, None)
                await self._rewind(tp, owed, highwater - 1)

    async def _hand_over(self, tps: Iterable[TP]) -> None:
        """Deliver the runs gathered for `tps` to their feeds, one bundle per feed, as one record is
        delivered: if the flow is suspended first, or a clear or seek overtakes it, every record of
        the bundle is stale."""
        by_topic: dict[str, list[TP]] = {}
        for tp in tps:
            by_topic.setdefault(tp.topic, []).append(tp)
        feeds = cast(OrderedTransport, self.transport).feeds
        for topic, topic_tps in by_topic.items():
            bundle = []
            for tp in topic_tps:  # popped only now: a clear while an earlier bundle was delivered drops them
                run = self._runs.pop(tp, None)
                if not run:
                    continue
                owed = self.owed(tp)
                if run[0].offset != owed:  # cannot happen: a run starts at the owed offset, or is dropped
                    for message in run:
                        message.generation_id = STALE
                    self._note(tp, run[0].offset, f"stale: not at the owed offset {owed}")
                    continue
                bundle.append(run)
            if not bundle:
                continue
            delivery = feeds[topic].put(bundle)
            self._in_flight = [m for run in bundle for m in run]
            try:
                outcome = await self.wait_first(delivery, self.suspend_flow.wait())
            finally:
                self._in_flight = []
            delivered = delivery in outcome.done and bundle[0][0].generation_id != STALE
            for run in bundle:
                first, last = run[0], run[-1]
                if delivered:
                    self._owed[last.tp] = last.offset + 1
                    self._note(last.tp, last.offset, f"delivered from {first.offset}", last.generation_id)
                else:
                    for message in run:
                        message.generation_id = STALE
                    self._note(last.tp, first.offset, f"stale: not delivered, to {last.offset}")

    async def _fetch(self, timeout: float) -> tuple[Mapping[TP, list[Any]] | None, set[TP] | None]:
        """The records of one fetch per partition, and the partitions active then (Faust's `getmany`, whose
        iteration is split below: while the flow is suspended it seeks to the committed offsets instead)."""
        records, active = await self._wait_next_records(timeout)
        if records is None or self.should_stop:
            return None, None
        if not self.flow_active:
            try:
                await self.perform_seek()
            except Exception as exc:  # as Faust's getmany: the next fetch tries again
                log.warning("exception performing seek when flow not active %r", exc)
            return None, None
        return records, active

    def _take_runs(self, fetched: Mapping[TP, list[Any]], active: set[TP] | None, clear_every: int,
                   drop_every: int) -> dict[TP, list[Any]]:
        """Add to the runs being gathered the records of each fed partition that continue its run (or start
        at its owed offset) without a hole, all at once: what the record-by-record path below decides for
        each such record, without its cost (Faust's message iterator, high-watermark lookup and our checks,
        about 3 us a record). Returns the partitions' records that need that path: those of other topics,
        a fetch that starts beyond the owed offset or has a hole (a seek back), the records after one the
        fault hook `drop_every` drops, and every record while the hook `clear_every` is on (tests)."""
        singles: dict[TP, list[Any]] = {}
        feeds, runs, buffered = cast(OrderedTransport, self.transport).feeds, self._runs, self._buffered_partitions
        to_message, track = self._to_message, self.app.monitor.track_tp_end_offset
        flow_control = self.app.flow_control
        for tp, records in fetched.items():
            if not records or (active is not None and tp not in active and tp not in buffered):
                continue
            if clear_every or tp.topic not in feeds or not self.dense(tp.topic):
                singles[tp] = records
                continue
            if not self.flow_active or not flow_control.is_active():
                continue  # each record would be skipped unacked and read again later
            track(tp, self.highwater(tp))
            run = runs.get(tp)
            owed = run[-1].offset + 1 if run else self.owed(tp)
            first = records[0].offset
            if owed is None:
                self._first_read[tp] = owed = first  # no commit yet: reading starts here
            start = owed - first  # records below the owed offset were delivered already (fetched before a seek)
            if records[-1].offset < owed:
                continue
            if not 0 <= start < len(records) or records[start].offset != owed \
                    or records[-1].offset - owed != len(records) - 1 - start:
                singles[tp] = records
                continue
            self._rewinding.pop(tp, None)
            end = len(records)
            if drop_every:  # injected fault: the n-th record counted is lost, as in the per-record path
                lost = start + (drop_every - (self._counted + 1) % drop_every) % drop_every
                if lost < end:
                    if lost + 1 < end:
                        singles[tp] = records[lost + 1:]  # beyond the hole: the per-record path seeks back
                    end = lost
                self._counted += min(end + 1, len(records)) - start
                if end == start:
                    continue
            messages = [to_message(tp, r) for r in records[start:end]]
            if run:
                run.extend(messages)
            else:
                runs[tp] = messages
            self._read_offset[tp] = records[end - 1].offset
        return singles

    async def _messages(self, fetched: dict[TP, list[Any]], active: set[TP] | None) -> Any:
        """Faust's `getmany` iteration over what `_take_runs` left: round the partitions, one record at a time."""
        generation = self.app.consumer_generation_id
        to_message = self._to_message
        for tp, record in self.scheduler.iterate(fetched):
            if not self.flow_active or self.app.consumer_generation_id != generation:
                break
            if active is None or tp in active or tp in self._buffered_partitions:
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                yield tp, to_message(tp, record)

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's drain loop, with dense partitions delivered strictly in order; those of a topic with a
        feed as one run per partition and fetch."""
        callback = self.callback
        consumer_should_stop = cast(Service, self)._stopped.is_set
        fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
        read_offset = self._read_offset
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        transport = cast(OrderedTransport, self.transport)
        drop_every, clear_every = transport.drop_every, transport.clear_every
        feeds = transport.feeds
        runs = self._runs
        flow_control = self.app.flow_control
        fresh = 0
        cleared_to: dict[TP, int] = {}  # the fault hook `clear_every`: the highest offset counted, per partition
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                got, active = await self._fetch(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                singles = self._take_runs(got, active, clear_every, drop_every) if got else {}
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                async for tp, message in self._messages(singles, active):
                    since_yield += 1
                    if since_yield > 100:
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset = message.offset
                    dense = self.dense(message.topic)
                    run = None
                    if dense:
                        if (message.generation_id != self.app.consumer_generation_id
                                or not flow_control.is_active()):
                            continue  # the agent's stream would skip it unacked; read it again later
                        run = runs.get(tp)
                        owed = run[-1].offset + 1 if run else self.owed(tp)
                        if owed is None:
                            self._first_read[tp] = owed = offset  # no commit yet: reading starts here
                        if offset < owed:
                            continue  # delivered already, from a batch fetched before a seek
                        if offset > owed:
                            if run:  # what came before the hole first (the seek drops a run not delivered)
                                await self._hand_over((tp,))
                                owed = self.owed(tp)
                            if owed is not None and offset > owed:
                                await self._rewind(tp, owed, offset)
                            continue
                        self._rewinding.pop(tp, None)
                        self._counted += 1
                        if drop_every and self._counted % drop_every == 0:
                            continue  # injected fault: lost like a record fetched during a rebalance
                        first_time = clear_every and offset > cleared_to.get(tp, -1)
                        if first_time:
                            # counted once per offset: a clear makes its partition read again from what was
                            # committed, and counting those records too would clear again before a commit
                            # could land (a livelock of the test hook, not of the consumer)
                            cleared_to[tp] = offset
                            fresh += 1
                        if first_time and fresh % clear_every == 0:
                            # injected fault: buffers emptied mid-delivery, as when the flow resumes (the
                            # runs gathered before this record are delivered first, as they would have been)
                            await self._hand_over(list(runs))
                            run = None
                            if offset != self.owed(tp):
                                continue  # overtaken meanwhile: read again from what is owed
                            asyncio.get_running_loop().call_soon(flow_control.clear)
                    else:
                        r_offset = read_offset[tp]
                        if r_offset is not None and offset < r_offset:
                            continue
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    if dense and message.topic in feeds:
                        if run:
                            run.append(message)
                        else:
                            runs[tp] = [message]
                        read_offset[tp] = offset
                        continue
                    delivery = callback(message)
                    if dense:
                        self._in_flight = [message]
                    try:
                        outcome = await self.wait_first(delivery, self.suspend_flow.wait())
                    finally:
                        self._in_flight = []
                    if dense:
                        if delivery in outcome.done and message.generation_id != STALE:
                            self._owed[tp] = offset + 1
                            self._note(tp, offset, "delivered", message.generation_id)
                        else:  # not delivered, or overtaken by a clear or seek: a late put is skipped
                            message.generation_id = STALE
                            self._note(tp, offset, "stale: not delivered")
                    read_offset[tp] = offset
                await self._hand_over(list(runs))
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)


class OrderedTransport(faust_aiokafka.Transport):
    Consumer = OrderedConsumer
    feeds: dict[str, Feed]
    on_rewind: Callable[[str], None] = staticmethod(lambda topic: None)
    # Fault hooks, 0 (off) in production; only tests/streams/faulty_worker.py sets them: drop every Nth
    # dense record fetched, or empty the agents' buffers while every Nth is delivered (how Faust loses records).
    drop_every = 0
    clear_every = 0


def install(app: Any, on_rewind: Callable[[str], None]) -> None:
    """Give a Faust app the ordered consumer; before anything touches `app.consumer`.

    `on_rewind(topic)` is told of every hole found, so the worker can count them.
    """
    transport = OrderedTransport(app.conf.broker_consumer, app)
    transport.feeds = {}
    transport.on_rewind = on_rewind
    app.transport = transport


__all__ = ["Feed", "OrderedConsumer", "OrderedTransport", "feed", "install"]
