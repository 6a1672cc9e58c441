"""Shared fixtures: one real stack per test run (reused when already up), isolated by tenant per test."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_ENV = {
    "STOCKLEDGER_HOME": os.environ.get("STOCKLEDGER_TEST_HOME", str(ROOT / ".stack" / "test")),
    "STOCKLEDGER_KAFKA_PORT": os.environ.get("STOCKLEDGER_TEST_KAFKA_PORT", "29092"),
    "STOCKLEDGER_REGISTRY_PORT": os.environ.get("STOCKLEDGER_TEST_REGISTRY_PORT", "28081"),
    "STOCKLEDGER_PG_PORT": os.environ.get("STOCKLEDGER_TEST_PG_PORT", "25432"),
    "STOCKLEDGER_WEB_PORT": os.environ.get("STOCKLEDGER_TEST_WEB_PORT", "26066"),
}
# Everything the tests start (CLI, workers, sinks) talks to the test stack, never a developer's own.
os.environ.update(TEST_ENV)
for name in ("STOCKLEDGER_BOOTSTRAP_SERVERS", "STOCKLEDGER_SCHEMA_REGISTRY_URL", "STOCKLEDGER_DATABASE_URL"):
    os.environ.pop(name, None)


@pytest.fixture(scope="session")
def settings():
    from stockledger.config import Settings

    return Settings()


@pytest.fixture(scope="session")
def stack(settings):
    """The real stack: started for this run and stopped after it, or reused (and left) if already up."""
    from cli.stack import Stack
    from stockledger.topics import ensure_topics

    s = Stack(settings)
    started_here = not s.running()
    if started_here:
        s.up(lambda m: print(m, file=sys.stderr, flush=True))
    ensure_topics(settings.bootstrap_servers, settings.partitions)
    yield s
    if started_here and not os.environ.get("STOCKLEDGER_TEST_KEEP_STACK"):
        s.down(lambda m: None)


@pytest.fixture(scope="session")
def codec(stack, settings):
    from stockledger.codec import Codec

    return Codec(settings.schema_registry_url)


@pytest.fixture
def tenant() -> str:
    """A tenant of its own per test, so tests sharing the contract topics never see each other."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def publish(stack, settings, codec):
    """publish(topic, events): validate and publish contract events like `stockledger produce`."""
    from stockledger.produce import prepare
    from stockledger.produce import publish as _publish

    def _go(topic: str, events: list[dict]) -> int:
        return _publish(settings, topic, prepare(topic, "<test>", events), codec=codec)

    return _go


@pytest.fixture(scope="session")
def raw_producer(stack, settings):
    """A plain producer for bytes that are not ours (poison pills), with the project's partitioner."""
    from confluent_kafka import Producer

    from stockledger.produce import producer_config

    producer = Producer(producer_config(settings))
    yield producer
    producer.flush(30)


@pytest.fixture(scope="session")
def worker(stack, settings):
    """One stream worker for the whole run (tests isolate themselves by tenant)."""
    from cli.testing import WorkerProcess

    w = WorkerProcess(settings, "w1", int(os.environ["STOCKLEDGER_WEB_PORT"])).start().wait_ready(180)
    yield w
    w.stop()
