"""`stockledger tenant add|rotate|list` against the test stack's PostgreSQL: credentials printed once,
stored only as hashes or sealed, a tenant that exists refused with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

from sqlalchemy import text

from stockledger import tenants
from stockledger.security import credential_hash


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", "tenant", *args], capture_output=True,
                          text=True, timeout=120)


def test_add_prints_the_credentials_once_and_stores_none_of_them(api_engine, settings, tenant):
    added = _cli("add", tenant, "--json")
    assert added.returncode == 0, added.stderr
    creds = json.loads(added.stdout)
    assert set(creds) == {"tenant", "integration_key", "bearer_token", "webhook_secret"} and creds["tenant"] == tenant
    assert creds["integration_key"].startswith("slk_") and creds["webhook_secret"].startswith("whsec_")
    again = _cli("add", tenant)
    assert (again.returncode, again.stdout) == (2, "") and "exists" in again.stderr
    with api_engine.connect() as conn:
        rows = conn.execute(text("SELECT kind, credential_hash, sealed FROM api_credentials WHERE tenant_id = :t"),
                            {"t": tenant}).all()
    stored = b"".join((h or "").encode() + bytes(s or b"") for _, h, s in rows)
    for value in (creds["integration_key"], creds["bearer_token"], creds["webhook_secret"]):
        assert value.encode() not in stored
    assert {k: h for k, h, _ in rows if h} == {"key": credential_hash(creds["integration_key"]),
                                               "token": credential_hash(creds["bearer_token"])}
    assert tenants.webhook_secrets(api_engine, settings.master_key(), tenant) == [creds["webhook_secret"]]
    assert tenants.webhook_secrets(api_engine, settings.master_key(), tenant + "-none") == []
    assert tenants.tenant_for(api_engine, "key", creds["integration_key"]) == tenant
    assert tenants.tenant_for(api_engine, "token", creds["integration_key"]) is None


def test_rotate_and_list(api_engine, settings, tenant):
    human = _cli("add", tenant)
    assert human.returncode == 0 and "shown once" in human.stdout
    rotated = _cli("rotate", tenant, "webhook-secret", "--overlap", "24h", "--json")
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)["webhook_secret"]
    secrets = tenants.webhook_secrets(api_engine, settings.master_key(), tenant)
    assert len(secrets) == 2 and secrets[0] == new  # newest first
    listed = [json.loads(line) for line in _cli("list", "--json").stdout.splitlines()]
    [mine] = [row for row in listed if row["tenant"] == tenant]
    assert {k: v["valid"] for k, v in mine["credentials"].items()} == {"key": 1, "token": 1, "webhook_secret": 2}
    assert mine["credentials"]["webhook_secret"]["overlap_ends"] is not None
    assert new not in _cli("list").stdout
    assert _cli("rotate", tenant + "-none", "key").returncode == 2
    assert _cli("rotate", tenant, "key", "--overlap", "soon").returncode == 2
    assert _cli("add", "bad:name").returncode == 2
