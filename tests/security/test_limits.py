"""Issue 15, resource limits before work: hostile numbers, unknown fields, malformed headers, slow
clients and floods are 4xx problems from a real `stockledger api` process, never a 5xx, and its
memory stays bounded."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.api.support import Api, problem
from tests.security.conftest import API_PORT, new_tenant

MIB = 1024 * 1024


def rss(pid: int, field: str = "VmRSS") -> int:
    """Bytes of a process's resident memory (`VmHWM`: its peak) from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


@pytest.fixture(scope="module")
def limits_api(stack, api_engine, settings):
    """An API whose header and body timeouts are 2 s (no rate limit, no outcome wait)."""
    from tests.api.conftest import _start

    proc = _start(settings, "api-limits", API_PORT + 1, STOCKLEDGER_API_CLIENT_RATE_LIMIT="0",
                  STOCKLEDGER_API_HEADER_TIMEOUT="2", STOCKLEDGER_API_READ_TIMEOUT="2",
                  STOCKLEDGER_API_OUTCOME_WAIT="0")
    yield Api(proc.url), proc
    proc.stop()


@pytest.fixture(scope="module")
def attacker(api_engine, settings):
    import uuid

    return new_tenant(api_engine, settings, f"lim-{uuid.uuid4().hex[:8]}")


def bearer(creds, key: str) -> dict:
    return {"Authorization": f"Bearer {creds.token}", "Idempotency-Key": key}


def adjust_raw(quantity: str) -> bytes:
    return ('{"reference_id": "R1", "adjustments": [{"sku": "A", "quantity_change": ' + quantity + '}]}').encode()


def test_nan_infinity_and_huge_numbers_are_400s_naming_the_field(limits_api, attacker):
    api, _ = limits_api
    field = "adjustments[0].quantity_change"
    cases = {"NaN": "NaN is not a number", "Infinity": "Infinity is not a number",
             "-Infinity": "-Infinity is not a number", "9" * 5000: "more than 30 digits",
             "1" + "0" * 30: "more than 30 digits", "1e999999": "out of range (at most 30 digits, below 10^30)",
             "1e-999999": "out of range (at most 30 digits, below 10^30)", "1." + "1" * 40: "more than 30 digits"}
    for n, (literal, why) in enumerate(cases.items()):
        got = api.post("/api/v1/inventory/adjust", raw=adjust_raw(literal), headers=bearer(attacker, f"num-{n}"))
        assert (got.status_code, got.json()) == (400, {"type": "about:blank", "title": "Bad Request", "status": 400,
                                                       "detail": f"{field}: {why}", "field": field}), literal[:20]


def test_the_1e999999_memory_bomb_is_a_400_and_memory_stays_bounded(limits_api, attacker):
    api, proc = limits_api
    before = rss(proc.proc.pid, "VmHWM")
    junk = ", ".join(["1e999999"] * 150)
    raw = ('{"order_id": "O-BOMB", "line_items": [{"sku": "A", "quantity": 1}], "junk": [' + junk + ']}').encode()
    for n in range(20):
        got = api.post("/api/v1/orders/import", raw=raw, headers=bearer(attacker, f"bomb-{n}"))
        assert (got.status_code, got.json()["field"]) == (400, "junk[0]"), got.text
    # the same fields as plain numbers: refused as unknown, named, before any work
    raw = b'{"order_id": "O-BOMB", "line_items": [{"sku": "A", "quantity": 1, "colour": "red"}], "junk": [1, 2]}'
    got = problem(api.post("/api/v1/orders/import", raw=raw, headers=bearer(attacker, "bomb-x")), 400)
    assert (got["detail"], got["field"], got["fields"]) == ("unknown field: junk", "junk", ["junk"])
    assert rss(proc.proc.pid, "VmHWM") - before < 50 * MIB


def test_unknown_fields_of_order_import_and_adjust_are_named(limits_api, attacker):
    api, _ = limits_api
    order = {"order_id": "O-U", "line_items": [{"sku": "A", "quantity": 1, "colour": "red"}], "zz": 1, "aa": 2}
    got = problem(api.commerce(attacker, "/api/v1/orders/import", order, "unk-1"), 400)
    assert (got["detail"], got["field"], got["fields"]) == ("unknown fields: aa, zz", "aa", ["aa", "zz"])
    order = {"order_id": "O-U", "line_items": [{"sku": "A", "quantity": 1, "colour": "red"}]}
    got = problem(api.commerce(attacker, "/api/v1/orders/import", order, "unk-2"), 400)
    assert (got["detail"], got["field"]) == ("unknown field: line_items[0].colour", "line_items[0].colour")
    adjust = {"reference_id": "R", "adjustments": [{"sku": "A", "quantity_change": 1, "bin": "B1"}]}
    got = problem(api.commerce(attacker, "/api/v1/inventory/adjust", adjust, "unk-3"), 400)
    assert (got["detail"], got["field"]) == ("unknown field: adjustments[0].bin", "adjustments[0].bin")


