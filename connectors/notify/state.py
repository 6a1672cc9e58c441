"""The delivery state in PostgreSQL: one `webhook_deliveries` row per (subscription, SKU).

- ingest (in the consumer's batch transaction, with the consumed offsets): the level becomes the
  row's pending one only if its stock.levels offset is newer than both the pending and the delivered
  one, and it is not the same level again (same event_id). So per (subscription, SKU) only the
  newest level waits, and a level older than one already delivered is never sent. Offsets compare
  because a SKU's key keeps it on one partition.
- claim: due rows are taken with `FOR UPDATE SKIP LOCKED` and leased (`lease_until` past the
  request's timeout), so one (subscription, SKU) has at most one request in flight across all
  notifiers, and a notifier killed mid-request leaves rows that are tried again when the lease ends.
- results: a success marks the sent level delivered and clears it unless a newer one arrived
  meanwhile (then due at once); a failure schedules the next try; a data error or a dead letter
  writes a `webhook_failures` row. Every update is conditional on the row still holding that level
  or a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from sqlalchemy import Connection, text

_UPSERT = text("""
    INSERT INTO webhook_deliveries AS d (subscription_id, sku, tenant_id, partition, pending_offset, pending_event_id,
                                         pending_body, pending_record_ms, next_attempt_at)
    SELECT v.sub, v.sku, v.tenant, v.part, v.off, v.eid, v.body, v.ms, now()
      FROM unnest(CAST(:subs AS text[]), CAST(:skus AS text[]), CAST(:tenants AS text[]), CAST(:parts AS int[]),
                  CAST(:offs AS bigint[]), CAST(:eids AS text[]), CAST(:bodies AS text[]), CAST(:ms AS bigint[]))
           AS v(sub, sku, tenant, part, off, eid, body, ms)
    ON CONFLICT (subscription_id, sku) DO UPDATE SET
           partition = excluded.partition, pending_offset = excluded.pending_offset,
           pending_event_id = excluded.pending_event_id, pending_body = excluded.pending_body,
           pending_record_ms = excluded.pending_record_ms,
           next_attempt_at = coalesce(d.next_attempt_at, excluded.next_attempt_at)
     WHERE excluded.pending_offset > greatest(coalesce(d.pending_offset, -1), coalesce(d.delivered_offset, -1))
       AND excluded.pending_event_id IS DISTINCT FROM coalesce(d.pending_event_id, d.delivered_event_id)
""")

_CLAIM = text("""
    WITH due AS (
        SELECT subscription_id, sku FROM webhook_deliveries
         WHERE pending_offset IS NOT NULL AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until <= now())
         ORDER BY next_attempt_at LIMIT :n FOR UPDATE SKIP LOCKED)
    UPDATE webhook_deliveries AS d SET lease_until = now() + make_interval(secs => :lease)
      FROM due, webhook_subscriptions AS s
     WHERE d.subscription_id = due.subscription_id AND d.sku = due.sku AND s.subscription_id = d.subscription_id
    RETURNING d.subscription_id, d.sku, d.tenant_id, s.url, s.secret_sealed, s.secret_from_tenant, d.pending_offset,
              d.pending_event_id, d.pending_body, d.pending_record_ms, d.attempts, d.first_failed_at, now(),
              s.allow_private
""")

# Sent level delivered; a newer pending level stays and is due now.
_DELIVERED = text("""
    UPDATE webhook_deliveries AS d SET
           delivered_offset = v.off, delivered_event_id = v.eid, delivered_at = now(),
           pending_offset = CASE WHEN d.pending_offset = v.off THEN NULL ELSE d.pending_offset END,
           pending_event_id = CASE WHEN d.pending_offset = v.off THEN NULL ELSE d.pending_event_id END,
           pending_body = CASE WHEN d.pending_offset = v.off THEN NULL ELSE d.pending_body END,
           pending_record_ms = CASE WHEN d.pending_offset = v.off THEN NULL ELSE d.pending_record_ms END,
           next_attempt_at = CASE WHEN d.pending_offset = v.off THEN NULL ELSE now() END,
           attempts = 0, first_failed_at = NULL, last_error = NULL, lease_until = NULL
      FROM unnest(CAST(:subs AS text[]), CAST(:skus AS text[]), CAST(:offs AS bigint[]), CAST(:eids AS text[]))
           AS v(sub, sku, off, eid)
     WHERE d.subscription_id = v.sub AND d.sku = v.sku AND d.pending_offset >= v.off
       AND (d.delivered_offset IS NULL OR d.delivered_offset < v.off)
""")

# Not retried (data error, rejected) or given up (dead letter): the sent level is dropped; a newer one
# starts afresh, due now.
_DROPPED = text("""
    UPDATE webhook_deliveries AS d SET
           pending_offset = CASE WHEN d.pending_offset = :off THEN NULL ELSE d.pending_offset END,
           pending_event_id = CASE WHEN d.pending_offset = :off THEN NULL ELSE d.pending_event_id END,
           pending_body = CASE WHEN d.pending_offset = :off THEN NULL ELSE d.pending_body END,
           pending_record_ms = CASE WHEN d.pending_offset = :off THEN NULL ELSE d.pending_record_ms END,
           next_attempt_at = CASE WHEN d.pending_offset = :off THEN NULL ELSE now() END,
           attempts = 0, first_failed_at = NULL, last_error = :err, lease_until = NULL
     WHERE d.subscription_id = :sub AND d.sku = :sku AND d.pending_offset >= :off
