"""Fixtures of the security tests: the real stack, TWO workers of the group (the session's `worker`
and a second one started here) and a `stockledger api` process, all over real sockets; tenants
picked by the tenant-log partition so the one under attack lives on the worker the API does not
talk to (every read of it is forwarded between workers)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest
import requests

from cli.testing import WorkerProcess, settle, wait_for
from tests.api import support
from tests.api.conftest import _start, api_engine  # noqa: F401 - the fixture, shared
from tests.streams.test_sales_pipeline import catalog, customer

API_PORT = int(os.environ.get("STOCKLEDGER_TEST_API_PORT", "27101")) + 50


def log_partitions(worker: WorkerProcess, log_topic: str) -> set[int]:
    """The tenant-log partitions `worker` folds (from its /health)."""
    body = requests.get(worker.url + "/health", timeout=10).json()
    return {int(tp.rsplit(":", 1)[1]) for tp in body.get("assigned", []) if tp.rsplit(":", 1)[0] == log_topic}


@dataclass
class Group:
    front: WorkerProcess  # the worker the API asks (STOCKLEDGER_WORKER_URL)
    back: WorkerProcess  # the other member
    log_topic: str
    partitions: int

    def owner(self, tenant: str) -> WorkerProcess:
        from streams.web import tenant_partition

        p = tenant_partition(tenant, self.partitions)
        for w in (self.front, self.back):
            if p in log_partitions(w, self.log_topic):
                return w
        raise AssertionError(f"no worker folds partition {p}")

    def tenant_on(self, worker: WorkerProcess, prefix: str) -> str:
        """A fresh tenant name whose tenant-log partition `worker` folds."""
        from streams.web import tenant_partition

        mine = log_partitions(worker, self.log_topic)
        for _ in range(1000):
            name = f"{prefix}-{uuid.uuid4().hex[:8]}"
            if tenant_partition(name, self.partitions) in mine:
                return name
        raise AssertionError(f"no tenant name lands on {worker.worker_id}")


@pytest.fixture(scope="module")
def group(worker, settings):
    """The session worker and a second worker, with the tenant log split between them (both
    healthy, every partition folded by exactly one)."""
    from stockledger.topics import tenant_log_topic

    back = WorkerProcess(settings, "w-sec", worker.web_port + 7).start().wait_ready(180)
    topic = tenant_log_topic(settings.app_id)

    def split() -> bool:
        try:
            if any(requests.get(w.url + "/health", timeout=5).status_code != 200 for w in (worker, back)):
                return False
            a, b = log_partitions(worker, topic), log_partitions(back, topic)
        except requests.RequestException:
            return False
        return bool(a) and bool(b) and not a & b and a | b == set(range(settings.partitions))

    try:
        wait_for(split, 180, "the tenant log split between two workers", interval=1.0)
        yield Group(worker, back, topic, settings.partitions)
    finally:
        back.stop()


@pytest.fixture(scope="module")
def sec_api(stack, api_engine, settings, group):  # noqa: F811
    """An API process in front of the group's first worker, with a 5 s outcome wait, no rate limits."""
    proc = _start(settings, "api-sec", API_PORT, STOCKLEDGER_WORKER_URL=group.front.url,
                  STOCKLEDGER_API_CLIENT_RATE_LIMIT="0")
    yield support.Api(proc.url), proc
    proc.stop()


def new_tenant(api_engine, settings, name: str) -> support.Creds:  # noqa: F811
    from stockledger import tenants

    return support.Creds(tenants.add(api_engine, settings.master_key(), name))


@pytest.fixture(scope="module")
def tenants_ab(group, api_engine, settings, publish):  # noqa: F811
    """Tenant A (the attacker) and tenant B (the victim), both folded by the worker the API does not
    ask, each with a catalog SKU of its own and a customer on account; B's SKU and customer carry a
    distinctive name that must never appear in an answer to A."""
    a = new_tenant(api_engine, settings, group.tenant_on(group.back, "atk"))
    b = new_tenant(api_engine, settings, group.tenant_on(group.back, "vic"))
    publish("catalog.updates", [catalog(a.tenant, [("A-SKU", "100.00", 10)]),
                                catalog(b.tenant, [("VICTIM-SKU-7731", "1000.00", 10)])])
    publish("customers", [customer(a.tenant, "A-CUST", "10000"), customer(b.tenant, "VICTIM-CUST-7731", "10000")])
    settle(settings)
    assert group.owner(a.tenant) is group.back and group.owner(b.tenant) is group.back
    return a, b
