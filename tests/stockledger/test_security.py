"""Secrets at rest and webhook signatures (stockledger/security.py): no services needed."""

from __future__ import annotations

import os
import stat

import pytest

from stockledger import security
from stockledger.security import SecretError


def test_github_x_hub_signature_256_vector_is_reproduced():
    # The published example of GitHub's "Validating webhook deliveries" page.
    secret, body = "It's a Secret to Everybody", b"Hello, World!"
    expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert security.sign(secret, body) == expected
    assert security.verify([secret], body, "sha256=" + expected)
    assert security.verify([secret], body, expected.upper())


def test_a_flipped_byte_a_wrong_secret_or_no_signature_does_not_verify():
    sig = security.sign("s1", b'{"a":1}')
    assert not security.verify(["s1"], b'{"a":2}', sig)
    assert not security.verify(["other"], b'{"a":1}', sig)
    assert not security.verify(["s1"], b'{"a":1}', None)
    assert not security.verify(["s1"], b'{"a":1}', "")
    assert not security.verify([], b'{"a":1}', sig)
    assert not security.verify(["s1"], b'{"a":1}', "zz\u00e9")


def test_the_timestamp_form_covers_timestamp_dot_body_and_any_overlap_secret_verifies():
    body = b'{"event_id":"e1"}'
    sig = security.sign("new", body, 1767600000)
    assert sig == security.sign("new", b"1767600000." + body)
    assert security.verify(["old", "new"], body, sig, "1767600000")
    assert not security.verify(["old", "new"], body, sig, "1767600001")
    assert not security.verify(["old", "new"], body, sig)


def test_sealed_secrets_open_only_under_their_key_and_tenant():
    key = os.urandom(32)
    sealed = security.seal(key, "acme", "whsec_abc")
    assert b"whsec_abc" not in sealed
    assert security.unseal(key, "acme", sealed) == "whsec_abc"
    assert security.seal(key, "acme", "whsec_abc") != sealed  # a fresh nonce each time
    with pytest.raises(SecretError):
        security.unseal(key, "other-tenant", sealed)
    with pytest.raises(SecretError):
        security.unseal(os.urandom(32), "acme", sealed)
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SecretError):
        security.unseal(key, "acme", flipped)


def test_master_key_from_hex_base64_or_a_key_file_made_0600(tmp_path):
    raw = os.urandom(32)
    import base64

    assert security.load_master_key(raw.hex(), tmp_path / "unused") == raw
    assert security.load_master_key(base64.b64encode(raw).decode(), tmp_path / "unused") == raw
    with pytest.raises(SecretError, match="32 bytes"):
        security.load_master_key("abcd", tmp_path / "unused")
    path = tmp_path / "home" / "master.key"
    first = security.load_master_key(None, path)
    assert len(first) == 32 and security.load_master_key(None, path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_credentials_are_stored_as_hashes():
    token = security.new_token("slk_")
    assert token.startswith("slk_") and len(token) > 40
    assert security.credential_hash(token) == security.credential_hash(token)
    assert token not in security.credential_hash(token) and len(security.credential_hash(token)) == 64
