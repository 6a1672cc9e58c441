"""Issue 15, item 5: property-based fuzzing of every HTTP door from the description the API serves
(`GET /openapi.json`), with schemathesis generating requests that fit it (positive) and that break
it (negative), sent over a real socket to the live API in front of two workers with tenant A's
credentials (webhooks signed with A's secret): no answer is a 5xx, none carries tenant B's data,
and the API's memory stays bounded.

`STOCKLEDGER_FUZZ_EXAMPLES` (default 40) bounds the examples per operation and mode."""

from __future__ import annotations

import json
import os
import time
from collections import Counter

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given

from stockledger.security import sign
from tests.security.test_limits import MIB, rss

EXAMPLES = int(os.environ.get("STOCKLEDGER_FUZZ_EXAMPLES", "40"))


def _send(session: requests.Session, kwargs: dict, secret: str | None) -> requests.Response:
    kwargs = {**kwargs, "timeout": 60, "allow_redirects": False}
    if secret is not None:  # a signed door: sign exactly the bytes sent
        if "json" in kwargs:
            kwargs["data"] = json.dumps(kwargs.pop("json")).encode()
        data = kwargs.get("data") or b""
        data = data.encode() if isinstance(data, str) else data
        stamp = str(int(time.time()))
        kwargs["data"] = data
        kwargs["headers"] = {**(kwargs.get("headers") or {}), "X-ERP-Timestamp": stamp,
                             "X-ERP-Signature": sign(secret, data, stamp)}
    return session.request(**kwargs)


def test_every_door_fuzzed_from_its_description(sec_api, tenants_ab):
    api, proc = sec_api
    a, b = tenants_ab
    described = requests.get(api.url + "/openapi.json", timeout=30)
    assert described.status_code == 200 and described.json()["openapi"] == "3.0.3"
    schema = schemathesis.openapi.from_url(api.url + "/openapi.json")
    forbidden = (b.tenant, "VICTIM-SKU-7731", "VICTIM-CUST-7731")
    statuses: Counter = Counter()
    server_errors: list[str] = []
    leaks: list[str] = []
    unsendable = Counter()
    operations = 0
    no_negative: list[str] = []
    before = rss(proc.proc.pid)
    session = requests.Session()
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1
        signed = op.path.startswith("/webhooks/")
        fixed = {k: a.tenant for k in ("company_id", "tenant") if f"{{{k}}}" in op.path}
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            headers = {} if signed else {"Authorization": f"Bearer {a.token}", "X-Integration-Key": a.key}
            strategy = op.as_strategy(mode, headers=headers,
                                      path_parameters=fixed if mode.is_positive else None)

            @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                                 phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def fuzz(case) -> None:
                try:
                    kwargs = case.as_transport_kwargs(base_url=api.url)
                    resp = _send(session, kwargs, a.secret if signed else None)  # noqa: B023 (run within its loop)
                except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, UnicodeError,
                        ValueError) as exc:  # the client library will not send it; nor would a real one
                    unsendable[type(exc).__name__] += 1
                    return
                statuses[resp.status_code] += 1
                sent = (resp.request.body or b"")[:300]
                what = f"{kwargs['method']} {kwargs['url']} {sent!r} -> {resp.status_code} {resp.text[:200]}"
                if resp.status_code >= 500 and resp.status_code != 503:
                    server_errors.append(what)
                if resp.status_code == 503 and "stream workers" not in resp.text and "published" not in resp.text:
                    server_errors.append(what)
                if any(f in resp.text for f in forbidden):
                    leaks.append(what)

            try:
                fuzz()
            except hypothesis.errors.Unsatisfiable:
                # nothing of this door can break its description (GET /health has no input at all)
                assert not mode.is_positive, op.path
                no_negative.append(f"{op.method.upper()} {op.path}")
    after = rss(proc.proc.pid)
    total = sum(statuses.values())
    print(f"fuzz: {operations} operations (no negative case for {no_negative}), {total} requests sent, "
          f"{sum(unsendable.values())} unsendable {dict(unsendable)}, statuses {dict(sorted(statuses.items()))}, "
          f"RSS {before / MIB:.0f} -> "
          f"{after / MIB:.0f} MiB")
    assert operations == 15  # 11, SPEC 8's ship, cancel and release, and SPEC 9's price lists
    assert server_errors == []
    assert leaks == []
    assert total >= operations * EXAMPLES  # every door was really exercised
    assert no_negative == ["GET /health"]
    assert after - before < 150 * MIB
