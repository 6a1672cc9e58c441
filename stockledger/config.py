"""The one configuration object: environment variables with defaults that point at the local stack."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"STOCKLEDGER_{name}", default)


class ConfigError(Exception):
    """A malformed setting; names the environment variable so the CLI can say so (exit 2, no traceback)."""

    def __init__(self, variable: str, value: str, problem: str):
        super().__init__(f"{variable}={value!r}: {problem}")
        self.variable = variable


def _typed(name: str, default: str, convert, what: str):
    raw = _env(name, default)
    try:
        return convert(raw)
    except ValueError:
        raise ConfigError(f"STOCKLEDGER_{name}", raw, f"not {what}") from None


def _int(name: str, default: str) -> int:
    return _typed(name, default, int, "an integer")


def _float(name: str, default: str) -> float:
    return _typed(name, default, float, "a number")


def _duration(name: str, default: str) -> str:
    """The text, checked now (a malformed duration fails at start, naming its variable)."""
    raw = _env(name, default)
    try:
        parse_durations(raw) if "," in raw else parse_duration(raw)
    except ValueError as exc:
        raise ConfigError(f"STOCKLEDGER_{name}", raw, str(exc)) from None
    return raw


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = _env(name, default)
    if raw.upper() not in choices:
        raise ConfigError(f"STOCKLEDGER_{name}", raw, f"not one of {', '.join(choices)}")
    return raw.upper()


def _opt(name: str) -> str | None:
    return os.environ.get(f"STOCKLEDGER_{name}") or None


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in `500ms`, `1.5s`, `5m`, `1h`, `2d` or a bare number of seconds; ValueError otherwise."""
    t = text.strip().lower()
    for unit in ("ms", "s", "m", "h", "d"):
        if t.endswith(unit) and t[:-len(unit)].replace(".", "", 1).isdigit():
            return float(t[:-len(unit)]) * _UNITS[unit]
    if t.replace(".", "", 1).isdigit():
        return float(t)
    raise ValueError(f"not a duration: {text!r} (give e.g. 500ms, 30s, 5m, 1h)")


def parse_durations(text: str) -> tuple[float, ...]:
    """`1m,5m,15m,1h,6h` as seconds; at least one."""
    values = tuple(parse_duration(part) for part in text.split(",") if part.strip())
    if not values:
        raise ValueError(f"no durations in {text!r}")
    return values


