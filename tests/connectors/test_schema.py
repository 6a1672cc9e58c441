"""The schema comes from the migrations, matches stockledger/db/tables.py, and refuses books that do not add up."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from stockledger.db import migrate, tables

NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def books(sink_db):
    url, engine = sink_db
    migrate.upgrade(engine)
    return engine


def test_upgrade_reaches_head_and_matches_the_table_definitions(sink_db):
    _, engine = sink_db
    assert migrate.current(engine) is None
    assert migrate.upgrade(engine) == migrate.head() == "0007"
    assert migrate.upgrade(engine) == "0007"  # again: nothing to do
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": migrate.VERSION_TABLE,
                                                     "compare_server_default": True})
        assert compare_metadata(ctx, tables.metadata) == []
    insp = inspect(engine)
    for table in tables.metadata.sorted_tables:
        declared = {c.name for c in table.constraints if c.__class__.__name__ == "CheckConstraint"}
        assert {c["name"] for c in insp.get_check_constraints(table.name)} == declared, table.name
    with engine.connect() as conn:
        trigger = conn.execute(text("""SELECT tgdeferrable, tginitdeferred FROM pg_trigger
                                       WHERE tgname = :n"""), {"n": tables.JOURNAL_BALANCE_TRIGGER}).one()
    assert tuple(trigger) == (True, True)


def test_workers_starting_together_migrate_once(sink_db):
    _, engine = sink_db
    results, errors = [], []

    def start() -> None:
        try:
            results.append(migrate.upgrade(engine))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [migrate.head()] * 3


def _entry(conn, entry_id: str, lines: list[tuple[str, str, str]], tenant: str = "t1") -> None:
    conn.execute(text("""INSERT INTO journal_entries (tenant_id, entry_id, document_id, document_type, currency,
                         posted_at) VALUES (:t, :e, 'INV-1', 'INVOICE', 'USD', :now)"""),
                 {"t": tenant, "e": entry_id, "now": NOW})
    for n, (account, debit, credit) in enumerate(lines, 1):  # one statement per line: checked at commit
        conn.execute(text("INSERT INTO journal_lines VALUES (:t, :e, :n, :a, :d, :c)"),
                     {"t": tenant, "e": entry_id, "n": n, "a": account, "d": Decimal(debit), "c": Decimal(credit)})


def test_the_database_refuses_an_unbalanced_journal_entry_at_commit(books):
    with books.begin() as conn:
        _entry(conn, "JE-OK", [("1100", "116.0000", "0"), ("4000", "0", "100.0000"), ("2100", "0", "16.0000")])
    with pytest.raises(IntegrityError, match="JE-BAD .*does not balance: debits - credits = 0.0001"):
        with books.begin() as conn:
            _entry(conn, "JE-BAD", [("1100", "116.0000", "0"), ("4000", "0", "99.9999"), ("2100", "0", "16.0000")])
    with books.connect() as conn:
        assert conn.execute(text("SELECT entry_id FROM journal_entries")).scalars().all() == ["JE-OK"]
        assert conn.execute(text("SELECT sum(debit) - sum(credit) FROM journal_lines")).scalar() == 0


def test_changing_or_removing_a_line_of_a_balanced_entry_is_refused(books):
    with books.begin() as conn:
        _entry(conn, "JE-1", [("1000", "10.00", "0"), ("4000", "0", "10.00")])
    for statement in ("UPDATE journal_lines SET credit = 9 WHERE line_no = 2",
                      "DELETE FROM journal_lines WHERE line_no = 2"):
        with pytest.raises(IntegrityError, match="does not balance"):
            with books.begin() as conn:
                conn.execute(text(statement))
    with books.begin() as conn:  # the whole entry may go (its lines cascade)
        conn.execute(text("DELETE FROM journal_entries WHERE entry_id = 'JE-1'"))


@pytest.mark.parametrize("lines,constraint", [
    ([("1000", "-5", "0"), ("4000", "0", "-5")], "journal_lines_amounts_not_negative"),
    ([("1000", "5", "5")], "journal_lines_one_sided"),
])
def test_journal_lines_are_one_sided_and_not_negative(books, lines, constraint):
    with pytest.raises(IntegrityError, match=constraint):
        with books.begin() as conn:
            _entry(conn, "JE-X", lines)


def test_money_keeps_four_decimals_exactly(books):
    with books.begin() as conn:
        _entry(conn, "JE-P", [("1000", "0.0001", "0"), ("4000", "0", "0.0001")])
        got = conn.execute(text("SELECT debit FROM journal_lines WHERE line_no = 1")).scalar()
    assert isinstance(got, Decimal) and got == Decimal("0.0001")


def test_revisions_0007_and_0006_go_down_to_0005_and_up_again(sink_db):
    """Account roles (0007), shipments, price sources and the fulfilment views (0006) come and go with their
    revisions."""
    from alembic import command

    _, engine = sink_db
    assert migrate.upgrade(engine) == "0007"
    cfg = migrate._config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005")
        conn.commit()
    insp = inspect(engine)
    assert migrate.current(engine) == "0005"
    assert not insp.has_table("shipments") and "price_source" not in {c["name"] for c in insp.get_columns(
        "invoice_lines")} and "books_fulfilment" not in insp.get_view_names()
    assert "role" not in {c["name"] for c in insp.get_columns("journal_lines")}
    assert migrate.upgrade(engine) == "0007"
    insp = inspect(engine)
    assert insp.has_table("shipment_lines") and {"books_fulfilment", "books_fulfilment_exceptions"} <= set(
        insp.get_view_names())
    assert "role" in {c["name"] for c in insp.get_columns("journal_lines")}
