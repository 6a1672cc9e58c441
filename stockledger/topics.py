"""The topic catalogue of the contract (SPEC sections 1 and 3): names, keys, schemas, compaction."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient, NewTopic


@dataclass(frozen=True)
class TopicSpec:
    name: str
    schema: str  # file stem in stockledger/schemas/
    key_field: str | None = None  # the natural id inside `data`, for input topics ("": the key is the tenant_id)
    event_types: tuple[str, ...] = ()
    compacted: bool = False
    has_dlq: bool = True


INPUTS = (
    TopicSpec("catalog.updates", "catalog_update", "product_group_id", ("catalog.update",)),
    TopicSpec("inventory.changes", "inventory_change", "sku", ("inventory.change",)),
    TopicSpec("sales", "sale", "sale_id", ("sale.completed", "order.placed", "order.shipped", "order.cancelled",
                                            "order.released")),
    TopicSpec("refunds", "refund", "sale_id", ("refund.issued",)),
    TopicSpec("payments", "payment", "customer_ref", ("payment.received", "payment.failed")),
    TopicSpec("customers", "customer_credit", "customer_ref", ("customer.credit",)),
    TopicSpec("price.lists", "price_list", "price_list_id", ("price_list.updated",)),
    TopicSpec("tenant.settings", "tenant_settings", "", ("tenant.configured",)),  # SPEC 8: keyed by tenant_id
)
OUTPUTS = (
    TopicSpec("stock.levels", "stock_level", compacted=True, has_dlq=False),
    TopicSpec("inventory.alerts", "inventory_alert", has_dlq=False),
    TopicSpec("sales.outcomes", "sale_outcome", has_dlq=False),
    TopicSpec("ledger.invoices", "invoice"),
    TopicSpec("ledger.credit_notes", "credit_note"),
    TopicSpec("ledger.payments", "ledger_payment"),
    TopicSpec("ledger.journal", "journal_entry"),
    TopicSpec("ledger.external_refs", "external_ref"),
    TopicSpec("catalog.groups", "catalog_group", compacted=True, has_dlq=False),  # issue 20: newest per group
    TopicSpec("ledger.shipments", "shipment"),  # SPEC 8: what left the warehouse for an order
)
# A worker group's own topics (JSON, created by Faust), prefixed with its app id like Faust's
# changelogs, so two groups on one cluster (a benchmark beside the demo) never read each other's.
# The tenant log (streams/tenantlog.py) and the fold's state changelog (streams/state.py, compacted).
TENANT_LOG, STATE = "tenant-log", "state"
INTERNAL = (TENANT_LOG, STATE)
COMPACTED_INTERNAL = (STATE,)


def internal_topic(app_id: str, name: str) -> str:
    """The one place an internal topic's name is built: `<app id>-<name>`."""
    return f"{app_id}-{name}"


def tenant_log_topic(app_id: str) -> str:
    return internal_topic(app_id, TENANT_LOG)


def state_topic(app_id: str) -> str:
    return internal_topic(app_id, STATE)


def stream_inputs(app_id: str) -> tuple[str, ...]:
    """Every topic a worker group consumes: the contract inputs and its tenant log."""
    return tuple(t.name for t in INPUTS) + (tenant_log_topic(app_id),)


def internal_topics(app_id: str) -> dict[str, bool]:
    """A worker group's own topics and whether each is compacted."""
    return {internal_topic(app_id, n): n in COMPACTED_INTERNAL for n in INTERNAL}


DLQ_SCHEMA = "dead_letter"
DLQ_SUFFIX = ".dlq"

BY_NAME: dict[str, TopicSpec] = {t.name: t for t in INPUTS + OUTPUTS}
for _t in INPUTS + OUTPUTS:
    if _t.has_dlq:
        BY_NAME[_t.name + DLQ_SUFFIX] = TopicSpec(_t.name + DLQ_SUFFIX, DLQ_SCHEMA, has_dlq=False)


def spec(topic: str) -> TopicSpec:
    """The contract of a topic; unknown names are a usage error, not a KeyError."""
    try:
        return BY_NAME[topic]
    except KeyError:
        raise ValueError(f"unknown topic {topic!r}; known: {', '.join(sorted(BY_NAME))}") from None


def ensure_topics(bootstrap: str | dict, partitions: int, names: list[str] | None = None,
                  log: Callable[[str], None] = lambda _m: None, compacted: tuple[str, ...] = ()) -> list[str]:
    """Create the contract topics (or `names`) that do not exist yet; returns the names created.
    `bootstrap` is a server list or a client config (`Settings.kafka_config()`, with its security).
    `compacted` names further topics to compact."""
    admin = AdminClient({"bootstrap.servers": bootstrap} if isinstance(bootstrap, str) else dict(bootstrap))
    existing = set(admin.list_topics(timeout=15).topics)
    wanted = names if names is not None else sorted(BY_NAME)
    new = []
    for name in wanted:
        if name in existing:
            continue
        compact = name in compacted or BY_NAME.get(name, TopicSpec(name, "")).compacted
        config = {"cleanup.policy": "compact", "max.message.bytes": str(16 * 1024 * 1024)} if compact else {}
        new.append(NewTopic(name, num_partitions=partitions, replication_factor=1, config=config))
    if not new:
        return []
    created = []
    for name, fut in admin.create_topics(new, operation_timeout=30).items():
        try:
            fut.result()
            created.append(name)
            log(f"created topic {name}")
        except Exception as exc:  # a concurrent creator is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    return created