@dataclass(frozen=True)
class Settings:
    """Every knob in one place; flags override it with `replace`."""

    home: Path = field(default_factory=lambda: Path(_env("HOME", str(PROJECT_ROOT / ".stack"))))
    # Outside the checkout, so a fresh clone (CI) reuses the jars a previous run downloaded.
    cache_dir: Path = field(default_factory=lambda: Path(_env("CACHE_DIR", str(_user_cache() / "stockledger"))))
    kafka_port: int = field(default_factory=lambda: _int("KAFKA_PORT", "19092"))
    registry_port: int = field(default_factory=lambda: _int("REGISTRY_PORT", "18081"))
    pg_port: int = field(default_factory=lambda: _int("PG_PORT", "15432"))
    web_port: int = field(default_factory=lambda: _int("WEB_PORT", "6066"))
    # The workers' HTTP port is the operators' door: loopback unless said otherwise (then a token is required).
    web_host: str = field(default_factory=lambda: _env("WEB_HOST", "127.0.0.1"))
    # The URL peers forward a tenant's reads to; default http://<web host>:<port>, or, bound to every
    # address (0.0.0.0), http://<this machine's hostname>:<port> (a container's name on its network).
    web_advertised_url: str | None = field(default_factory=lambda: _opt("WEB_ADVERTISED_URL"))
    partitions: int = field(default_factory=lambda: _int("PARTITIONS", "4"))
    tenant_default_tax: str = field(default_factory=lambda: _env("DEFAULT_TAX_PERCENT", "0"))
    # SPEC 9: the largest discount_percent a sale line may carry (none: no limit); the fold reads it through
    # FoldConfig.max_discount_percent until the tenant's settings (tenant.configured) carry it.
    max_discount_percent: str | None = field(default_factory=lambda: _opt("MAX_DISCOUNT_PERCENT"))
    app_id: str = field(default_factory=lambda: _env("APP_ID", "stockledger"))
    # SPEC 2 "Cost does not grow with history" (tenant settings once the tenant settings event exists):
    # a SKU keeps its deltas this many days of event time behind its newest event (older ones fold into
    # its base; a count older than the base is STALE_ABSOLUTE), and an event id is remembered this many
    # days behind the tenant's newest event, then forgotten (a tombstone on the state changelog).
    late_count_horizon_days: float = field(default_factory=lambda: float(_env("LATE_COUNT_HORIZON_DAYS", "7")))
    dedup_horizon_days: float = field(default_factory=lambda: float(_env("DEDUP_HORIZON_DAYS", "35")))
    bootstrap_servers_env: str | None = field(default_factory=lambda: os.environ.get("STOCKLEDGER_BOOTSTRAP_SERVERS"))
    schema_registry_url_env: str | None = field(
        default_factory=lambda: os.environ.get("STOCKLEDGER_SCHEMA_REGISTRY_URL"))
    database_url_env: str | None = field(default_factory=lambda: os.environ.get("STOCKLEDGER_DATABASE_URL"))
    # Required on the workers' HTTP port (the operators' door) when it is bound beyond loopback;
    # sent as `Authorization: Bearer <token>` by the API service when set.
    operator_token: str | None = field(default_factory=lambda: os.environ.get("STOCKLEDGER_OPERATOR_TOKEN") or None)
    # The key that seals secrets at rest (stockledger/security.py): hex or base64, else the key file.
    master_key_env: str | None = field(default_factory=lambda: os.environ.get("STOCKLEDGER_MASTER_KEY"))
    master_key_file_env: str | None = field(default_factory=lambda: os.environ.get("STOCKLEDGER_MASTER_KEY_FILE"))
    # Outbound webhooks (`stockledger notify`, seed 003 section 7.1 and seed 001's circuit breaker).
    # Delays between tries after a failure (the last one repeats), as durations.
    notify_retry_schedule: str = field(default_factory=lambda: _duration("NOTIFY_RETRY_SCHEDULE", "1m,5m,15m,1h,6h"))
    # A delivery still failing this long after its first failure is dead-lettered (ERROR log, metric, row).
    notify_dead_letter_after: str = field(default_factory=lambda: _duration("NOTIFY_DEAD_LETTER_AFTER", "24h"))
    notify_timeout: str = field(default_factory=lambda: _duration("NOTIFY_TIMEOUT", "5s"))  # per request, all of it
    notify_breaker_failures: int = field(default_factory=lambda: _int("NOTIFY_BREAKER_FAILURES", "5"))
    notify_breaker_open: str = field(default_factory=lambda: _duration("NOTIFY_BREAKER_OPEN", "60s"))  # then half-open
    notify_concurrency: int = field(default_factory=lambda: _int("NOTIFY_CONCURRENCY", "64"))  # requests in flight
    notify_metrics_port: int = field(default_factory=lambda: _int("NOTIFY_METRICS_PORT", "6067"))  # 0: none
    # The sink's and the notifier's HTTP port (/metrics, /health): loopback unless said otherwise.
    metrics_host: str = field(default_factory=lambda: _env("METRICS_HOST", "127.0.0.1"))
    sink_metrics_port: int = field(default_factory=lambda: _int("SINK_METRICS_PORT", "6068"))  # 0: none

    # Joining a secured cluster: passed to every Kafka client (librdkafka and aiokafka/Faust alike).
    kafka_security_protocol: str = field(
        default_factory=lambda: _choice("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", KAFKA_SECURITY_PROTOCOLS))
    kafka_sasl_mechanism: str = field(
        default_factory=lambda: _choice("KAFKA_SASL_MECHANISM", "PLAIN", KAFKA_SASL_MECHANISMS))
    kafka_sasl_username: str | None = field(default_factory=lambda: _opt("KAFKA_SASL_USERNAME"))
    kafka_sasl_password: str | None = field(default_factory=lambda: _opt("KAFKA_SASL_PASSWORD"))
    kafka_ssl_ca_file: str | None = field(default_factory=lambda: _opt("KAFKA_SSL_CA_FILE"))
    kafka_ssl_cert_file: str | None = field(default_factory=lambda: _opt("KAFKA_SSL_CERT_FILE"))
    kafka_ssl_key_file: str | None = field(default_factory=lambda: _opt("KAFKA_SSL_KEY_FILE"))
    kafka_ssl_key_password: str | None = field(default_factory=lambda: _opt("KAFKA_SSL_KEY_PASSWORD"))
    # Schema registry auth: HTTP basic (user and password) or a bearer token, not both.
    registry_username: str | None = field(default_factory=lambda: _opt("SCHEMA_REGISTRY_USERNAME"))
    registry_password: str | None = field(default_factory=lambda: _opt("SCHEMA_REGISTRY_PASSWORD"))
    registry_token: str | None = field(default_factory=lambda: _opt("SCHEMA_REGISTRY_TOKEN"))

    # The HTTP API service (`stockledger api`, api/): its own address, and how it waits and limits.
    api_host: str = field(default_factory=lambda: _env("API_HOST", "127.0.0.1"))
    api_port: int = field(default_factory=lambda: _int("API_PORT", "8088"))
    # The workers' HTTP reads the API forwards to (stock, credit, sales, snapshot).
    worker_url_env: str | None = field(default_factory=lambda: os.environ.get("STOCKLEDGER_WORKER_URL") or None)
    # How long a POST waits for the pipeline's outcome before answering 202 with the read's Location.
    api_outcome_wait: float = field(default_factory=lambda: _float("API_OUTCOME_WAIT", "5"))
    # How long a duplicate request waits for the first one with its Idempotency-Key before a 409.
    api_duplicate_wait: float = field(default_factory=lambda: _float("API_DUPLICATE_WAIT", "10"))
    # Idempotency records and webhook event ids are kept this many days, then pruned.
    api_idempotency_days: float = field(default_factory=lambda: _float("API_IDEMPOTENCY_DAYS", "7"))
    # Per-tenant token bucket of each API process: requests per second and burst; 0 turns it off.
    api_rate_limit: float = field(default_factory=lambda: _float("API_RATE_LIMIT", "50"))
    api_rate_burst: int = field(default_factory=lambda: _int("API_RATE_BURST", "100"))
    # Per-client (remote address) token bucket, applied before any credential is checked; 0 turns it off.
    api_client_rate_limit: float = field(default_factory=lambda: _float("API_CLIENT_RATE_LIMIT", "1000"))
    api_client_rate_burst: int = field(default_factory=lambda: _int("API_CLIENT_RATE_BURST", "2000"))
    # Seconds a connection may take to send a request's headers (and stay idle between requests),
    # and to send its body once the headers are in.
    api_header_timeout: float = field(default_factory=lambda: _float("API_HEADER_TIMEOUT", "15"))
    api_read_timeout: float = field(default_factory=lambda: _float("API_READ_TIMEOUT", "30"))

    def __post_init__(self) -> None:
        if self.registry_token and (self.registry_username or self.registry_password):
            raise ConfigError("STOCKLEDGER_SCHEMA_REGISTRY_TOKEN", "***",
                              "give a bearer token or STOCKLEDGER_SCHEMA_REGISTRY_USERNAME/PASSWORD, not both")
        if bool(self.registry_username) != bool(self.registry_password):
            raise ConfigError("STOCKLEDGER_SCHEMA_REGISTRY_USERNAME", self.registry_username or "",
                              "basic auth needs both STOCKLEDGER_SCHEMA_REGISTRY_USERNAME and ..._PASSWORD")
        if self.kafka_security_protocol.startswith("SASL_") and not (self.kafka_sasl_username
                                                                       and self.kafka_sasl_password):
            raise ConfigError("STOCKLEDGER_KAFKA_SECURITY_PROTOCOL", self.kafka_security_protocol,
                              "SASL needs STOCKLEDGER_KAFKA_SASL_USERNAME and STOCKLEDGER_KAFKA_SASL_PASSWORD")

    def kafka_config(self) -> dict[str, str | int | float | bool]:
        """librdkafka (confluent-kafka) settings every client starts from: the brokers and their security."""
        conf: dict[str, str | int | float | bool] = {"bootstrap.servers": self.bootstrap_servers}
        if self.kafka_security_protocol == "PLAINTEXT":
            return conf
        conf["security.protocol"] = self.kafka_security_protocol
        if self.kafka_security_protocol.startswith("SASL_"):
            # __post_init__ refused SASL without a username and password
            conf.update({"sasl.mechanism": self.kafka_sasl_mechanism, "sasl.username": self.kafka_sasl_username or "",
                         "sasl.password": self.kafka_sasl_password or ""})
        if self.kafka_security_protocol.endswith("SSL"):
            for key, value in (("ssl.ca.location", self.kafka_ssl_ca_file),
                               ("ssl.certificate.location", self.kafka_ssl_cert_file),
                               ("ssl.key.location", self.kafka_ssl_key_file),
                               ("ssl.key.password", self.kafka_ssl_key_password)):
                if value:
                    conf[key] = value
        return conf

    def faust_credentials(self):
        """The same security for aiokafka, as Faust's `broker_credentials` (None: plaintext)."""
        protocol = self.kafka_security_protocol
        if protocol == "PLAINTEXT":
            return None
        import ssl

        import faust

        context = None
        if protocol.endswith("SSL"):
            context = ssl.create_default_context(cafile=self.kafka_ssl_ca_file)
            if self.kafka_ssl_cert_file:
                context.load_cert_chain(self.kafka_ssl_cert_file, self.kafka_ssl_key_file,
                                        self.kafka_ssl_key_password)
        if protocol == "SSL":
            return faust.SSLCredentials(context)
        return faust.SASLCredentials(username=self.kafka_sasl_username, password=self.kafka_sasl_password,
                                     mechanism=self.kafka_sasl_mechanism, ssl_context=context)

    @property
    def registry_auth(self) -> dict[str, str]:
        """Headers for the schema registry: `Authorization` basic or bearer, or none."""
        if self.registry_token:
            return {"Authorization": f"Bearer {self.registry_token}"}
        if self.registry_username:
            import base64

            pair = f"{self.registry_username}:{self.registry_password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        return {}

    @property
    def worker_url(self) -> str:
        return (self.worker_url_env or f"http://127.0.0.1:{self.web_port}").rstrip("/")

    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap_servers_env or f"127.0.0.1:{self.kafka_port}"

    @property
    def schema_registry_url(self) -> str:
        return self.schema_registry_url_env or f"http://127.0.0.1:{self.registry_port}/apis/ccompat/v7"

    @property
    def database_url(self) -> str:
        return self.database_url_env or f"postgresql+psycopg2://postgres@127.0.0.1:{self.pg_port}/stockledger"

    @property
    def master_key_file(self) -> Path:
        return Path(self.master_key_file_env) if self.master_key_file_env else self.home / "master.key"

    def master_key(self) -> bytes:
        from stockledger.security import load_master_key

        return load_master_key(self.master_key_env, self.master_key_file)

    @property
    def registry_database_url(self) -> str:
        """JDBC URL of the database the schema registry keeps its data in."""
        return f"jdbc:postgresql://127.0.0.1:{self.pg_port}/registry"

    @property
    def notify_retry_delays(self) -> tuple[float, ...]:
        return parse_durations(self.notify_retry_schedule)

    @property
    def notify_dead_letter_after_s(self) -> float:
        return parse_duration(self.notify_dead_letter_after)

    @property
    def notify_timeout_s(self) -> float:
        return parse_duration(self.notify_timeout)

    @property
    def notify_breaker_open_s(self) -> float:
        return parse_duration(self.notify_breaker_open)

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
