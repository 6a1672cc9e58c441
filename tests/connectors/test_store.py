"""The sink's database side on its own: fenced offsets, finding the records the database refuses."""

from __future__ import annotations

from decimal import Decimal

import pytest

from connectors import store
from connectors.rows import to_rows
from stockledger.db import migrate
from tests.connectors import support


@pytest.fixture
def engine(sink_db):
    _, engine = sink_db
    migrate.upgrade(engine)
    return engine


def test_offsets_move_only_from_where_the_worker_read_them(engine):
    keys = [("t", 0), ("t", 1)]
    with engine.begin() as conn:
        assert store.ensure_offsets(conn, "g", keys) == {("t", 0): 0, ("t", 1): 0}
        assert store.advance_offsets(conn, "g", {("t", 0): (0, 10), ("t", 1): (0, 5)}) == set()
    with engine.begin() as conn:  # a worker still at 0 on partition 1 (it lost it, or it was rewound)
        assert store.advance_offsets(conn, "g", {("t", 0): (10, 20), ("t", 1): (0, 7)}) == {("t", 1)}
        conn.rollback()
    with engine.begin() as conn:
        assert store.read_offsets(conn, "g", keys) == {("t", 0): 10, ("t", 1): 5}
        assert store.ensure_offsets(conn, "other", keys[:1]) == {("t", 0): 0}  # per group


def test_write_isolating_finds_exactly_the_refused_records_and_writes_the_rest(engine):
    records = []
    for n in range(37):
        inv = support.invoice("t1", n)
        entry = support.invoice_entry(inv)
        if n in (3, 4, 30):
            entry["lines"][0]["debit"] += Decimal("0.01")  # unbalanced: refused at the deferred check
        if n == 17:
            inv["lines"][0]["quantity"] = 0  # invoice_lines_quantity_positive
        records += [to_rows("ledger.invoices", inv), to_rows("ledger.journal", entry)]
    with engine.begin() as conn:
        refused = store.write_isolating(conn, records)
    assert sorted(r.index for r in refused) == [7, 9, 34, 61]
    assert "invoice_lines_quantity_positive" in next(r.reason for r in refused if r.index == 34)
    assert all("SQLSTATE 23" in r.reason for r in refused)
    got = support.books(engine, "t1")
    assert len(got["invoices"]) == 36 and len(got["journal_entries"]) == 34
    assert support.unbalanced_entries(engine, "t1") == []


def test_only_data_errors_are_the_records_fault(engine):
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError) as missing_table:
        with engine.begin() as conn:
            conn.execute(text("SELECT * FROM no_such_table"))
    assert not store.is_record_error(missing_table.value)  # the database's state: retried, never dead-lettered
    with pytest.raises(DBAPIError) as overflow:
        with engine.begin() as conn:
            conn.execute(text("SELECT CAST(1e20 AS numeric(18,4))"))
    assert store.is_record_error(overflow.value)
