"""The Faust application and the pieces every step shares (`Pipeline`): settings, codec, the one
producer, metrics, topics. The data flow is one module per step:

    input topics --admit.py--> tenant log (tenantlog.py) --fold.py--> state.py (tables, changelog)
                                                                  \\--> outbox.py (outputs, DLQ)
    web.py answers HTTP reads from state.py; faustfix/ holds what works around faust-streaming.

Values cross Kafka as raw bytes and are decoded by the one codec inside the steps, so a record that
does not decode reaches the dead-letter queue instead of crashing an agent.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust

from stockledger.codec import Codec
from stockledger.config import Settings
from stockledger.jsonconv import format_timestamp
from stockledger.topics import BY_NAME, tenant_log_topic
from streams import tenantlog
from streams.faustfix.anchor import anchor_table
from streams.faustfix.consumer import install as install_ordered_consumer
from streams.faustfix.producer import install as install_producer_buffer
from streams.faustfix.vitals import Vitals
from streams.faustfix.watchdog import Watchdog
from streams.metrics import Metrics
from streams.outbox import Outbox

log = logging.getLogger("stockledger.worker")


@dataclass
class Pipeline:
    """Everything the steps and views share; built once per worker by `create_app`."""

    settings: Settings
    app: faust.App
    codec: Codec
    outbox: Outbox
    datadir: Path
    worker_id: str
    metrics: Metrics = field(default_factory=Metrics)  # prometheus-client, this worker's registry
    topics: dict[str, Any] = field(default_factory=dict)
    watchdog: Any = None
    vitals: Any = None  # faustfix.vitals.Vitals: which agents died (`/health` 503, non-zero exit)
    admitted: tenantlog.Admitted = field(default_factory=tenantlog.Admitted)  # decoded by admit, for the fold

    @property
    def log_topic(self) -> str:
        return tenant_log_topic(self.settings.app_id)

    @property
    def log_topic_obj(self) -> Any:
        return self.topic(self.log_topic, internal=True)

    def topic(self, name: str, internal: bool = False) -> Any:
        """One Faust topic object per name, raw bytes both ways."""
        t = self.topics.get(name)
        if t is None:
            t = self.app.topic(name, key_type=bytes, key_serializer="raw", value_type=bytes,
                               value_serializer="raw", internal=internal, partitions=self.settings.partitions)
            self.topics[name] = t
        return t

    def register_schemas(self) -> None:
        """Every schema this worker writes, registered before the first event (no HTTP on the hot path)."""
        for name in BY_NAME:
            self.codec.register(name)


def create_app(settings: Settings, datadir: Path, web_port: int, worker_id: str = "1",
               web_host: str = "127.0.0.1") -> Pipeline:
    app = faust.App(
        settings.app_id,
        broker=f"kafka://{settings.bootstrap_servers}",
        broker_credentials=settings.faust_credentials(),  # SASL/SSL as every other client (Settings)
        store="memory://",
        datadir=str(datadir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_enabled=True,
        web_host=web_host if web_host not in ("0.0.0.0", "::") else "127.0.0.1",
        web_port=web_port,
        web_bind=web_host,
        canonical_url=advertised_url(settings, web_host, web_port),
        processing_guarantee="at_least_once",
        broker_commit_interval=1.0,
        # A killed worker's partitions move after this long; Faust's default (60 s) makes every
        # crash-restart wait a minute for the dead member to expire.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        consumer_auto_offset_reset="earliest",
        producer_partitioner=None,
        stream_wait_empty=False,
        table_standby_replicas=0,
        web_transport="tcp://",
        # Faust's own views (/router/, /table/, /graph/, stats) answer without the operator token: off.
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
    )
    install_producer_buffer()
    codec = Codec(settings.schema_registry_url, auth=settings.registry_auth)
    pipeline = Pipeline(settings, app, codec, Outbox(settings), datadir, worker_id)
    install_ordered_consumer(app, on_rewind=pipeline.metrics.reread)
    anchor_table(app, settings.partitions)
    pipeline.watchdog = Watchdog(app, pipeline.metrics.reread)
    pipeline.vitals = Vitals(app)

    @app.timer(10.0)
    async def watchdog() -> None:
        await pipeline.watchdog.check()

    return pipeline


def advertised_url(settings: Settings, web_host: str, web_port: int) -> str:
    """The worker's URL for its peers: Settings.web_advertised_url, else its bind address, or its
    hostname when bound to every address (0.0.0.0 is no address a peer can reach)."""
    if settings.web_advertised_url:
        return settings.web_advertised_url.rstrip("/")
    host = socket.gethostname() if web_host in ("0.0.0.0", "::", "") else web_host
    return f"http://{host}:{web_port}"


def to_iso(millis: int | None) -> str | None:
    return None if not millis else format_timestamp(millis)


__all__ = ["Pipeline", "advertised_url", "create_app", "to_iso"]
