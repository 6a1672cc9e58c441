"""The API's pure decisions: idempotency keys, fingerprints and claims, signature headers, the
timestamp window, content negotiation, the rate limit, and how outcome documents are named."""

from __future__ import annotations

import pytest

from api import answers, idempotency, negotiation, webhooks
from api.idempotency import EXECUTE, IN_FLIGHT, MISMATCH, REPLAY, decide
from api.problems import Problem
from api.ratelimit import RateLimiter


def test_idempotency_keys_missing_empty_or_too_long_are_refused():
    assert idempotency.check_key("piti:sale:S1:completed") == "piti:sale:S1:completed"
    assert idempotency.check_key("k" * 255) == "k" * 255
    for bad in (None, "", "  ", "k" * 256):
        with pytest.raises(Problem) as exc:
            idempotency.check_key(bad)
        assert exc.value.status == 400


def test_event_ids_derive_from_tenant_and_key():
    assert idempotency.event_id("t1", "k") == idempotency.event_id("t1", "k")
    assert idempotency.event_id("t1", "k") != idempotency.event_id("t2", "k")
    assert idempotency.event_id("t1", "k") != idempotency.event_id("t1", "k2")


def test_a_fingerprint_ignores_layout_but_not_content_or_path():
    from api.app import parse_json
    from api.events import FIXED_AT, order_import

    def fp(path: str, raw: bytes) -> str:
        return idempotency.fingerprint("POST", path, order_import("t1", parse_json(raw), "api-1", FIXED_AT))

    a = fp("/p", b'{"order_id": "O1", "line_items": [{"sku": "A", "quantity": 1, "unit_price": 10.00}]}')
    assert a == fp("/p", b'{"line_items": [{"unit_price": 10, "quantity": 1, "sku": "A"}],  "order_id": "O1"}')
    assert a != fp("/p", b'{"order_id": "O1", "line_items": [{"sku": "A", "quantity": 1, "unit_price": 11}]}')
    assert a != fp("/q", b'{"order_id": "O1", "line_items": [{"sku": "A", "quantity": 1, "unit_price": 10}]}')
    assert a != fp("/p", b'{"order_id": "O1", "customer_ref": "C", '
                         b'"line_items": [{"sku": "A", "quantity": 1, "unit_price": 10}]}')


def test_claim_decisions():
    row = {"fingerprint": "f", "state": "done"}
    assert decide(True, None, "f") == EXECUTE
    assert decide(False, row, "f") == REPLAY
    assert decide(False, row, "g") == MISMATCH
    assert decide(False, {**row, "state": "running"}, "f") == IN_FLIGHT
    assert decide(False, {**row, "state": "running"}, "g") == MISMATCH
    assert decide(False, None, "f") == IN_FLIGHT  # pruned meanwhile: claim again
    assert decide(False, {**row, "state": "released"}, "g") == IN_FLIGHT  # released meanwhile: claim again


def test_5xx_and_429_answers_are_not_stored():
    assert idempotency.Answer(201, b"").storable and idempotency.Answer(422, b"").storable
    assert not idempotency.Answer(429, b"").storable and not idempotency.Answer(503, b"").storable


def test_github_x_hub_signature_256_vector_passes_the_signed_door():
    secret, body = "It's a Secret to Everybody", b"Hello, World!"
    sig = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert webhooks.signed([secret], body, "sha256=" + sig, None)
    assert webhooks.signed(["old", secret], body, sig, None)  # any valid secret, e.g. during a rotation
    assert not webhooks.signed([secret], body + b" ", sig, None)
    assert not webhooks.signed([], body, sig, None)


def test_the_timestamp_window_is_300_seconds_either_way():
    from stockledger.security import sign

    now = 1_700_000_000
    for offset, ok in ((0, True), (300, True), (-300, True), (301, False), (-301, False)):
        ts = str(now + offset)
        assert webhooks.signed(["s"], b"{}", sign("s", b"{}", ts), ts, now=now) is ok
    assert not webhooks.timestamp_fresh("17e8", now)
    assert not webhooks.signed(["s"], b"{}", sign("s", b"{}"), str(now), now=now)


def test_accept_negotiation():
    offered = [negotiation.JSON, negotiation.CSV]
    assert negotiation.choose(None, offered) == negotiation.JSON
    assert negotiation.choose("*/*", offered) == negotiation.JSON
    assert negotiation.choose("text/csv", offered) == negotiation.CSV
    assert negotiation.choose("text/*;q=0.9, application/json;q=0.5", offered) == negotiation.CSV
    assert negotiation.choose("application/json;q=0, */*;q=0.1", offered) == negotiation.CSV
    assert negotiation.choose("application/xml", offered) is None
    assert negotiation.choose("text/csv", [negotiation.JSON]) is None


def test_the_rate_limit_is_a_token_bucket_per_tenant():
    clock = [0.0]
    limiter = RateLimiter(rate=2, burst=3, clock=lambda: clock[0])
    assert [limiter.take("a") for _ in range(4)] == [0, 0, 0, 1]
    assert limiter.take("b") == 0  # another tenant has its own bucket
    clock[0] += 0.5
    assert limiter.take("a") == 0 and limiter.take("a") == 1
    assert RateLimiter(rate=0, burst=1).take("a") == 0  # off


def test_outcome_documents_are_named_by_kind():
    assert answers.documents(["INV-S1", "PAY-S1-1", "PAY-S1-2", "JE-INV-S1"]) == {
        "invoice_id": "INV-S1", "journal_entry_id": "JE-INV-S1", "payment_ids": ["PAY-S1-1", "PAY-S1-2"]}
    assert answers.documents(["CN-R1", "JE-CN-R1"]) == {"credit_note_id": "CN-R1", "journal_entry_id": "JE-CN-R1",
                                                        "payment_ids": []}


def test_durations():
    from stockledger.config import parse_duration

    assert parse_duration("24h") == 86400
    assert parse_duration("0") == 0
    assert parse_duration("90s") == 90
    with pytest.raises(ValueError):
        parse_duration("soon")
