"""The idempotency table in the test stack's PostgreSQL: claims, stored answers, expiry and pruning."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from api import idempotency as idem
from api.idempotency import Answer

WEEK = timedelta(days=7)


def is_claim(result: tuple) -> bool:
    return result[0] is True and set(result[1]) == {"event_time"}


def test_a_key_is_claimed_once_answered_and_replayed(api_engine, tenant):
    assert is_claim(idem.claim(api_engine, tenant, "idempotency", "k1", "fp", WEEK))
    claimed, row = idem.claim(api_engine, tenant, "idempotency", "k1", "fp", WEEK)
    assert (claimed, row["state"], idem.decide(claimed, row, "fp")) == (False, "running", idem.IN_FLIGHT)
    answer = Answer(201, b'{"x": 1}', {"Content-Type": "application/json", "Location": "/x"})
    idem.store(api_engine, tenant, "idempotency", "k1", answer)
    claimed, row = idem.claim(api_engine, tenant, "idempotency", "k1", "fp", WEEK)
    assert idem.decide(claimed, row, "fp") == idem.REPLAY and idem.stored_answer(row) == answer
    assert idem.decide(*idem.claim(api_engine, tenant, "idempotency", "k1", "other", WEEK), "other") == idem.MISMATCH
    # another tenant or scope with the same key is another row
    assert is_claim(idem.claim(api_engine, tenant + "-b", "idempotency", "k1", "fp", WEEK))
    assert is_claim(idem.claim(api_engine, tenant, "erp", "k1", "fp", WEEK))


def test_a_released_or_abandoned_claim_executes_again_at_the_same_event_time(api_engine, tenant):
    _, first = idem.claim(api_engine, tenant, "idempotency", "k2", "fp", WEEK)
    idem.release(api_engine, tenant, "idempotency", "k2")  # a 5xx: nothing stored
    again, row = idem.claim(api_engine, tenant, "idempotency", "k2", "fp", WEEK)
    assert again and row["event_time"] == first["event_time"]
    # a claim whose process died: taken over after the lease, at the same time, by the same request only
    with api_engine.begin() as conn:
        conn.execute(text("UPDATE api_requests SET claimed_at = now() - interval '61 seconds' "
                          "WHERE tenant_id = :t AND request_key = 'k2'"), {"t": tenant})
    assert idem.decide(*idem.claim(api_engine, tenant, "idempotency", "k2", "other", WEEK), "other") == idem.MISMATCH
    again, row = idem.claim(api_engine, tenant, "idempotency", "k2", "fp", WEEK)
    assert again and row["event_time"] == first["event_time"]


def test_expired_records_are_new_again_and_pruned(api_engine, tenant):
    idem.claim(api_engine, tenant, "idempotency", "keep", "fp", WEEK)
    _, first = idem.claim(api_engine, tenant, "idempotency", "old", "fp", timedelta(seconds=-1))
    idem.store(api_engine, tenant, "idempotency", "old", Answer(201, b"{}"))
    # past its retention a key is new again, whatever its body, at a new time
    again, row = idem.claim(api_engine, tenant, "idempotency", "old", "fp2", timedelta(seconds=-1))
    assert again and row["event_time"] > first["event_time"]
    assert idem.prune(api_engine) >= 1
    with api_engine.connect() as conn:
        keys = conn.execute(text("SELECT request_key FROM api_requests WHERE tenant_id = :t ORDER BY 1"),
                            {"t": tenant}).scalars().all()
    assert keys == ["keep"]
