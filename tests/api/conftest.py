"""Fixtures of the API tests: real `stockledger api` processes on the test stack (ports 36100-36199
unless STOCKLEDGER_TEST_API_PORT moves them), and a tenant with fresh credentials per test."""

from __future__ import annotations

import os

import pytest

from tests.api import support

API_PORT = int(os.environ.get("STOCKLEDGER_TEST_API_PORT", "27101"))


@pytest.fixture(scope="session")
def api_engine(stack, settings):
    from sqlalchemy import create_engine

    from stockledger.db import migrate

    engine = create_engine(settings.database_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def _start(settings, name: str, port: int, **env: str):
    """An API process on `port`, or on one 10, 20... above when that one is taken (36100-36199 lie in
    Linux's ephemeral range, so a client socket of anything on the machine may hold it)."""
    from cli.testing import WorkerProcess

    for attempt in range(5):
        proc = WorkerProcess(settings, name, port + 10 * attempt, command="api", port_flag="--port",
                             env={"STOCKLEDGER_API_RATE_LIMIT": "0", **env}).start()
        try:
            return proc.wait_ready(90)
        except RuntimeError:  # exited: the port was taken (its log says so); the next one
            if "address already in use" not in proc.logfile.read_text(errors="replace")[-3000:]:
                raise
    raise RuntimeError(f"no free port for {name} from {port}")


@pytest.fixture(scope="session")
def api(stack, api_engine, settings):
    """The API as tills and ERPs meet it: no rate limit, 5 s outcome wait."""
    proc = _start(settings, "api-main", API_PORT)
    yield support.Api(proc.url)
    proc.stop()


@pytest.fixture(scope="session")
def strict_api(stack, api_engine, settings):
    """A second process with a rate limit of 1 request/s in bursts of 3 per tenant, no outcome wait
    (every sale is answered 202 at once) and a duplicate wait of 1 s: the refusals a busy or slow
    pipeline brings."""
    proc = _start(settings, "api-strict", API_PORT + 1, STOCKLEDGER_API_RATE_LIMIT="1",
                  STOCKLEDGER_API_RATE_BURST="3", STOCKLEDGER_API_OUTCOME_WAIT="0",
                  STOCKLEDGER_API_DUPLICATE_WAIT="1")
    yield support.Api(proc.url)
    proc.stop()


@pytest.fixture
def creds(api_engine, settings, tenant) -> support.Creds:
    """A tenant of the test's own with fresh credentials (as `stockledger tenant add` makes them)."""
    from stockledger import tenants

    return support.Creds(tenants.add(api_engine, settings.master_key(), tenant))
