"""Outbound webhooks (issue 12): subscriptions, the delivery state per (subscription, SKU), failures.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_subscriptions",
        sa.Column("subscription_id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("events", sa.ARRAY(sa.Text), nullable=False),
        sa.Column("secret_sealed", sa.LargeBinary),
        sa.Column("secret_from_tenant", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("created_at", TS, nullable=False, server_default=sa.text("now()")),
        sa.CheckConstraint("secret_sealed IS NOT NULL OR secret_from_tenant", name="webhook_subscriptions_has_secret"),
    )
    op.create_index("webhook_subscriptions_tenant", "webhook_subscriptions", ["tenant_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("subscription_id", sa.Text, primary_key=True),
        sa.Column("sku", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("pending_offset", sa.BigInteger),
        sa.Column("pending_event_id", sa.Text),
        sa.Column("pending_body", sa.Text),
        sa.Column("pending_record_ms", sa.BigInteger),
        sa.Column("delivered_offset", sa.BigInteger),
        sa.Column("delivered_event_id", sa.Text),
        sa.Column("delivered_at", TS),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("first_failed_at", TS),
        sa.Column("next_attempt_at", TS),
        sa.Column("lease_until", TS),
        sa.Column("last_error", sa.Text),
        sa.ForeignKeyConstraint(["subscription_id"], ["webhook_subscriptions.subscription_id"], ondelete="CASCADE",
                                name="webhook_deliveries_subscription_fkey"),
    )
    op.create_index("webhook_deliveries_due", "webhook_deliveries", ["next_attempt_at"],
                    postgresql_where=sa.text("pending_offset IS NOT NULL"))
    op.create_table(
        "webhook_failures",
        sa.Column("failure_id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("subscription_id", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("sku", sa.Text, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("status", sa.Integer),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("first_failed_at", TS),
        sa.Column("created_at", TS, nullable=False, server_default=sa.text("now()")),
        sa.CheckConstraint("kind IN ('data_error', 'rejected', 'dead_letter')", name="webhook_failures_kind_known"),
        sa.UniqueConstraint("subscription_id", "event_id", "kind", name="webhook_failures_once"),
    )
    op.create_index("webhook_failures_tenant", "webhook_failures", ["tenant_id", "created_at"])


def downgrade() -> None:
    for name in ("webhook_failures", "webhook_deliveries", "webhook_subscriptions"):
        op.drop_table(name)
