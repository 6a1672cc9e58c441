"""The sink's side of PostgreSQL: stored offsets (fenced), rows, invoice paid state, error kinds.

Everything here runs inside the caller's transaction: the caller commits the rows and the offsets
together, or neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2.extras import execute_values
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from connectors.rows import TABLE_ORDER, RecordRows

TopicPartitionKey = tuple[str, int]

PAGE_ROWS = 2000  # rows per INSERT statement

_ENSURE_OFFSETS = text("""
    INSERT INTO sink_offsets (group_id, topic, partition, next_offset)
    SELECT :g, t, p, 0 FROM unnest(CAST(:topics AS text[]), CAST(:parts AS int[])) AS x(t, p)
    ON CONFLICT DO NOTHING
""")
_READ_OFFSETS = text("""
    SELECT topic, partition, next_offset FROM sink_offsets
     WHERE group_id = :g AND (topic, partition) IN
           (SELECT t, p FROM unnest(CAST(:topics AS text[]), CAST(:parts AS int[])) AS x(t, p))
""")
# Fencing: a partition's offset moves only from the value this worker read. A worker that lost the
# partition (rebalance, pause) or whose offsets an operator rewound finds 0 rows for it and backs off.
_ADVANCE = text("""
    UPDATE sink_offsets AS s SET next_offset = v.new, updated_at = now()
      FROM unnest(CAST(:topics AS text[]), CAST(:parts AS int[]), CAST(:expected AS bigint[]),
                  CAST(:new AS bigint[])) AS v(topic, partition, expected, new)
     WHERE s.group_id = :g AND s.topic = v.topic AND s.partition = v.partition AND s.next_offset = v.expected
    RETURNING s.topic, s.partition
""")
# Two workers may touch one invoice at once (its record on one partition, a payment on another):
# serialise them per invoice, in a fixed order so that they cannot deadlock on these locks.
_LOCK_INVOICES = text("""
    SELECT count(pg_advisory_xact_lock(k)) FROM (
        SELECT DISTINCT hashtextextended(t || chr(31) || i, 0) AS k
          FROM unnest(CAST(:tenants AS text[]), CAST(:invoices AS text[])) AS x(t, i) ORDER BY 1) AS keys
""")
# An invoice's settled state from everything that settled it (SPEC 2: payments and credit notes alike):
# paid = the highest paid_after of its allocations (payments and invoices may land in any order: different
# partitions, replays); credited = its CREDIT credit notes, capped at what the payments left (the rest is the
# customer's credit: the fold's rule); status as streams.core.credit.invoice_status; first and last payment.
_SETTLE = text("""
    UPDATE invoices AS i SET paid_amount = s.paid, credited_amount = s.credited, status = s.status,
                             first_payment_at = s.first_at, last_payment_at = s.last_at
      FROM (SELECT i.tenant_id, i.invoice_id, p.paid, least(coalesce(c.total, 0), i.total - p.paid) AS credited,
                   CASE WHEN i.total - p.paid - least(coalesce(c.total, 0), i.total - p.paid) = 0
                        THEN CASE WHEN p.paid = 0 AND coalesce(c.total, 0) > 0 THEN 'CREDITED' ELSE 'PAID' END
                        WHEN p.paid > 0 OR coalesce(c.total, 0) > 0 THEN 'PARTIALLY_PAID' ELSE 'UNPAID' END
                       AS status, p.first_at, p.last_at
              FROM invoices AS i
              JOIN unnest(CAST(:tenants AS text[]), CAST(:invoices AS text[])) AS k(tenant_id, invoice_id)
                ON i.tenant_id = k.tenant_id AND i.invoice_id = k.invoice_id
              CROSS JOIN LATERAL (
                  SELECT coalesce(max(a.paid_after), 0) AS paid, min(py.received_at) AS first_at,
                         max(py.received_at) AS last_at
                    FROM payment_allocations AS a
                    JOIN payments AS py ON py.tenant_id = a.tenant_id AND py.payment_id = a.payment_id
                   WHERE a.tenant_id = i.tenant_id AND a.invoice_id = i.invoice_id) AS p
              LEFT JOIN LATERAL (
                  SELECT sum(cn.total) AS total FROM credit_notes AS cn
                   WHERE cn.tenant_id = i.tenant_id AND cn.invoice_id = i.invoice_id
                     AND cn.refund_method = 'CREDIT') AS c ON true) AS s
     WHERE i.tenant_id = s.tenant_id AND i.invoice_id = s.invoice_id
       AND (i.paid_amount, i.credited_amount, i.status, i.first_payment_at, i.last_payment_at)
           IS DISTINCT FROM (s.paid, s.credited, s.status, s.first_at, s.last_at)