def test_arabic_indic_digits_in_the_erp_timestamp_are_refused_not_a_500(limits_api, attacker):
    api, _ = limits_api
    body = json.dumps({"event_id": "e1", "event_type": "inventory.change",
                       "data": {"sku": "A", "new_quantity": 1}}).encode()
    now = str(int(time.time()))  # fresh, in other scripts' digits: they read as a number to int()
    arabic_indic = now.translate({ord("0") + d: 0x0660 + d for d in range(10)})
    fullwidth = now.translate({ord("0") + d: 0xFF10 + d for d in range(10)})
    for stamp in (arabic_indic, fullwidth, "1.5e9", "-1", ""):
        got = api.post(f"/webhooks/erp/{attacker.tenant}", raw=body,
                       headers={"X-ERP-Timestamp": stamp.encode("utf-8").decode("latin-1"),
                                "X-ERP-Signature": "sha256=" + "0" * 64})
        assert (got.status_code, got.json()["detail"]) == (401, "missing or invalid credentials"), stamp


def test_malformed_headers_and_strings_are_4xx_problems(limits_api, attacker):
    api, _ = limits_api
    weird = "k\u00e9y".encode("utf-8").decode("latin-1")  # bytes that are not the header's ASCII
    got = api.post("/api/v1/orders/import", raw=b"{}", headers={"Authorization": "Bearer " + weird})
    assert problem(got, 401)["detail"] == "missing or invalid credentials"
    got = api.post("/api/v1/orders/import", raw=b"{}", headers={**bearer(attacker, "x"), "Idempotency-Key": "a\tb"})
    assert problem(got, 400)["field"] == "Idempotency-Key"
    raw = b'{"order_id": "O-S", "line_items": [{"sku": "\\ud800", "quantity": 1}]}'
    got = problem(api.post("/api/v1/orders/import", raw=raw, headers=bearer(attacker, "sur-1")), 400)
    assert got["field"] == "line_items[0].sku"
    got = api.post("/webhooks/erp/..%2Fx", raw=b"{}", headers={"X-ERP-Signature": "0"})
    assert problem(got, 401)["detail"] == "missing or invalid credentials"


def _connect(api: Api) -> socket.socket:
    host, port = api.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (bounded by the socket's 30 s timeout: an error if it never does)."""
    out = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return out
        out += chunk


def test_incomplete_headers_are_cut_by_the_header_timeout(limits_api):
    api, _ = limits_api
    with _connect(api) as sock:
        sock.sendall(b"POST /api/v1/orders/import HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
        assert _read_all(sock) == b""  # closed by the server, nothing answered


def test_a_body_that_never_arrives_is_a_408(limits_api, attacker):
    api, _ = limits_api
    with _connect(api) as sock:
        sock.sendall(b"POST /api/v1/inventory/adjust HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Authorization: Bearer " + attacker.token.encode() + b"\r\nIdempotency-Key: slow-1\r\n"
                     b"Content-Length: 100\r\nConnection: close\r\n\r\n{\"reference_id\"")
        head, _, body = _read_all(sock).partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 408 Request Timeout"
    assert b"Content-Type: application/problem+json" in head
    assert json.loads(body) == {"type": "about:blank", "title": "Request Timeout", "status": 408,
                                "detail": "the body was not sent in time"}


def test_the_client_rate_limit_applies_before_authentication(stack, api_engine, settings):
    from tests.api.conftest import _start

    proc = _start(settings, "api-throttled", API_PORT + 2, STOCKLEDGER_API_CLIENT_RATE_LIMIT="0.01",
                  STOCKLEDGER_API_CLIENT_RATE_BURST="3")
    try:
        api = Api(proc.url)
        # _start's readiness probe took one token; two more unauthenticated requests get their 401
        for _ in range(2):
            assert problem(api.get("/api/v1/stock/A", headers={"Authorization": "Bearer nope"}), 401)
        got = api.get("/api/v1/stock/A", headers={"Authorization": "Bearer nope"})
        assert (got.status_code, got.json()) == (429, {"type": "about:blank", "title": "Too Many Requests",
                                                       "status": 429, "detail": "too many requests from this client"})
        assert 1 <= int(got.headers["Retry-After"]) <= 100
    finally:
        proc.stop()


def test_an_event_its_schema_cannot_hold_is_a_400_and_nothing_is_published(limits_api, attacker, settings):
    """A quantity within 30 digits but beyond an Avro long, after a valid adjustment: a 400 (the
    bounds of SPEC 2 name the field; the publisher's own guard, which encodes every record before
    sending the first, refuses it otherwise) and neither adjustment is published."""
    from tests.api.support import records

    api, _ = limits_api
    adjust = {"reference_id": "R-HUGE", "adjustments": [{"sku": "A", "quantity_change": 1},
                                                        {"sku": "B", "quantity_change": 10 ** 24}]}
    got = problem(api.commerce(attacker, "/api/v1/inventory/adjust", adjust, "huge-1"), 400)
    assert got["title"] == "Bad Request"
    assert records(settings, "inventory.changes", attacker.tenant) == []
