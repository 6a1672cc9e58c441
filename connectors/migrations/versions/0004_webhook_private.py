"""Webhook subscriptions remember whether the operator allowed a private address (issue 15).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Subscriptions made before this revision were accepted without the check: they keep working.
    op.add_column("webhook_subscriptions", sa.Column("allow_private", sa.Boolean, nullable=False,
                                                     server_default=sa.text("true")))
    op.alter_column("webhook_subscriptions", "allow_private", server_default=sa.text("false"))


def downgrade() -> None:
    op.drop_column("webhook_subscriptions", "allow_private")
