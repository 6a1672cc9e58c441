"""Tenants and their credentials (issue 11, item 2).

Each tenant has three credentials: an integration key (`X-Integration-Key`, seed 000), a bearer
token (`Authorization: Bearer`, seed 003) and a webhook secret (the HMAC of seed 003's
`X-ERP-Signature`). Keys and tokens are stored only as `credential_hash`; webhook secrets are sealed
with AES-256-GCM under the master key with the tenant as associated data (stockledger/security.py).
A rotation issues a new credential and gives the current ones an end (`expires_at`, now + overlap);
until then both work. Every check compares with the database clock, so every API process agrees.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import timedelta

from sqlalchemy import Connection, Engine, text

from stockledger.security import SecretError, credential_hash, new_token, seal, unseal

TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# CLI names -> stored kinds, and the prefix that makes each readable where it is pasted.
KINDS = {"key": "key", "token": "token", "webhook-secret": "webhook_secret"}
PREFIX = {"key": "slk_", "token": "slt_", "webhook_secret": "whsec_"}
_VALID = "(expires_at IS NULL OR expires_at > now())"


class TenantError(ValueError):
    """An invalid tenant name, or one that does not exist."""


class TenantExists(TenantError):
    pass


@dataclass(frozen=True)
class Credentials:
    tenant: str
    integration_key: str | None = None
    bearer_token: str | None = None
    webhook_secret: str | None = None

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@contextmanager
def _conn(conn_or_engine: Connection | Engine) -> Iterator[Connection]:
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            yield conn
    else:
        yield conn_or_engine


def check_name(tenant: str) -> str:
    if not TENANT_RE.match(tenant):
        raise TenantError(f"tenant {tenant!r}: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return tenant


def _issue(conn: Connection, master_key: bytes, tenant: str, kind: str) -> str:
    value = new_token(PREFIX[kind])
    hashed, sealed = (None, seal(master_key, tenant, value)) if kind == "webhook_secret" \
        else (credential_hash(value), None)
    conn.execute(text("""INSERT INTO api_credentials (credential_id, tenant_id, kind, credential_hash, sealed)
                         VALUES (:id, :t, :k, :h, :s)"""),
                 {"id": new_token()[:22], "t": tenant, "k": kind, "h": hashed, "s": sealed})
    return value


def _field(kind: str) -> str:
    return {"key": "integration_key", "token": "bearer_token", "webhook_secret": "webhook_secret"}[kind]


def add(engine: Engine, master_key: bytes, tenant: str) -> Credentials:
    """Create `tenant` with a fresh key, token and webhook secret (returned once, never stored in clear)."""
    check_name(tenant)
    with engine.begin() as conn:
        created = conn.execute(text("""INSERT INTO api_tenants (tenant_id) VALUES (:t)
                                       ON CONFLICT DO NOTHING RETURNING tenant_id"""), {"t": tenant}).first()
        if created is None:
            raise TenantExists(f"tenant {tenant!r} exists already")
        return Credentials(tenant, **{_field(k): _issue(conn, master_key, tenant, k) for k in PREFIX})


def rotate(engine: Engine, master_key: bytes, tenant: str, kind: str, overlap: timedelta) -> Credentials:
    """A new credential of `kind` (key, token or webhook-secret); the current ones end after `overlap`."""
    stored = KINDS[kind]
    with engine.begin() as conn:
        if conn.execute(text("SELECT 1 FROM api_tenants WHERE tenant_id = :t FOR UPDATE"),
                        {"t": tenant}).first() is None:
            raise TenantError(f"no tenant {tenant!r}")
        conn.execute(text(f"""UPDATE api_credentials SET expires_at = LEAST(COALESCE(expires_at, 'infinity'),
                                                                      now() + :overlap)
                              WHERE tenant_id = :t AND kind = :k AND {_VALID}"""),
                     {"t": tenant, "k": stored, "overlap": overlap})
        return Credentials(tenant, **{_field(stored): _issue(conn, master_key, tenant, stored)})


def list_tenants(engine: Engine) -> list[dict]:
    """Every tenant with how many credentials of each kind are valid now, and when the oldest ends."""
    with engine.connect() as conn:
        rows = conn.execute(text(f"""
            SELECT t.tenant_id, t.created_at, c.kind, count(c.kind) AS valid, min(c.expires_at) AS ends
            FROM api_tenants t LEFT JOIN api_credentials c ON c.tenant_id = t.tenant_id AND {_VALID}
            GROUP BY t.tenant_id, t.created_at, c.kind ORDER BY t.tenant_id, c.kind""")).all()
    out: dict[str, dict] = {}
    for tenant, created, kind, valid, ends in rows:
        entry = out.setdefault(tenant, {"tenant": tenant, "created_at": created.isoformat(), "credentials": {}})
        if kind is not None:
            entry["credentials"][kind] = {"valid": valid, "overlap_ends": ends.isoformat() if ends else None}
    return list(out.values())


def tenant_for(conn_or_engine: Connection | Engine, kind: str, presented: str) -> str | None:
    """The tenant whose valid credential of `kind` is `presented`, else None."""
    with _conn(conn_or_engine) as conn:
        return conn.execute(text(f"""SELECT tenant_id FROM api_credentials
                                     WHERE credential_hash = :h AND kind = :k AND {_VALID}"""),
                            {"h": credential_hash(presented), "k": kind}).scalar()


def webhook_secrets(conn_or_engine: Connection | Engine, master_key: bytes, tenant: str) -> list[str]:
    """The tenant's valid webhook secrets, newest first (two during a rotation overlap); [] for an
    unknown tenant. A sealed value that does not open (another tenant's row, another key) is skipped."""
    with _conn(conn_or_engine) as conn:
        rows = conn.execute(text(f"""SELECT sealed FROM api_credentials
                                     WHERE tenant_id = :t AND kind = 'webhook_secret' AND {_VALID}
                                     ORDER BY created_at DESC, credential_id"""), {"t": tenant}).scalars().all()
    out = []
    for sealed in rows:
        try:
            out.append(unseal(master_key, tenant, sealed))
        except SecretError:
            continue
    return out
