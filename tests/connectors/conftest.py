"""Fixtures of the connector tests: a fresh database and ledger topics of the test's own."""

from __future__ import annotations

import uuid

import pytest

from tests.connectors import support


@pytest.fixture
def sink_db(stack, settings):
    """(url, engine) of a fresh database `sink_<uuid>` on the test stack's PostgreSQL, dropped after."""
    name = support.create_database(settings.pg_port)
    url = support.database_url(settings.pg_port, name)
    engine = support.new_engine(url)
    yield url, engine
    engine.dispose()
    support.drop_database(settings.pg_port, name)


@pytest.fixture
def prefix(stack, settings):
    """`test-<uuid>.`: the five ledger topics and their DLQs under it exist for this test, deleted after."""
    p = support.new_prefix()
    names = [p + t for t in support.LEDGER_TOPICS] + [p + t + ".dlq" for t in support.LEDGER_TOPICS]
    support.create_topics(settings, names)
    yield p
    support.delete_topics(settings, names)


@pytest.fixture
def group() -> str:
    return f"test-sink-{uuid.uuid4().hex[:8]}"
