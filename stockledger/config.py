"""The one configuration object: environment variables with defaults that point at the local stack."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"STOCKLEDGER_{name}", default)


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
    kafka_port: int = field(default_factory=lambda: int(_env("KAFKA_PORT", "19092")))
    registry_port: int = field(default_factory=lambda: int(_env("REGISTRY_PORT", "18081")))
    pg_port: int = field(default_factory=lambda: int(_env("PG_PORT", "15432")))
    web_port: int = field(default_factory=lambda: int(_env("WEB_PORT", "6066")))
    # The workers' HTTP port is the operators' door: loopback unless said otherwise (then a token is required).
    web_host: str = field(default_factory=lambda: _env("WEB_HOST", "127.0.0.1"))
    partitions: int = field(default_factory=lambda: int(_env("PARTITIONS", "4")))
    tenant_default_tax: str = field(default_factory=lambda: _env("DEFAULT_TAX_PERCENT", "0"))
    app_id: str = field(default_factory=lambda: _env("APP_ID", "stockledger"))
    # SPEC 2 "Cost does not grow with history" (tenant settings once the tenant settings event exists):
    # a SKU keeps its deltas this many days of event time behind its newest event (older ones fold into
    # its base; a count older than the base is STALE_ABSOLUTE), and an event id is remembered this many
    # days behind the tenant's newest event, then forgotten (a tombstone on the state changelog).
    late_count_horizon_days: float = field(default_factory=lambda: float(_env("LATE_COUNT_HORIZON_DAYS", "7")))
    dedup_horizon_days: float = field(default_factory=lambda: float(_env("DEDUP_HORIZON_DAYS", "35")))
    # Fault injection for tests, 0 = off. The worker's consumer drops every Nth record it fetched, or
    # empties the agents' buffers while every Nth record is being delivered, as faust-streaming does
    # around rebalances and recovery; to prove such records are read again in order.
    fault_drop_every: int = field(default_factory=lambda: int(_env("FAULT_DROP_EVERY", "0")))
    fault_clear_every: int = field(default_factory=lambda: int(_env("FAULT_CLEAR_EVERY", "0")))
    # For tests only, "" = off: a file path; while that file exists the sink holds each batch it has
    # read, before committing it (connectors.sink), so a test can act while a batch is certainly in flight.
    fault_hold_batches: str = field(default_factory=lambda: _env("FAULT_HOLD_BATCHES", ""))
    bootstrap_servers_env: str | None = field(default_factory=lambda: os.environ.get("STOCKLEDGER_BOOTSTRAP_SERVERS"))
    schema_registry_url_env: str | None = field(default_factory=lambda: os.environ.get("STOCKLEDGER_SCHEMA_REGISTRY_URL"))
    database_url_env: str | None = field(default_factory=lambda: os.environ.get("STOCKLEDGER_DATABASE_URL"))
    # Required on the workers' HTTP port (the operators' door) when it is bound beyond loopback;
    # sent as `Authorization: Bearer <token>` by the API service when set.
    operator_token: str | None = field(default_factory=lambda: os.environ.get("STOCKLEDGER_OPERATOR_TOKEN") or None)
    # The key that seals secrets at rest (stockledger/security.py): hex or base64, else the key file.
    master_key_env: str | None = field(default_factory=lambda: os.environ.get("STOCKLEDGER_MASTER_KEY"))
    master_key_file_env: str | None = field(default_factory=lambda: os.environ.get("STOCKLEDGER_MASTER_KEY_FILE"))
    # Outbound webhooks (`stockledger notify`, seed 003 section 7.1 and seed 001's circuit breaker).
    # Delays between tries after a failure (the last one repeats), as durations.
    notify_retry_schedule: str = field(default_factory=lambda: _env("NOTIFY_RETRY_SCHEDULE", "1m,5m,15m,1h,6h"))
    # A delivery still failing this long after its first failure is dead-lettered (ERROR log, metric, row).
    notify_dead_letter_after: str = field(default_factory=lambda: _env("NOTIFY_DEAD_LETTER_AFTER", "24h"))
    notify_timeout: str = field(default_factory=lambda: _env("NOTIFY_TIMEOUT", "5s"))  # per request, all of it
    notify_breaker_failures: int = field(default_factory=lambda: int(_env("NOTIFY_BREAKER_FAILURES", "5")))
    notify_breaker_open: str = field(default_factory=lambda: _env("NOTIFY_BREAKER_OPEN", "60s"))  # then half-open
    notify_concurrency: int = field(default_factory=lambda: int(_env("NOTIFY_CONCURRENCY", "64")))  # requests in flight
    notify_metrics_port: int = field(default_factory=lambda: int(_env("NOTIFY_METRICS_PORT", "6067")))  # 0: none

    # The HTTP API service (`stockledger api`, api/): its own address, and how it waits and limits.
    api_host: str = field(default_factory=lambda: _env("API_HOST", "127.0.0.1"))
    api_port: int = field(default_factory=lambda: int(_env("API_PORT", "8088")))
    # The workers' HTTP reads the API forwards to (stock, credit, sales, snapshot).
    worker_url_env: str | None = field(default_factory=lambda: os.environ.get("STOCKLEDGER_WORKER_URL") or None)
    # How long a POST waits for the pipeline's outcome before answering 202 with the read's Location.
    api_outcome_wait: float = field(default_factory=lambda: float(_env("API_OUTCOME_WAIT", "5")))
    # How long a duplicate request waits for the first one with its Idempotency-Key before a 409.
    api_duplicate_wait: float = field(default_factory=lambda: float(_env("API_DUPLICATE_WAIT", "10")))
    # Idempotency records and webhook event ids are kept this many days, then pruned.
    api_idempotency_days: float = field(default_factory=lambda: float(_env("API_IDEMPOTENCY_DAYS", "7")))
    # Per-tenant token bucket of each API process: requests per second and burst; 0 turns it off.
    api_rate_limit: float = field(default_factory=lambda: float(_env("API_RATE_LIMIT", "50")))
    api_rate_burst: int = field(default_factory=lambda: int(_env("API_RATE_BURST", "100")))

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

    def with_overrides(self, **changes: object) -> "Settings":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def load() -> Settings:
    return Settings()