""")
_CHECK_DEFERRED = text("SET CONSTRAINTS ALL IMMEDIATE")
_DEFER_AGAIN = text("SET CONSTRAINTS ALL DEFERRED")


def engine_for(url: str) -> Engine:
    """One small pool per worker; pre-ping so a connection that died with PostgreSQL is replaced."""
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


def _split(keys: Iterable[TopicPartitionKey]) -> dict[str, list]:
    keys = list(keys)
    return {"topics": [k[0] for k in keys], "parts": [k[1] for k in keys]}


def ensure_offsets(conn: Connection, group: str, keys: Sequence[TopicPartitionKey]) -> dict[TopicPartitionKey, int]:
    """The stored next offset of each partition; a partition never seen starts at 0 (the beginning)."""
    conn.execute(_ENSURE_OFFSETS, {"g": group, **_split(keys)})
    return read_offsets(conn, group, keys)


def read_offsets(conn: Connection, group: str, keys: Sequence[TopicPartitionKey]) -> dict[TopicPartitionKey, int]:
    rows = conn.execute(_READ_OFFSETS, {"g": group, **_split(keys)})
    return {(topic, part): off for topic, part, off in rows}


def advance_offsets(conn: Connection, group: str,
                    moves: dict[TopicPartitionKey, tuple[int, int]]) -> set[TopicPartitionKey]:
    """Move each partition from `expected` to `new`; returns the partitions that were not at `expected`."""
    keys = sorted(moves)
    params = {"g": group, **_split(keys), "expected": [moves[k][0] for k in keys], "new": [moves[k][1] for k in keys]}
    moved = {(topic, part) for topic, part in conn.execute(_ADVANCE, params)}
    return set(keys) - moved


def lock_invoices(conn: Connection, keys: set[tuple[str, str]]) -> None:
    if keys:
        ordered = sorted(keys)
        conn.execute(_LOCK_INVOICES, {"tenants": [k[0] for k in ordered], "invoices": [k[1] for k in ordered]})


def settle_invoices(conn: Connection, keys: set[tuple[str, str]]) -> None:
    """Derive paid, credited, status and payment times of these invoices again (_SETTLE)."""
    if keys:
        ordered = sorted(keys)
        conn.execute(_SETTLE, {"tenants": [k[0] for k in ordered], "invoices": [k[1] for k in ordered]})


def insert_rows(conn: Connection, records: Sequence[RecordRows]) -> None:
    """Every row of `records`, table by table in foreign-key order, duplicates skipped.

    Multi-row `INSERT ... VALUES (...), (...) ON CONFLICT DO NOTHING` through psycopg2's
    execute_values on the transaction's own connection: SQLAlchemy 2.0 sends an ON CONFLICT insert
    of many rows as one statement per row (measured ~6k rows/s against ~60k/s this way).
    """
    cursor = None
    for name in TABLE_ORDER:
        rows: list[dict[str, Any]] = []
        for rec in records:
            rows.extend(rec.rows.get(name, ()))
        if not rows:
            continue
        cols = list(rows[0])
        if cursor is None:
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None
            cursor = dbapi.cursor()
        execute_values(cursor, f"INSERT INTO {name} ({', '.join(cols)}) VALUES %s ON CONFLICT DO NOTHING",
                       [tuple(r[c] for c in cols) for r in rows], page_size=PAGE_ROWS)
    if cursor is not None:
        cursor.close()


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg2 error, raw or wrapped by SQLAlchemy."""
    return getattr(exc, "pgcode", None) or getattr(getattr(exc, "orig", None), "pgcode", None)


def is_record_error(exc: BaseException) -> bool:
    """The data is at fault (SQLSTATE class 22 data exception, 23 integrity): retrying cannot help.

    Anything else (connection lost, server shutting down, deadlock, a missing table) is the
    database's state, which may change: the batch is retried, never dead-lettered.
    """
    code = sqlstate(exc)
    return isinstance(exc, (DBAPIError, psycopg2.Error)) and code is not None and code[:2] in ("22", "23")


def describe(exc: BaseException) -> str:
    orig = getattr(exc, "orig", exc)
    message = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    code = sqlstate(exc)
    return f"database refused the record (SQLSTATE {code}): {message}" if code else message


@dataclass(slots=True)
class Refused:
    index: int  # position in the list given to write_isolating
    reason: str


def write_isolating(conn: Connection, records: Sequence[RecordRows]) -> list[Refused]:
    """Write all records; if the database refuses some, find them and write the rest.

    The whole list is tried in one savepoint first (the deferred balance check is forced inside it,
    so a refusal lands here and not at COMMIT). On a data error the list is halved and each half
    retried, down to single records: the refused ones come back with the reason, every other record
    is written. A healthy batch costs one savepoint; k bad records cost about 2k*log2(n) small ones.
    """
    refused: list[Refused] = []

    def attempt(lo: int, hi: int) -> None:
        try:
            with conn.begin_nested():
                insert_rows(conn, records[lo:hi])
                conn.execute(_CHECK_DEFERRED)
            conn.execute(_DEFER_AGAIN)
        except (DBAPIError, psycopg2.Error) as exc:
            if not is_record_error(exc):
                raise
            conn.execute(_DEFER_AGAIN)
            if hi - lo == 1:
                refused.append(Refused(lo, describe(exc)))
                return
            mid = (lo + hi) // 2
            attempt(lo, mid)
            attempt(mid, hi)

    if records:
        attempt(0, len(records))
    return refused
