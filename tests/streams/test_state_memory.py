"""A store's memory does not grow with the events folded (issue 17): the decoded-value cache holds the hot keys
only, within its bounds, and RocksDB's memory is one shared block cache and memtables of a fixed size.

Issue 17's soak found the cache keeping every sale's claimed document ("documents" keys, written once per sale)
until it reached 50,000 keys, about 3 KiB of heap each, and the heap stayed with the process after the cache was
emptied. Real parts: the fold's shell (`fold_entry`, `View`), a `PartitionStore` on RocksDB and the worker's
`Outbox` writing its changelog to the test stack's Kafka.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import streams.state as state_mod
from stockledger.topics import ensure_topics, state_topic
from streams.core.fold import FoldConfig
from streams.fold import fold_entry
from streams.outbox import Outbox
from streams.state import SEP, PartitionStore, View, _stored_size

from .core.foldkit import catalog, delta, sale
from .test_fold_isolation import LocalCodec

SKUS = [f"M{n}" for n in range(5)]


def tables(store: PartitionStore) -> dict[str, int]:
    out: dict[str, int] = {}
    for key in store._cache:  # noqa: SLF001 (what the cache holds is the subject of this test)
        out[key.split(SEP, 1)[0]] = out.get(key.split(SEP, 1)[0], 0) + 1
    return out


def test_the_decoded_value_cache_holds_only_the_hot_keys_however_many_sales(stack, settings, tmp_path, monkeypatch):
    mine = dataclasses.replace(settings, app_id=f"memory-{uuid.uuid4().hex[:8]}")
    ensure_topics(mine.kafka_config(), 1, [state_topic(mine.app_id)], compacted=(state_topic(mine.app_id),))
    store = PartitionStore(mine, tmp_path, 0, f"{mine.app_id}-tenant-log", mine.app_id)
    outbox = Outbox(mine)
    codec, config = LocalCodec(), FoldConfig()
    seen: list[dict[str, int]] = []

    async def fold(events: list, end: int) -> None:
        view = View(store)
        for inp in events:
            fold_entry(view, inp, config, codec, view.encoded)
        batch = outbox.batch()
        store.write(outbox, batch, end, view.changes, view.encoded)
        await asyncio.wait_for(batch.sent(), 60)
        store.delivered(batch)
        store.next = store.committed = end  # as if committed: undo copies below it go at the next write
        cache = store._cache  # noqa: SLF001
        assert store._cache_bytes == sum(_stored_size(e) for e in cache.values())  # noqa: SLF001
        assert len(cache) <= state_mod._CACHE_MAX and store._cache_bytes <= state_mod._CACHE_BYTES  # noqa: SLF001

    async def scenario() -> None:
        await store.begin("w-memory", lambda m: None)
        store.first_frame(0)
        end = 1
        await fold([catalog("G", [{"sku": s, "price": "5.00"} for s in SKUS], event_id="cat"),
                    *(delta(s, 10**6, event_id=f"in-{s}") for s in SKUS)], end)
        for rnd in range(3):  # 3 rounds of 400 sales, 20 to a batch: the cache must be the same after each
            for b in range(20):
                end += 1
                await fold([sale(f"S{rnd}-{b}-{n}", [{"sku": SKUS[n % len(SKUS)], "quantity": 1, "unit_price": "5.00"}],
                                 event_id=f"e{rnd}-{b}-{n}") for n in range(20)], end)
            seen.append(tables(store))

    try:
        asyncio.run(scenario())
    finally:
        outbox.close()
        store.close()
    # one key per SKU in each hot table (its stock, its catalog entry, its external ref), the product group and
    # the tenant's settings (never set: remembered as absent, read by every event): 400, 800 and 1,200 sales
    # later, the same (a sale's event id, read absent, is forgotten once written)
    hot = {"stock": len(SKUS), "catalog": len(SKUS), "refs": len(SKUS), "groups": 1, "settings": 1}
    assert seen == [hot, hot, hot]


def test_every_store_shares_one_block_cache_and_memtables_of_a_fixed_size(tmp_path):
    st = state_mod
    stores = [state_mod.Rdict(str(tmp_path / f"s{n}"), options=state_mod.rocks_options()) for n in range(3)]
    try:
        value = bytes(range(256)) * 4
        for n, db in enumerate(stores):
            for i in range(20_000):  # 20 MiB each: more than a store's memtables hold
                db[f"k{n}-{i:08d}".encode()] = value
        for db in stores:
            assert db.property_int_value("rocksdb.block-cache-capacity") == state_mod.BLOCK_CACHE_BYTES
            assert db.property_int_value("rocksdb.cur-size-all-mem-tables") <= st.WRITE_BUFFER_BYTES * st.WRITE_BUFFERS
        for n, db in enumerate(stores):
            # index and filter blocks stay with the table readers (in the small shared cache they were evicted and
            # read again on most reads once the state was large): at most 2% of the bytes stored (about 0.5% here)
            written = 20_000 * (len(value) + len(f"k{n}-{0:08d}"))
            assert 0 < db.property_int_value("rocksdb.estimate-table-readers-mem") <= written // 50
        assert sum(db.property_int_value("rocksdb.cur-size-all-mem-tables") for db in stores) <= st.MEMTABLES_BYTES
        for n, db in enumerate(stores):  # what was written reads back (through the shared cache)
            assert [db[f"k{n}-{i:08d}".encode()] for i in (0, 7, 19_999)] == [value] * 3
        usage = {db.property_int_value("rocksdb.block-cache-usage") for db in stores}
        # one cache: the same figure for every store
        assert len(usage) == 1 and 0 < usage.pop() <= st.BLOCK_CACHE_BYTES
    finally:
        for db in stores:
            db.close()
