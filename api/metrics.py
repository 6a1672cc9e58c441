"""The API's Prometheus metrics (prometheus-client), on its own port at `/metrics`:

- `stockledger_api_requests_total{method,route,status}`;
- `stockledger_api_request_seconds{method,route}`: from the request's arrival to its answer
  (streamed answers: to the end of the stream).

`route` is the route's template (`/api/v1/stock/{sku}`), never the path, so tenants, SKUs and ids
never become label values; requests no route matches count as `unmatched`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("stockledger_api_requests", "HTTP requests answered.", ["method", "route", "status"],
                                registry=r)
        self.latency = Histogram("stockledger_api_request_seconds", "HTTP request to its answer, by route.",
                                 ["method", "route"], buckets=BUCKETS, registry=r)


METRICS = web.AppKey("metrics", ApiMetrics)


def _route(request: web.Request) -> str:
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None or getattr(info, "http_exception", None) is not None:
        return "unmatched"
    return resource.canonical


@web.middleware
async def timed(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                ) -> web.StreamResponse:
    """Outermost middleware: every answer, refusals included, counted and timed."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        m = request.app[METRICS]
        route = _route(request)
        m.requests.labels(request.method, route, str(status)).inc()
        m.latency.labels(request.method, route).observe(time.perf_counter() - started)


async def page(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def install(app: web.Application) -> None:
    """Metrics of `app` and its `/metrics` route (add `timed` first among its middlewares)."""
    app[METRICS] = ApiMetrics()
    app.router.add_get("/metrics", page)
