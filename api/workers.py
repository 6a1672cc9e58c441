"""The workers' HTTP reads (the operators' door), asked on behalf of a tenant: the tenant always
comes from the caller's credential, never from the request. `Authorization: Bearer` carries
`STOCKLEDGER_OPERATOR_TOKEN` when it is set."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from api.problems import Problem
from stockledger.config import Settings


class Workers:
    def __init__(self, settings: Settings):
        self.base = settings.worker_url
        self.headers = {"Authorization": f"Bearer {settings.operator_token}"} if settings.operator_token else {}
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> Workers:
        self.session = aiohttp.ClientSession(headers=self.headers, timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def url(self, kind: str, ident: str | None = None) -> str:
        return f"{self.base}/{kind}" + ("" if ident is None else "/" + quote(ident, safe=""))

    async def get_json(self, kind: str, ident: str, tenant: str) -> tuple[int, Any]:
        """(status, JSON body) of `GET /<kind>/<ident>?tenant=T`; a 503 Problem if no worker answers."""
        assert self.session is not None
        try:
            async with self.session.get(self.url(kind, ident), params={"tenant": tenant}) as resp:
                if resp.content_type != "application/json":
                    raise Problem(502, f"the workers answered {resp.status} {resp.content_type}")
                return resp.status, await resp.json()
        except aiohttp.ClientError as exc:
            raise Problem(503, f"the stream workers cannot answer right now ({exc.__class__.__name__})",
                          headers={"Retry-After": "1"}) from None

    def open(self, kind: str, tenant: str, **params: str) -> Any:
        """An aiohttp request context (for streaming a response through)."""
        assert self.session is not None
        return self.session.get(self.url(kind), params={"tenant": tenant, **params})
