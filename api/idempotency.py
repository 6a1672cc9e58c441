"""Idempotency-Key (IETF draft-ietf-httpapi-idempotency-key-header, Stripe's behaviour) and
webhook nonces, on one PostgreSQL table (`api_requests`).

A request with a key claims the row (`INSERT ... ON CONFLICT`): the one that claims it executes,
and stores its answer; any other with the same key and the same fingerprint waits for that answer
and gets it replayed (`Idempotent-Replayed: true`); with another fingerprint it is refused. A
claim left `running` longer than the lease (its process died) may be taken over: the event ids are
derived from the key, so the pipeline's own dedup guards a second publish. 5xx and 429 answers are
not stored (the claim is released and a retry executes again); nor are refusals before execution
(400, 401, 404, 406, 413, 415), which never reach the claim.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, text

from api.events import iso
from api.problems import Problem

MAX_KEY_LENGTH = 255
IDEMPOTENCY = "idempotency"  # the scope of Idempotency-Key rows; webhooks use their door's name
LEASE = timedelta(seconds=60)


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as stored and replayed."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def storable(self) -> bool:
        return self.status < 500 and self.status != 429

    def json(self) -> Any:
        return json.loads(self.body)


def check_key(value: str | None) -> str:
    """The Idempotency-Key header, or a 400 for one missing, empty or over 255 characters."""
    if value is None:
        raise Problem(400, "the Idempotency-Key header is required", field="Idempotency-Key")
    if not value.strip():
        raise Problem(400, "the Idempotency-Key header is empty", field="Idempotency-Key")
    if len(value) > MAX_KEY_LENGTH:
        raise Problem(400, f"the Idempotency-Key header is longer than {MAX_KEY_LENGTH} characters",
                      field="Idempotency-Key")
    if not value.isprintable() or not _utf8(value):
        raise Problem(400, "the Idempotency-Key header holds control characters or bytes that are not UTF-8",
                      field="Idempotency-Key")
    return value


def _utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def event_id(tenant: str, key: str) -> str:
    """The event id of the request with this key: the same for every retry, never another tenant's."""
    return "api-" + hashlib.sha256(f"{tenant}\n{key}".encode()).hexdigest()[:32]


