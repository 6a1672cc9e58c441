"""The API's client of the workers' HTTP: the tenant goes as the query parameter, the path segment is
quoted, and the operator token is sent as `Authorization: Bearer` when it is set (over a real socket,
to a stand-in for the workers' door that records what it was sent)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from aiohttp import web

from api.problems import Problem
from api.workers import Workers
from stockledger.config import Settings


async def _ask(token: str | None) -> tuple[tuple[int, dict], list[dict]]:
    seen: list[dict] = []

    async def stock(request: web.Request) -> web.Response:
        seen.append({"path": request.raw_path, "tenant": request.query.get("tenant"),
                     "auth": request.headers.get("Authorization")})
        return web.json_response({"sku": request.match_info["sku"]})

    app = web.Application()
    app.router.add_get("/stock/{sku}", stock)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    workers = await Workers(replace(Settings(), worker_url_env=f"http://127.0.0.1:{port}",
                                    operator_token=token)).start()
    try:
        return await workers.get_json("stock", "A/B 1", "t1"), seen
    finally:
        await workers.close()
        await runner.cleanup()


def test_the_operator_token_is_sent_when_set_and_only_then():
    (status, body), seen = asyncio.run(_ask("op-secret"))
    assert (status, body) == (200, {"sku": "A/B 1"})
    assert seen == [{"path": "/stock/A%2FB%201?tenant=t1", "tenant": "t1", "auth": "Bearer op-secret"}]
    _, seen = asyncio.run(_ask(None))
    assert seen[0]["auth"] is None


def test_workers_that_do_not_answer_are_a_503():
    async def go() -> None:
        workers = await Workers(replace(Settings(), worker_url_env="http://127.0.0.1:9")).start()
        try:
            await workers.get_json("stock", "A", "t1")
        finally:
            await workers.close()

    try:
        asyncio.run(go())
    except Problem as exc:
        assert exc.status == 503 and exc.headers == {"Retry-After": "1"}
    else:
        raise AssertionError("no Problem raised")
