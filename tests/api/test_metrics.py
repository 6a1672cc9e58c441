"""The API's /metrics: requests counted and timed by route template (never the path) and status."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def _samples(api) -> dict[tuple, float]:
    r = api.get("/metrics")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _requests(samples: dict, method: str, route: str, status: str) -> float:
    key = ("stockledger_api_requests_total", (("method", method), ("route", route), ("status", status)))
    return samples.get(key, 0.0)


def _timed(samples: dict, method: str, route: str) -> float:
    return samples.get(("stockledger_api_request_seconds_count", (("method", method), ("route", route))), 0.0)


def test_requests_are_counted_and_timed_by_route(api):
    before = _samples(api)
    assert api.get("/health").status_code == 200
    for sku in ("SKU-A", "SKU-B", "SKU-C"):  # three paths, one route; no credential: 401
        assert api.get(f"/api/v1/stock/{sku}").status_code == 401
    assert api.get("/no/such/path").status_code == 404
    after = _samples(api)
    route = "/api/v1/stock/{sku}"
    assert _requests(after, "GET", route, "401") - _requests(before, "GET", route, "401") == 3
    assert _timed(after, "GET", route) - _timed(before, "GET", route) == 3
    assert _requests(after, "GET", "/health", "200") - _requests(before, "GET", "/health", "200") == 1
    assert _requests(after, "GET", "unmatched", "404") - _requests(before, "GET", "unmatched", "404") == 1
    # the path's values never become label values
    assert not any("SKU-A" in str(labels) for _, labels in after)
