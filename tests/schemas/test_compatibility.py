"""Every contract schema registers BACKWARD compatibly; an incompatible change is refused by the registry."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import fastavro
import pytest

from stockledger.codec import SCHEMA_DIR, schema_text, subject
from stockledger.registry import RegistryClient, RegistryError
from stockledger.topics import BY_NAME

TOPICS = sorted(BY_NAME)
HISTORY = SCHEMA_DIR / "history"  # <stem>.v<N>.avsc: the released versions before the current file


def history(stem: str) -> list[Path]:
    return sorted(HISTORY.glob(f"{stem}.v*.avsc"), key=lambda p: int(p.stem.rsplit(".v", 1)[1]))


@pytest.fixture(scope="module")
def client(stack, settings):
    return RegistryClient(settings.schema_registry_url)


def test_every_schema_file_parses_and_every_topic_has_one():
    stems = {p.stem for p in SCHEMA_DIR.glob("*.avsc")}
    assert {BY_NAME[t].schema for t in TOPICS} == stems
    for stem in stems:
        fastavro.parse_schema(json.loads(schema_text(stem)))


def test_registry_enforces_backward_by_default(client):
    assert client.compatibility() == "BACKWARD"


@pytest.mark.parametrize("topic", TOPICS)
def test_current_schema_is_backward_compatible_with_registered_previous(client, topic):
    """The contract subject accepts the current file: the registry checks it against the version before."""
    stem = BY_NAME[topic].schema
    before = client.versions(subject(topic)) if _exists(client, subject(topic)) else []
    if before:
        assert client.is_compatible(subject(topic), schema_text(stem))
    client.register(subject(topic), schema_text(stem))
    # Released versions replayed in a scratch subject, oldest first, then the current file.
    scratch = f"{subject(topic)}-history-{uuid.uuid4().hex[:6]}"
    try:
        for old in history(stem):
            client.register(scratch, old.read_text())
        client.register(scratch, schema_text(stem))
        assert len(client.versions(scratch)) == len(history(stem)) + 1
    finally:
        client.delete_subject(scratch)


@pytest.mark.parametrize("topic", ["inventory.changes", "sales", "ledger.journal", "stock.levels"])
def test_new_required_field_without_default_is_refused(client, topic):
    stem = BY_NAME[topic].schema
    client.register(subject(topic), schema_text(stem))
    broken = json.loads(schema_text(stem))
    broken["fields"].append({"name": "added_without_default", "type": "string"})
    text = json.dumps(broken)
    assert client.is_compatible(subject(topic), text) is False
    with pytest.raises(RegistryError) as refused:
        client.register(subject(topic), text)
    assert refused.value.status == 409
    assert "added_without_default" in str(refused.value)


def test_new_optional_field_with_default_is_accepted(client):
    stem = BY_NAME["inventory.changes"].schema
    client.register(subject("inventory.changes"), schema_text(stem))
    evolved = json.loads(schema_text(stem))
    evolved["fields"].append({"name": "batch_id", "type": ["null", "string"], "default": None})
    assert client.is_compatible(subject("inventory.changes"), json.dumps(evolved)) is True


def _exists(client: RegistryClient, name: str) -> bool:
    try:
        client.versions(name)
        return True
    except RegistryError as exc:
        if exc.status == 404:
            return False
        raise
