"""The HTTP API service's state: tenants, their credentials, idempotency records and webhook event ids.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_tenants",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.text("now()")),
    )
    op.create_table(
        "api_credentials",
        sa.Column("credential_id", sa.Text, primary_key=True),
        sa.Column("tenant_id", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("credential_hash", sa.Text),
        sa.Column("sealed", sa.LargeBinary),
        sa.Column("created_at", TS, nullable=False, server_default=sa.text("now()")),
        sa.Column("expires_at", TS),
        sa.ForeignKeyConstraint(["tenant_id"], ["api_tenants.tenant_id"], ondelete="CASCADE",
                                name="api_credentials_api_tenants_fkey"),
        sa.CheckConstraint("kind IN ('key', 'token', 'webhook_secret')", name="api_credentials_kind_known"),
        sa.CheckConstraint("(credential_hash IS NULL) <> (sealed IS NULL)", name="api_credentials_hash_or_sealed"),
    )
    op.create_index("api_credentials_hash_idx", "api_credentials", ["credential_hash"], unique=True)
    op.create_index("api_credentials_tenant_idx", "api_credentials", ["tenant_id", "kind"])
    op.create_table(
        "api_requests",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("request_key", sa.Text, primary_key=True),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("claimed_at", TS, nullable=False),
        sa.Column("event_time", TS, nullable=False),
        sa.Column("response_status", sa.Integer),
        sa.Column("response_headers", sa.Text),
        sa.Column("response_body", sa.LargeBinary),
        sa.Column("expires_at", TS, nullable=False),
        sa.CheckConstraint("state IN ('running', 'done', 'released')", name="api_requests_state_known"),
        sa.CheckConstraint("state <> 'done' OR response_status IS NOT NULL", name="api_requests_done_has_answer"),
    )
    op.create_index("api_requests_expires_idx", "api_requests", ["expires_at"])


def downgrade() -> None:
    op.drop_table("api_requests")
    op.drop_table("api_credentials")
    op.drop_table("api_tenants")
