"""The one place for secrets at rest and webhook signatures, shared by the API (inbound) and notify
(outbound).

- Secrets a process must read back (webhook secrets, needed to compute HMACs) are sealed with
  AES-256-GCM under the master key, with the tenant bound as associated data: a ciphertext copied to
  another tenant's row does not open.
- Credentials a process only compares (integration keys, bearer tokens) are never stored: only
  `credential_hash` of them, a SHA-256 of a 256-bit random token (no salt or KDF is needed for
  high-entropy secrets; lookups stay an index hit).
- Signatures follow seed 003 (`X-ERP-Signature` = hex HMAC-SHA256 of the raw body) and seed 001's
  timestamp window (`X-ERP-Timestamp`: the signature covers `<timestamp>.<raw body>`).
  Verification is on the raw bytes, in constant time.

The master key: `STOCKLEDGER_MASTER_KEY` (32 bytes, as 64 hex digits or base64), else the key file
`STOCKLEDGER_MASTER_KEY_FILE` (default `$STOCKLEDGER_HOME/master.key`), created with mode 0600 on
first use so a local stack and the demo work with nothing set.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets as _secrets
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
_SEAL_VERSION = b"\x01"  # first byte of every sealed value, so the format can change later


class SecretError(Exception):
    """A master key that is malformed, or a sealed value that does not open under it."""


def new_token(prefix: str = "") -> str:
    """A fresh 256-bit credential, URL-safe, with an optional readable prefix (`slk_`, `whsec_`)."""
    return prefix + _secrets.token_urlsafe(KEY_BYTES)


def credential_hash(token: str) -> str:
    """What is stored for a key or token: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _decode_key(text: str) -> bytes:
    text = text.strip()
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            raw = decode(text)
        except (ValueError, binascii.Error):
            continue
        if len(raw) == KEY_BYTES:
            return raw
    raise SecretError(f"the master key must be {KEY_BYTES} bytes, as {2 * KEY_BYTES} hex digits or base64")


def load_master_key(env_value: str | None, key_file: Path) -> bytes:
    """The master key from the environment's value, else from `key_file` (created 0600 if missing)."""
    if env_value:
        return _decode_key(env_value)
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(_secrets.token_bytes(KEY_BYTES).hex() + "\n")
    return _decode_key(key_file.read_text())


def seal(master_key: bytes, tenant: str, plaintext: str) -> bytes:
    """AES-256-GCM of `plaintext` with `tenant` as associated data: version, nonce, ciphertext+tag."""
    nonce = _secrets.token_bytes(NONCE_BYTES)
    body = AESGCM(master_key).encrypt(nonce, plaintext.encode("utf-8"), tenant.encode("utf-8"))
    return _SEAL_VERSION + nonce + body


def unseal(master_key: bytes, tenant: str, sealed: bytes) -> str:
    """The plaintext of `seal(master_key, tenant, ...)`; SecretError for a wrong key, tenant or byte."""
    from cryptography.exceptions import InvalidTag

    sealed = bytes(sealed)
    if not sealed.startswith(_SEAL_VERSION) or len(sealed) < 1 + NONCE_BYTES + 16:
        raise SecretError("not a sealed secret")
    nonce, body = sealed[1:1 + NONCE_BYTES], sealed[1 + NONCE_BYTES:]
    try:
        return AESGCM(master_key).decrypt(nonce, body, tenant.encode("utf-8")).decode("utf-8")
    except InvalidTag:
        raise SecretError("the sealed secret does not open under this master key and tenant") from None


def sign(secret: str, body: bytes, timestamp: str | int | None = None) -> str:
    """Hex HMAC-SHA256 of the raw body, or of `<timestamp>.<raw body>` when a timestamp is sent."""
    message = body if timestamp is None else str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(secrets: Iterable[str], body: bytes, signature: str | None,
           timestamp: str | None = None) -> bool:
    """Whether `signature` (hex, `sha256=` prefix accepted) signs the raw body under any of
    `secrets` (more than one during a rotation overlap). Every secret is tried, in constant time."""
    if not signature:
        return False
    given = signature.strip()
    if given.startswith("sha256="):
        given = given[len("sha256="):]
    given_bytes = given.lower().encode("ascii", "replace")
    ok = False
    for secret in secrets:
        ok |= hmac.compare_digest(sign(secret, body, timestamp).encode("ascii"), given_bytes)
    return ok


UNSAFE_ID_PARTS = ("/", "?", "#", "%", "..")


def id_refusal(value: str) -> str | None:
    """Why `value` cannot be an id that travels in a URL path (a SKU, sale id, customer ref, order
    id), or None when it can: `/`, `?`, `#`, `%`, `..`, `.` alone and control characters are refused
    at every door, so an id can never become another path or a query parameter where it is forwarded."""
    if not value:
        return "must not be empty"
    if value == ".":
        return "must not be '.'"  # a dot segment: a URL client drops it
    for part in UNSAFE_ID_PARTS:
        if part in value:
            return f"must not contain {part!r}"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
        return "must not contain control characters"
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
        return "must be valid Unicode (no lone surrogates)"
    return None
