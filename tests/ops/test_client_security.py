"""SASL/SSL and registry auth from Settings reach every Kafka client and the registry client."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path

import pytest

from stockledger.config import ConfigError, Settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("stockledger", "streams", "connectors", "api")

SASL = {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc-ledger",
        "sasl.password": "s3cret"}


@pytest.fixture
def secured(monkeypatch) -> Settings:
    for name, value in {"KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                        "KAFKA_SASL_USERNAME": "svc-ledger", "KAFKA_SASL_PASSWORD": "s3cret",
                        "SCHEMA_REGISTRY_USERNAME": "reg-user", "SCHEMA_REGISTRY_PASSWORD": "reg-pass",
                        "BOOTSTRAP_SERVERS": "broker-1:9093"}.items():
        monkeypatch.setenv(f"STOCKLEDGER_{name}", value)
    return Settings()


def test_plaintext_config_is_only_the_brokers(monkeypatch):
    monkeypatch.setenv("STOCKLEDGER_BOOTSTRAP_SERVERS", "b:9092")
    assert Settings().kafka_config() == {"bootstrap.servers": "b:9092"}
    assert Settings().registry_auth == {}


def test_librdkafka_clients_get_sasl_ssl(secured, tmp_path):
    from connectors.notify.worker import Notifier
    from connectors.sink import Sink
    from stockledger.produce import producer_config

    assert secured.kafka_config() == {"bootstrap.servers": "broker-1:9093", **SASL}
    assert {k: producer_config(secured)[k] for k in SASL} == SASL
    assert producer_config(secured)["bootstrap.servers"] == "broker-1:9093"
    url = f"sqlite:///{tmp_path / 'x.db'}"  # never connected: the consumers' configs only
    for worker in (Sink(dataclasses.replace(secured, database_url_env=url)),
                   Notifier(dataclasses.replace(secured, database_url_env=url), metrics_port=0)):
        conf = worker.consumer_config()
        assert {k: conf[k] for k in SASL} == SASL and conf["bootstrap.servers"] == "broker-1:9093"


def test_ssl_files_are_passed(monkeypatch):
    monkeypatch.setenv("STOCKLEDGER_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("STOCKLEDGER_KAFKA_SSL_CA_FILE", "/etc/ca.pem")
    monkeypatch.setenv("STOCKLEDGER_KAFKA_SSL_CERT_FILE", "/etc/client.pem")
    monkeypatch.setenv("STOCKLEDGER_KAFKA_SSL_KEY_FILE", "/etc/client.key")
    conf = Settings().kafka_config()
    assert {k: v for k, v in conf.items() if k != "bootstrap.servers"} == {
        "security.protocol": "SSL", "ssl.ca.location": "/etc/ca.pem",
        "ssl.certificate.location": "/etc/client.pem", "ssl.key.location": "/etc/client.key"}


def test_faust_worker_gets_the_same_credentials(secured, tmp_path):
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from streams.app import create_app

    p = create_app(dataclasses.replace(secured, bootstrap_servers_env="127.0.0.1:9"), tmp_path, 16066)
    p.outbox.close()  # never connected (nothing listens on port 9): the configuration is what is tested
    p.outbox.producer = None  # librdkafka's producer goes now, not at some later collection
    auth = credentials_to_aiokafka_auth(p.app.conf.broker_credentials)
    assert {k: auth[k] for k in ("security_protocol", "sasl_mechanism", "sasl_plain_username",
                                 "sasl_plain_password")} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc-ledger", "sasl_plain_password": "s3cret"}
    assert auth["ssl_context"] is not None
    assert p.codec.client.session.headers["Authorization"] == "Basic " + base64.b64encode(b"reg-user:reg-pass").decode()


def test_registry_bearer_token(monkeypatch):
    from stockledger.codec import Codec

    monkeypatch.setenv("STOCKLEDGER_SCHEMA_REGISTRY_TOKEN", "tok-123")
    s = Settings()
    headers = Codec(s.schema_registry_url, auth=s.registry_auth).client.session.headers
    assert headers["Authorization"] == "Bearer tok-123"


def test_kafka_tools_get_a_java_client_config(secured, tmp_path):
    from cli.stack import tools

    props = tools.client_properties(secured)
    assert props.splitlines() == [
        "security.protocol=SASL_SSL", "sasl.mechanism=SCRAM-SHA-512",
        'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required '
        'username="svc-ledger" password="s3cret";']
    cmd = tools.command(secured, "kafka-consumer-groups", ["--describe", "--group", "g"], tmp_path, tmp_path,
                        tmp_path / "c.properties")
    assert cmd[cmd.index("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"):] == [
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand", "--bootstrap-server", "broker-1:9093",
        "--command-config", str(tmp_path / "c.properties"), "--describe", "--group", "g"]
    given = tools.command(secured, "kafka-topics", ["--bootstrap-server", "x:1", "--list"], tmp_path, tmp_path, None)
    assert given[-3:] == ["--bootstrap-server", "x:1", "--list"] and given.count("--bootstrap-server") == 1


@pytest.mark.parametrize("env,variable", [
    ({"STOCKLEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "STOCKLEDGER_KAFKA_SECURITY_PROTOCOL"),
    ({"STOCKLEDGER_KAFKA_SECURITY_PROTOCOL": "KERBEROS"}, "STOCKLEDGER_KAFKA_SECURITY_PROTOCOL"),
    ({"STOCKLEDGER_KAFKA_SASL_MECHANISM": "GSSAPI"}, "STOCKLEDGER_KAFKA_SASL_MECHANISM"),
    ({"STOCKLEDGER_SCHEMA_REGISTRY_USERNAME": "u"}, "STOCKLEDGER_SCHEMA_REGISTRY_USERNAME"),
    ({"STOCKLEDGER_SCHEMA_REGISTRY_TOKEN": "t", "STOCKLEDGER_SCHEMA_REGISTRY_USERNAME": "u",
      "STOCKLEDGER_SCHEMA_REGISTRY_PASSWORD": "p"}, "STOCKLEDGER_SCHEMA_REGISTRY_TOKEN"),
])
def test_incomplete_security_is_a_config_error(monkeypatch, env, variable):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as exc:
        Settings()
    assert exc.value.variable == variable


def test_no_client_is_configured_outside_settings():
    """Every Kafka client starts from Settings.kafka_config() (or producer_config, built on it): no other
    module names the brokers itself. The local stack's own probes (cli/stack/) talk to the
    plaintext broker it started."""
    offenders = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel in ("stockledger/config.py", "stockledger/topics.py") or rel.startswith("cli/stack/"):
                continue
            text = path.read_text()
            if '"bootstrap.servers"' in text or re.search(r"ensure_topics\([^)]*bootstrap_servers", text):
                offenders.append(rel)
            if re.search(r"Codec\((self\.)?settings\.schema_registry_url\)", text):
                offenders.append(rel + " (Codec without auth)")
    assert offenders == []
