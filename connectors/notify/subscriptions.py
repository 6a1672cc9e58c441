"""Webhook subscriptions in PostgreSQL (`webhook_subscriptions`), their secrets sealed at rest.

By default a subscription has its own secret, distinct from the tenant's inbound one (SPEC 7): a
`--secret` equal to one of the tenant's inbound ERP webhook secrets is refused, because a delivery
signed with it would be a valid inbound webhook for that tenant. The secret is sealed with
`stockledger.security.seal` (AES-256-GCM under the master key, the tenant as associated data).
With `--secret-from-tenant` the tenant's ERP webhook secret (the API's tenant registry, `stockledger
tenant add`) signs instead, an explicit choice the CLI warns about: `TENANT_SECRETS` is the API's
`webhook_secrets(engine, master_key, tenant) -> list[str]` (newest first, so a rotation reaches the
notifier: it signs with the newest). The URL is checked by `connectors.notify.guard`.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, text

from connectors.notify import guard
from connectors.notify.payload import EVENTS
from stockledger.security import new_token, seal, unseal
from stockledger.tenants import webhook_secrets

TENANT_SECRETS: Callable[[Engine, bytes, str], list[str]] = webhook_secrets


class SubscriptionError(ValueError):
    """A subscription that cannot be added or found (the CLI says it and exits 2)."""


@dataclass(frozen=True)
class Subscription:
    subscription_id: str
    tenant_id: str
    url: str
    events: tuple[str, ...]
    secret_from_tenant: bool
    created_at: datetime | None = None
    allow_private: bool = False


def check_url(url: str, allow_private: bool = False) -> str:
    """The URL, if a webhook may go there (connectors.notify.guard); SubscriptionError otherwise."""
    try:
        guard.check_url(url, allow_private)
    except ValueError as exc:
        raise SubscriptionError(str(exc)) from None
    return url


def parse_events(text_: str | None) -> tuple[str, ...]:
    if not text_:
        return ("inventory.change",)
    events = tuple(dict.fromkeys(e.strip() for e in text_.split(",") if e.strip()))
    unknown = [e for e in events if e not in EVENTS]
    if unknown or not events:
        raise SubscriptionError(f"unknown event type(s) {', '.join(unknown) or '(none)'}; known: {', '.join(EVENTS)}")
    return events


def add(engine: Engine, master_key: bytes, tenant: str, url: str, *, events: tuple[str, ...] = ("inventory.change",),
        secret: str | None = None, secret_from_tenant: bool = False,
        allow_private: bool = False) -> tuple[Subscription, str | None]:
    """Store a subscription; returns it and the secret to print once (generated when none was given;
    None with `secret_from_tenant`)."""
    check_url(url, allow_private)
    if secret_from_tenant:
        if secret is not None:
            raise SubscriptionError("give --secret or --secret-from-tenant, not both")
        if not TENANT_SECRETS(engine, master_key, tenant):
            raise SubscriptionError(f"tenant {tenant!r} has no webhook secret")
        sealed = None
    else:
        if secret is not None and len(secret) < 16:
            raise SubscriptionError("a webhook secret must have at least 16 characters")
        if secret is not None and any(hmac.compare_digest(secret.encode(), s.encode())
                                      for s in TENANT_SECRETS(engine, master_key, tenant)):
            raise SubscriptionError("this secret is the tenant's inbound webhook secret: deliveries signed with it "
                                    "would be accepted as inbound ERP webhooks; give another one (or none: a new one "
                                    "is made)")
        secret = secret if secret is not None else new_token("whsec_")
        sealed = seal(master_key, tenant, secret)
    sub = Subscription("wh_" + uuid.uuid4().hex[:16], tenant, url, events, secret_from_tenant,
                       allow_private=allow_private)
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO webhook_subscriptions (subscription_id, tenant_id, url, events, secret_sealed,
                                               secret_from_tenant, allow_private)
            VALUES (:id, :t, :url, :events, :sealed, :from_tenant, :allow_private)"""),
                     {"id": sub.subscription_id, "t": tenant, "url": url, "events": list(events), "sealed": sealed,
                      "from_tenant": secret_from_tenant, "allow_private": allow_private})
    return sub, (None if secret_from_tenant else secret)


def list_for(engine: Engine, tenant: str) -> list[Subscription]:
    with engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT subscription_id, tenant_id, url, events, secret_from_tenant, created_at, allow_private
              FROM webhook_subscriptions WHERE tenant_id = :t ORDER BY created_at, subscription_id"""),
            {"t": tenant}).all()
    return [Subscription(r[0], r[1], r[2], tuple(r[3]), r[4], r[5], r[6]) for r in rows]


def get(engine: Engine, subscription_id: str) -> Subscription:
    with engine.connect() as conn:
        r = conn.execute(text("""
            SELECT subscription_id, tenant_id, url, events, secret_from_tenant, created_at, allow_private
              FROM webhook_subscriptions WHERE subscription_id = :id"""), {"id": subscription_id}).first()
    if r is None:
        raise SubscriptionError(f"no subscription {subscription_id!r}")
    return Subscription(r[0], r[1], r[2], tuple(r[3]), r[4], r[5], r[6])


def remove(engine: Engine, subscription_id: str) -> Subscription:
    """Delete a subscription and its pending deliveries (its failures stay listed)."""
    with engine.begin() as conn:
        row = conn.execute(text("""
            DELETE FROM webhook_subscriptions WHERE subscription_id = :id
            RETURNING subscription_id, tenant_id, url, events, secret_from_tenant, created_at"""),
                           {"id": subscription_id}).first()
    if row is None:
        raise SubscriptionError(f"no subscription {subscription_id!r}")
    return Subscription(row[0], row[1], row[2], tuple(row[3]), row[4], row[5])


def by_tenant(conn: Connection, tenants: list[str], event: str) -> dict[str, list[str]]:
    """tenant -> ids of its subscriptions to `event`, read inside the batch's transaction and locked
    FOR SHARE, so a `webhook remove` waits for the batch instead of pulling a row from under it."""
    rows = conn.execute(text("""
        SELECT tenant_id, subscription_id FROM webhook_subscriptions
         WHERE tenant_id = ANY(CAST(:tenants AS text[])) AND :event = ANY(events) ORDER BY subscription_id
           FOR SHARE"""),
                        {"tenants": tenants, "event": event}).all()
    out: dict[str, list[str]] = {}
    for tenant, sid in rows:
        out.setdefault(tenant, []).append(sid)
    return out


class SecretResolver:
    """The secret that signs a subscription's deliveries: its own (unsealed once, then kept), or the
    tenant's newest webhook secret through TENANT_SECRETS (asked again at most every `ttl` seconds, so a
    rotation reaches the notifier within the rotation overlap)."""

    def __init__(self, engine: Engine, master_key: bytes, ttl: float = 60.0):
        self.engine = engine
        self.master_key = master_key
        self.ttl = ttl
        self._own: dict[str, str] = {}
        self._tenant: dict[str, tuple[float, str]] = {}

    def secret(self, subscription_id: str, tenant: str, sealed: bytes | None, from_tenant: bool, now: float) -> str:
        if not from_tenant:
            s = self._own.get(subscription_id)
            if s is None:
                s = self._own[subscription_id] = unseal(self.master_key, tenant, sealed)  # type: ignore[arg-type]
            return s
        cached = self._tenant.get(tenant)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        secrets = TENANT_SECRETS(self.engine, self.master_key, tenant)
        if not secrets:
            raise LookupError(f"tenant {tenant!r} has no webhook secret")
        self._tenant[tenant] = (now, secrets[0])
        return secrets[0]