def _canonical(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def fingerprint(method: str, path: str, published: list[tuple[str, Any]]) -> str:
    """What "the same request" means: method, path and the events the body maps to (key order,
    spacing and 10 vs 10.00 do not matter; another value, field or path does). Hashing the mapped
    events, never the raw JSON, keeps it bounded: they passed their schemas, every number in range."""
    records = [[topic, _canonical(item.record)] for topic, item in published]
    canon = json.dumps(records, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(f"{method} {path}\n{canon}".encode()).hexdigest()


def raw_fingerprint(body: bytes) -> str:
    """For webhooks: the raw bytes the signature covers."""
    return hashlib.sha256(body).hexdigest()


# -- the decision, pure ----------------------------------------------------------------------------
EXECUTE, REPLAY, MISMATCH, IN_FLIGHT = "execute", "replay", "mismatch", "in-flight"


def decide(claimed: bool, row: dict | None, fp: str) -> str:
    """What a request does given the outcome of its claim and the row it found."""
    if claimed:
        return EXECUTE
    if row is None or row["state"] == "released":  # released or pruned meanwhile: claim again
        return IN_FLIGHT
    if row["fingerprint"] != fp:
        return MISMATCH
    return REPLAY if row["state"] == "done" else IN_FLIGHT


# -- the table ---------------------------------------------------------------------------------------
def claim(engine: Engine, tenant: str, scope: str, key: str, fp: str, retention: timedelta) -> tuple[bool, dict | None]:
    """Claim the key: a new row, one past its retention, one released (5xx, 429), or one still
    running past its lease (its process died). (True, {"event_time"}) when claimed, the row's
    event time kept for the same request; else (False, the row)."""
    params = {"t": tenant, "s": scope, "k": key, "f": fp, "keep": retention, "lease": LEASE}
    with engine.begin() as conn:
        got = conn.execute(text("""
            INSERT INTO api_requests AS r (tenant_id, scope, request_key, fingerprint, state, claimed_at, event_time,
                                           expires_at)
            VALUES (:t, :s, :k, :f, 'running', now(), now(), now() + :keep)
            ON CONFLICT (tenant_id, scope, request_key) DO UPDATE
              SET fingerprint = EXCLUDED.fingerprint, state = 'running', claimed_at = now(),
                  event_time = CASE WHEN r.expires_at < now() OR r.fingerprint <> EXCLUDED.fingerprint
                                    THEN now() ELSE r.event_time END,
                  expires_at = EXCLUDED.expires_at, response_status = NULL, response_headers = NULL,
                  response_body = NULL
              WHERE r.expires_at < now() OR r.state = 'released'
                 OR (r.state = 'running' AND r.claimed_at < now() - :lease AND r.fingerprint = EXCLUDED.fingerprint)
            RETURNING event_time"""), params).first()
        if got is not None:
            return True, {"event_time": got[0]}
        row = conn.execute(text("""SELECT fingerprint, state, response_status, response_headers, response_body
                                   FROM api_requests WHERE tenant_id = :t AND scope = :s AND request_key = :k"""),
                           params).mappings().first()
    return False, dict(row) if row is not None else None


def store(engine: Engine, tenant: str, scope: str, key: str, answer: Answer) -> None:
    with engine.begin() as conn:
        conn.execute(text("""UPDATE api_requests SET state = 'done', response_status = :st, response_headers = :h,
                             response_body = :b WHERE tenant_id = :t AND scope = :s AND request_key = :k"""),
                     {"t": tenant, "s": scope, "k": key, "st": answer.status, "h": json.dumps(answer.headers),
                      "b": answer.body})


def release(engine: Engine, tenant: str, scope: str, key: str) -> None:
    """Nothing stored (a 5xx or 429): the next request with the key executes, at the same event time."""
    with engine.begin() as conn:
        conn.execute(text("""UPDATE api_requests SET state = 'released' WHERE tenant_id = :t AND scope = :s
                             AND request_key = :k AND state = 'running'"""), {"t": tenant, "s": scope, "k": key})


def prune(engine: Engine, batch: int = 5000) -> int:
    """Delete expired rows (in batches, so a big backlog never holds a long lock); returns how many."""
    total = 0
    while True:
        with engine.begin() as conn:
            n = conn.execute(text("""DELETE FROM api_requests WHERE ctid IN (
                                         SELECT ctid FROM api_requests WHERE expires_at < now() LIMIT :n)"""),
                             {"n": batch}).rowcount
        total += n
        if n < batch:
            return total


def stored_answer(row: dict) -> Answer:
    return Answer(row["response_status"], bytes(row["response_body"] or b""),
                  json.loads(row["response_headers"] or "{}"))


# -- the flow ------------------------------------------------------------------------------------------
Run = Callable[..., Awaitable[Any]]  # Database.run


@dataclass
class Idempotency:
    run: Run
    retention: timedelta
    wait: float  # how long a duplicate waits for the first request's answer
    poll: float = 0.05

    async def answer(self, tenant: str, scope: str, key: str, fp: str, execute: Callable[[str], Awaitable[Answer]],
                     mismatch: Problem, refresh: Callable[[Answer], Awaitable[Answer | None]] | None = None
                     ) -> tuple[Answer, bool]:
        """(answer, replayed): execute once per key, replay for the same request, refuse another.
        `execute(at)` gets the ISO time of the claim (the `timestamp` of events whose body names none).
        `refresh` may bring a stored answer up to date (a 202 whose outcome is known by now)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        delay = self.poll
        while True:
            claimed, row = await self.run(claim, tenant, scope, key, fp, self.retention)
            what = decide(claimed, row, fp)
            if what == EXECUTE:
                at = iso(row["event_time"])  # type: ignore[index]
                return await self._execute(tenant, scope, key, lambda: execute(at)), False  # noqa: B023 (awaited here)
            if what == MISMATCH:
                raise mismatch
            if what == REPLAY:
                stored = stored_answer(row)  # type: ignore[arg-type]
                if refresh is not None:
                    fresh = await refresh(stored)
                    if fresh is not None and fresh != stored:
                        await self.run(store, tenant, scope, key, fresh)
                        stored = fresh
                return stored, True
            if loop.time() >= deadline:
                raise Problem(409, "a request with this key is still being processed; retry later",
                              headers={"Retry-After": "1"})
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    async def _execute(self, tenant: str, scope: str, key: str, execute: Callable[[], Awaitable[Answer]]) -> Answer:
        try:
            result = await execute()
        except BaseException:
            await self.run(release, tenant, scope, key)
            raise
        if result.storable:
            await self.run(store, tenant, scope, key, result)
        else:
            await self.run(release, tenant, scope, key)
        return result
