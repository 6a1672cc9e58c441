"""Helpers of the API tests: an HTTP client that names the seeds' headers, signed webhook bodies,
and the tenant's records on a topic."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import requests

from stockledger.security import sign


@dataclass
class Creds:
    raw: Any  # stockledger.tenants.Credentials

    @property
    def tenant(self) -> str:
        return self.raw.tenant

    @property
    def key(self) -> str:
        return self.raw.integration_key

    @property
    def token(self) -> str:
        return self.raw.bearer_token

    @property
    def secret(self) -> str:
        return self.raw.webhook_secret


def dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


@dataclass
class Api:
    url: str

    def post(self, path: str, body: Any = None, *, raw: bytes | None = None, headers: dict | None = None
             ) -> requests.Response:
        data = raw if raw is not None else dumps(body)
        return requests.post(self.url + path, data=data,
                             headers={"Content-Type": "application/json", **(headers or {})}, timeout=60)

    def get(self, path: str, headers: dict | None = None, **params: str) -> requests.Response:
        return requests.get(self.url + path, headers=headers or {}, params=params, timeout=60)

    def pos(self, creds: Creds, what: str, body: Any, key: str | None, company: str | None = None,
            **kw: Any) -> requests.Response:
        headers = {"X-Integration-Key": creds.key, **kw.pop("headers", {})}
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.post(f"/integrations/piti/companies/{company or creds.tenant}/{what}", body,
                         headers=headers, **kw)

    def commerce(self, creds: Creds, path: str, body: Any, key: str | None, **kw: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {creds.token}", **kw.pop("headers", {})}
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.post(path, body, headers=headers, **kw)

    def read(self, creds: Creds, path: str, headers: dict | None = None, **params: str) -> requests.Response:
        return self.get(path, headers={"Authorization": f"Bearer {creds.token}", **(headers or {})}, **params)

    def webhook(self, door: str, tenant: str, secret: str, body: Any, *, raw: bytes | None = None,
                timestamp: int | None | bool = None, signature: str | None = None) -> requests.Response:
        """POST a body signed with `secret`: over `<timestamp>.<body>` when `timestamp` is given
        (True: now), else over the body; `signature` overrides the computed one."""
        data = raw if raw is not None else dumps(body)
        headers = {}
        if timestamp is True:
            timestamp = int(time.time())
        if timestamp is not None:
            headers["X-ERP-Timestamp"] = str(timestamp)
        headers["X-ERP-Signature"] = signature or sign(secret, data, timestamp)
        return self.post(f"/webhooks/{door}/{tenant}", raw=data, headers=headers)


def records(settings, topic: str, tenant: str) -> list[dict]:
    from cli.testing import tenant_records

    return tenant_records(settings, topic, tenant)


def problem(resp: requests.Response, status: int) -> dict:
    """The problem+json body of a refusal, after checking its status and type."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert body["status"] == status
    return body
