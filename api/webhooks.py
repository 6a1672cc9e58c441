"""The signed door (seeds 003, 002, 001): `X-ERP-Signature` is the hex HMAC-SHA256 of the raw body
under the tenant's webhook secret (`sha256=` prefix accepted), or of `<X-ERP-Timestamp>.<raw body>`
when the timestamp header is sent, which must then be within 300 s of now either way. Every valid
secret verifies (two during a rotation overlap); an unknown tenant has none. One refusal for every
failure (401), with no hint of which part was wrong."""

from __future__ import annotations

import time

from stockledger.security import verify

SIGNATURE = "X-ERP-Signature"
TIMESTAMP = "X-ERP-Timestamp"
WINDOW_SECONDS = 300


def timestamp_fresh(value: str, now: float | None = None, window: int = WINDOW_SECONDS) -> bool:
    """Unix seconds within `window` of now, either way."""
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 12:  # never other scripts' digits
        return False
    return abs((time.time() if now is None else now) - int(value)) <= window


def signed(secrets: list[str], body: bytes, signature: str | None, timestamp: str | None,
           now: float | None = None) -> bool:
    if timestamp is not None and not timestamp_fresh(timestamp, now):
        return False
    return verify(secrets, body, signature, timestamp.strip() if timestamp is not None else None)