""")

# Retried: the next try at `delay` from now, but never later than the dead-letter age (so the last
# try is made at that age, and fails into the dead letter).
_RETRY = text("""
    UPDATE webhook_deliveries AS d SET
           attempts = d.attempts + 1, first_failed_at = coalesce(d.first_failed_at, now()), last_error = :err,
           lease_until = NULL,
           next_attempt_at = least(now() + make_interval(secs => :delay),
                                   coalesce(d.first_failed_at, now()) + make_interval(secs => :max_age))
     WHERE d.subscription_id = :sub AND d.sku = :sku AND d.pending_offset >= :off
""")

_FAILURE = text("""
    INSERT INTO webhook_failures (tenant_id, subscription_id, url, sku, event_id, kind, status, error, attempts, body,
                                  first_failed_at)
    VALUES (:tenant, :sub, :url, :sku, :eid, :kind, :status, :err, :attempts, :body, :first)
    ON CONFLICT (subscription_id, event_id, kind) DO NOTHING
""")

# The endpoint is back (breaker closed): everything waiting for it goes now.
_RELEASE = text("""
    UPDATE webhook_deliveries AS d SET next_attempt_at = now()
      FROM webhook_subscriptions AS s
     WHERE s.subscription_id = d.subscription_id AND s.url = :url AND d.pending_offset IS NOT NULL
       AND d.next_attempt_at > now()
""")


@dataclass(frozen=True, slots=True)
class Level:
    """A stock.levels record for one subscription, ready to upsert."""
    subscription_id: str
    sku: str
    tenant_id: str
    partition: int
    offset: int
    event_id: str
    body: str
    record_ms: int


@dataclass(slots=True)
class Claim:
    subscription_id: str
    sku: str
    tenant_id: str
    url: str
    secret_sealed: bytes | None
    secret_from_tenant: bool
    offset: int
    event_id: str
    body: str
    record_ms: int
    attempts: int
    first_failed_at: datetime | None
    db_now: datetime
    allow_private: bool = False


@dataclass(slots=True)
class Outcome:
    """What one try came to. kind: delivered | retry | data_error | rejected | dead_letter."""
    claim: Claim
    kind: str
    error: str = ""
    status: int | None = None
    delay: float = 0.0  # retry: seconds to the next try


def upsert_pending(conn: Connection, levels: Sequence[Level]) -> None:
    if not levels:
        return
    conn.execute(_UPSERT, {"subs": [x.subscription_id for x in levels], "skus": [x.sku for x in levels],
                           "tenants": [x.tenant_id for x in levels], "parts": [x.partition for x in levels],
                           "offs": [x.offset for x in levels], "eids": [x.event_id for x in levels],
                           "bodies": [x.body for x in levels], "ms": [x.record_ms for x in levels]})


def claim_due(conn: Connection, n: int, lease: float) -> list[Claim]:
    rows = conn.execute(_CLAIM, {"n": n, "lease": lease}).all()
    return [Claim(r[0], r[1], r[2], r[3], bytes(r[4]) if r[4] is not None else None, r[5], r[6], r[7], r[8],
                  r[9] or 0, r[10], r[11], r[12], r[13]) for r in rows]


def record(conn: Connection, outcomes: Sequence[Outcome], max_age: float) -> None:
    delivered = [o.claim for o in outcomes if o.kind == "delivered"]
    if delivered:
        conn.execute(_DELIVERED, {"subs": [c.subscription_id for c in delivered], "skus": [c.sku for c in delivered],
                                  "offs": [c.offset for c in delivered], "eids": [c.event_id for c in delivered]})
    for o in outcomes:
        c = o.claim
        key = {"sub": c.subscription_id, "sku": c.sku, "off": c.offset, "err": o.error}
        if o.kind == "retry":
            conn.execute(_RETRY, {**key, "delay": o.delay, "max_age": max_age})
        elif o.kind in ("data_error", "rejected", "dead_letter"):
            conn.execute(_FAILURE, {"tenant": c.tenant_id, "sub": c.subscription_id, "url": c.url, "sku": c.sku,
                                    "eid": c.event_id, "kind": o.kind, "status": o.status, "err": o.error,
                                    "attempts": c.attempts + 1, "body": c.body,
                                    "first": c.first_failed_at or c.db_now})
            conn.execute(_DROPPED, key)


def release(conn: Connection, url: str) -> None:
    """Rows of `url` waiting for a retry are due now (rows in flight keep their lease)."""
    conn.execute(_RELEASE, {"url": url})


def pending_counts(conn: Connection) -> dict[str, tuple[int, int]]:
    """tenant -> (levels waiting to be delivered, of which retries after a failure)."""
    rows = conn.execute(text("""
        SELECT tenant_id, count(*), count(*) FILTER (WHERE attempts > 0) FROM webhook_deliveries
         WHERE pending_offset IS NOT NULL GROUP BY tenant_id""")).all()
    return {t: (n, r) for t, n, r in rows}


def failures(conn: Connection, tenant: str, limit: int = 100) -> list[dict]:
    rows = conn.execute(text("""
        SELECT failure_id, created_at, kind, status, subscription_id, url, sku, event_id, attempts, error, body
          FROM webhook_failures WHERE tenant_id = :t ORDER BY created_at DESC, failure_id DESC LIMIT :n"""),
                        {"t": tenant, "n": limit}).mappings().all()
    return [dict(r) for r in rows]
