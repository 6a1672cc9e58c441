"""The books: documents, lines, journal, external refs, the sink's offsets, and the balance trigger.

Written out table by table (not `metadata.create_all`) so that this revision stays what it was when
later revisions change `stockledger/db/tables.py`.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MONEY = sa.Numeric(18, 4)
TS = sa.DateTime(timezone=True)
STATUSES = "('UNPAID', 'PARTIALLY_PAID', 'PAID')"


def _lines(name: str, parent: str, parent_id: str) -> None:
    op.create_table(
        name,
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column(parent_id, sa.Text, primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("sku", sa.Text, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("unit_price", MONEY, nullable=False),
        sa.Column("discount_percent", MONEY, nullable=False),
        sa.Column("tax_percent", MONEY, nullable=False),
        sa.Column("net", MONEY, nullable=False),
        sa.Column("tax", MONEY, nullable=False),
        sa.Column("total", MONEY, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", parent_id], [f"{parent}.tenant_id", f"{parent}.{parent_id}"],
                                ondelete="CASCADE", name=f"{name}_{parent}_fkey"),
        sa.CheckConstraint("quantity > 0", name=f"{name}_quantity_positive"),
        sa.CheckConstraint("total = net + tax", name=f"{name}_total_is_net_plus_tax"),
    )


def upgrade() -> None:
    op.create_table(
        "invoices",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("invoice_id", sa.Text, primary_key=True),
        sa.Column("sale_id", sa.Text, nullable=False),
        sa.Column("customer_ref", sa.Text),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("payment_terms", sa.Text, nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("net_total", MONEY, nullable=False),
        sa.Column("tax_total", MONEY, nullable=False),
        sa.Column("total", MONEY, nullable=False),
        sa.Column("paid_amount", MONEY, nullable=False, server_default=sa.text("0")),
        sa.Column("status", sa.Text, nullable=False, server_default=sa.text("'UNPAID'")),
        sa.CheckConstraint("total = net_total + tax_total", name="invoices_total_is_net_plus_tax"),
        sa.CheckConstraint(f"status IN {STATUSES}", name="invoices_status_known"),
    )
    _lines("invoice_lines", "invoices", "invoice_id")

    op.create_table(
        "credit_notes",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("credit_note_id", sa.Text, primary_key=True),
        sa.Column("refund_id", sa.Text, nullable=False),
        sa.Column("sale_id", sa.Text, nullable=False),
        sa.Column("invoice_id", sa.Text, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("refund_method", sa.Text, nullable=False),
        sa.Column("restock", sa.Boolean, nullable=False),
        sa.Column("issued_at", TS, nullable=False),
        sa.Column("net_total", MONEY, nullable=False),
        sa.Column("tax_total", MONEY, nullable=False),
        sa.Column("total", MONEY, nullable=False),
        sa.CheckConstraint("total = net_total + tax_total", name="credit_notes_total_is_net_plus_tax"),
    )
    _lines("credit_note_lines", "credit_notes", "credit_note_id")

    op.create_table(
        "payments",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("payment_id", sa.Text, primary_key=True),
        sa.Column("customer_ref", sa.Text),
        sa.Column("sale_id", sa.Text),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("reference", sa.Text),
        sa.Column("received_at", TS, nullable=False),
        sa.CheckConstraint("amount > 0", name="payments_amount_positive"),
    )
    op.create_table(
        "payment_allocations",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("payment_id", sa.Text, primary_key=True),
        sa.Column("invoice_id", sa.Text, primary_key=True),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("paid_after", MONEY, nullable=False),
        sa.Column("status_after", sa.Text, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "payment_id"], ["payments.tenant_id", "payments.payment_id"],
                                ondelete="CASCADE", name="payment_allocations_payments_fkey"),
        sa.CheckConstraint("amount > 0", name="payment_allocations_amount_positive"),
        sa.CheckConstraint("paid_after >= amount", name="payment_allocations_paid_after_covers_amount"),
        sa.CheckConstraint(f"status_after IN {STATUSES}", name="payment_allocations_status_known"),
    )
    op.create_index("payment_allocations_invoice_idx", "payment_allocations", ["tenant_id", "invoice_id"])

    op.create_table(
        "journal_entries",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("entry_id", sa.Text, primary_key=True),
        sa.Column("document_id", sa.Text, nullable=False),
        sa.Column("document_type", sa.Text, nullable=False),
        sa.Column("currency", sa.Text, nullable=False),
        sa.Column("posted_at", TS, nullable=False),
        sa.Column("description", sa.Text),
    )
    op.create_table(
        "journal_lines",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("entry_id", sa.Text, primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("debit", MONEY, nullable=False),
        sa.Column("credit", MONEY, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "entry_id"], ["journal_entries.tenant_id", "journal_entries.entry_id"],
                                ondelete="CASCADE", name="journal_lines_journal_entries_fkey"),
        sa.CheckConstraint("debit >= 0 AND credit >= 0", name="journal_lines_amounts_not_negative"),
        sa.CheckConstraint("debit = 0 OR credit = 0", name="journal_lines_one_sided"),
    )
    # Checked at commit (deferred), once all of an entry's lines are in: debits = credits exactly.
    op.execute("""
        CREATE FUNCTION journal_entry_assert_balanced(k_tenant text, k_entry text) RETURNS void
        LANGUAGE plpgsql AS $$
        DECLARE
            diff numeric;
        BEGIN
            SELECT coalesce(sum(debit) - sum(credit), 0) INTO diff
              FROM journal_lines WHERE tenant_id = k_tenant AND entry_id = k_entry;
            IF diff <> 0 THEN
                RAISE EXCEPTION 'journal entry % of tenant % does not balance: debits - credits = %',
                    k_entry, k_tenant, diff
                    USING ERRCODE = 'check_violation', CONSTRAINT = 'journal_lines_balance';
            END IF;
        END
        $$
    """)
    op.execute("""
        CREATE FUNCTION journal_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'DELETE' THEN
                PERFORM journal_entry_assert_balanced(NEW.tenant_id, NEW.entry_id);
            END IF;
            IF TG_OP <> 'INSERT' THEN
                PERFORM journal_entry_assert_balanced(OLD.tenant_id, OLD.entry_id);
            END IF;
            RETURN NULL;
        END
        $$
    """)
    op.execute("""
        CREATE CONSTRAINT TRIGGER journal_lines_balance
            AFTER INSERT OR UPDATE OR DELETE ON journal_lines
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION journal_entry_balanced()
    """)

    op.create_table(
        "external_refs",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, primary_key=True),
        sa.Column("external_id", sa.Text, primary_key=True),
        sa.Column("internal_id", sa.Text, nullable=False),
    )
    op.create_table(
        "sink_offsets",
        sa.Column("group_id", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.text("now()")),
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS journal_lines_balance ON journal_lines")
    op.execute("DROP FUNCTION IF EXISTS journal_entry_balanced()")
    op.execute("DROP FUNCTION IF EXISTS journal_entry_assert_balanced(text, text)")
    for name in ("sink_offsets", "external_refs", "journal_lines", "journal_entries", "payment_allocations",
                 "payments", "credit_note_lines", "credit_notes", "invoice_lines", "invoices"):
        op.drop_table(name)
