"""Issue 15: what one worker sends another when it forwards a read, with the operator token set.
The real `streams.web.Views` serves over a real socket; the group's assignment is a stand-in whose
member URL is a recording server (the shared test group runs without a token, so a member that
advertises an address of its choosing is played here): it gets the rebuilt path and a credential for
that one read, never the operator token nor the caller's Authorization."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiohttp import ClientSession, web
from yarl import URL

from streams import web as views_mod
from streams.web import FORWARD, Views, forward_valid

TOKEN = "op-token-0123456789abcdef"
LOG = "stockledger-tenant-log"


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _scenario(member_url: str | None = None) -> dict[str, Any]:
    seen: list[dict] = []

    async def rogue(request: web.Request) -> web.Response:
        seen.append({"raw_path": request.raw_path, "headers": dict(request.headers)})
        return web.json_response({"from": "member"})

    member_app = web.Application()
    member_app.router.add_get("/{tail:.*}", rogue)
    member_runner, member = await _serve(member_app)
    distribution: dict[Any, dict] = {}
    pipeline = SimpleNamespace(settings=SimpleNamespace(partitions=4), log_topic=LOG,
                               app=SimpleNamespace(assignor=SimpleNamespace(external_topic_distribution=distribution),
                                                   conf=SimpleNamespace(canonical_url="http://127.0.0.1:1")))
    views = Views(pipeline, SimpleNamespace(local=lambda partition: None), TOKEN)  # type: ignore[arg-type]

    async def stock(request: web.Request) -> Any:
        return await views.routed(request, None, "stock", ("sku", request.match_info["sku"]))

    front_app = web.Application()
    front_app.router.add_get("/stock/{sku}", stock)
    front_runner, front = await _serve(front_app)
    url = member_url or member
    distribution[URL(url)] = {LOG: set(range(4))}
    out: dict[str, Any] = {"seen": seen, "answers": []}
    try:
        async with ClientSession() as client:
            for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}, {"Authorization": "Bearer wrong"}):
                async with client.get(URL(front + "/stock/A%20B", encoded=True), params={"tenant": "acme"},
                                      headers=headers) as resp:
                    out["answers"].append((resp.status, await resp.json()))
    finally:
        await front_runner.cleanup()
        await member_runner.cleanup()
    return out


def test_a_forwarded_read_carries_its_own_credential_never_the_operator_token():
    out = asyncio.run(_scenario())
    assert out["answers"] == [
        (200, {"from": "member"}),
        (401, {"error": "an operator token is required (Authorization: Bearer ...)"}),
        (401, {"error": "an operator token is required (Authorization: Bearer ...)"}),
    ]
    [sent] = out["seen"]  # only the authorised request went on
    assert sent["raw_path"] == "/stock/A%20B?tenant=acme&routed=1"
    assert "Authorization" not in sent["headers"]
    assert all(TOKEN not in v for v in sent["headers"].values())
    credential = sent["headers"][FORWARD]
    assert forward_valid(TOKEN, "stock\nA B\nacme", credential)
    # it opens that one read and nothing else: not another tenant, SKU or door, nor under another token
    assert not forward_valid(TOKEN, "stock\nA B\nvictim", credential)
    assert not forward_valid(TOKEN, "stock\nB\nacme", credential)
    assert not forward_valid(TOKEN, "credit\nA B\nacme", credential)
    assert not forward_valid("another-token", "stock\nA B\nacme", credential)
    # ... and only for a minute
    at = int(credential.split(".")[0])
    assert not forward_valid(TOKEN, "stock\nA B\nacme", credential, now=at + views_mod.FORWARD_WINDOW + 1)


def test_a_member_url_that_is_not_plain_http_gets_nothing():
    for bad in ("http://user:pw@127.0.0.1:9/", "http://127.0.0.1:9/steal", "file:///etc/passwd",
                "http://127.0.0.1:9/?x=1"):
        out = asyncio.run(_scenario(bad))
        assert out["seen"] == []
        status, body = out["answers"][0]
        assert (status, body) == (503, {"error": "no worker serves tenant 'acme' right now (rebalancing or "
                                                 "restoring); retry shortly"}), bad
