"""docker-compose.yml against the Compose specification's JSON schema (vendored from
github.com/compose-spec/compose-spec, schema/compose-spec.json) and what the system needs of it."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec.json"
STOCKLEDGER = ("topics", "worker", "sink", "notify", "api")


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_valid_against_the_compose_specification():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert [f"{list(e.path)}: {e.message}" for e in errors] == []


def test_services_and_how_they_wait():
    services = compose()["services"]
    assert set(services) == {"kafka", "postgres", "registry", *STOCKLEDGER}
    for name in ("kafka", "postgres", "registry", "worker", "sink", "notify", "api"):
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    assert "healthcheck" not in services["topics"]  # a job: it exits
    assert services["topics"]["depends_on"] == {"kafka": {"condition": "service_healthy"},
                                               "registry": {"condition": "service_healthy"}}
    assert services["registry"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("worker", "sink", "notify", "api"):
        assert services[name]["depends_on"]["topics"] == {"condition": "service_completed_successfully"}, name
    for name in ("sink", "notify", "api"):
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}, name
    assert services["api"]["depends_on"]["worker"] == {"condition": "service_healthy"}
    assert services["topics"]["command"] == ["topics"]  # which also sets BACKWARD compatibility
    assert [services[n]["command"][0] for n in STOCKLEDGER] == ["topics", "worker", "sink", "notify", "api"]


def test_healthchecks_ask_each_process_its_readiness():
    services = compose()["services"]
    for name, port in (("worker", 6066), ("sink", 6068), ("notify", 6067), ("api", 8088)):
        assert f"http://127.0.0.1:{port}/health" in " ".join(services[name]["healthcheck"]["test"]), name


def test_kafka_data_is_on_the_volume_the_broker_writes_to():
    kafka = compose()["services"]["kafka"]
    assert kafka["environment"]["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert kafka["volumes"] == ["kafka-data:/var/lib/kafka/data"]
    assert set(compose()["volumes"]) == {"api-secrets", "kafka-data", "postgres-data"}


def test_worker_advertises_a_reachable_url():
    """Bound to 0.0.0.0 in a container, the worker advertises its hostname, not 127.0.0.1."""
    import socket

    from stockledger.config import Settings
    from streams.app import advertised_url

    s = Settings()
    assert compose()["services"]["worker"]["command"] == ["worker", "--web-host", "0.0.0.0"]
    assert advertised_url(s, "0.0.0.0", 6066) == f"http://{socket.gethostname()}:6066"
    assert advertised_url(s, "127.0.0.1", 6066) == "http://127.0.0.1:6066"
    from dataclasses import replace

    assert advertised_url(replace(s, web_advertised_url="http://w1.internal:6066/"), "0.0.0.0", 6066) == \
        "http://w1.internal:6066"


def test_notifier_and_api_share_the_master_key():
    services = compose()["services"]
    for name in ("notify", "api"):
        assert services[name]["environment"]["STOCKLEDGER_MASTER_KEY_FILE"] == "/secrets/master.key"
        assert "api-secrets:/secrets" in services[name]["volumes"]


def test_kafka_tools_follow_the_brokers_version():
    from cli.stack import downloads

    assert downloads.kafka_version() == "4.1.1"
    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{downloads.kafka_version()}"
    assert "<version>${kafka.version}</version>" in downloads.KAFKA_TOOLS_POM.read_text()
