"""Account roles: the books reconcile by role, whatever codes a tenant's chart gives them (SPEC 8, issue 19).

A tenant may override the chart of accounts (`tenant.configured` `accounts`, e.g. receivable 1105 instead
of 1100). Each `ledger.journal` line now names its role (cash, clearing, bank, receivable, tax_payable,
revenue, returns); `journal_lines.role` keeps it. A line without one (posted before, or inserted by hand)
takes the role SPEC's chart gives its code. `books_journal` shows the role, and `books_reconciliation`
compares each role's balance (not a fixed code's) with its subledger; the reconciliations keep their names.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_DEFAULT_ROLE = """CASE l.account WHEN '1000' THEN 'cash' WHEN '1010' THEN 'clearing' WHEN '1020' THEN 'bank'
                                  WHEN '1100' THEN 'receivable' WHEN '2100' THEN 'tax_payable'
                                  WHEN '4000' THEN 'revenue' WHEN '4010' THEN 'returns' END"""

BOOKS_JOURNAL = f"""
    SELECT e.tenant_id, e.currency, e.entry_id, e.document_id, e.document_type, e.posted_at,
           l.line_no, l.account,
           CASE coalesce(l.role, {_DEFAULT_ROLE})
                WHEN 'cash' THEN 'Cash' WHEN 'clearing' THEN 'Card and mobile clearing' WHEN 'bank' THEN 'Bank'
                WHEN 'receivable' THEN 'Accounts receivable' WHEN 'tax_payable' THEN 'Tax payable'
                WHEN 'revenue' THEN 'Sales revenue' WHEN 'returns' THEN 'Sales returns' END AS account_name,
           l.debit, l.credit, coalesce(l.role, {_DEFAULT_ROLE}) AS role
      FROM journal_entries AS e
      JOIN journal_lines AS l ON l.tenant_id = e.tenant_id AND l.entry_id = e.entry_id
"""

# As revision 0005's, but the ledger side sums the accounts of each role.
BOOKS_RECONCILIATION = """
    WITH ledger AS (
        SELECT tenant_id, currency, role, sum(debit) - sum(credit) AS balance
          FROM books_journal GROUP BY tenant_id, currency, role
    ), documents AS (
        SELECT tenant_id, currency, 'revenue' AS figure, net_total AS amount FROM invoices
        UNION ALL SELECT tenant_id, currency, 'revenue', -net_total FROM credit_notes
        UNION ALL SELECT tenant_id, currency, 'tax', tax_total FROM invoices
        UNION ALL SELECT tenant_id, currency, 'tax', -tax_total FROM credit_notes
        UNION ALL SELECT tenant_id, currency, 'receivable', amount FROM books_receivable_items
        UNION ALL SELECT tenant_id, currency, 'method:' || method, amount FROM payments
        UNION ALL SELECT tenant_id, currency, 'method:' || refund_method, -total FROM credit_notes
                   WHERE refund_method <> 'CREDIT'
    ), books AS (
        SELECT tenant_id, currency FROM ledger UNION SELECT tenant_id, currency FROM documents
    ), checks (position, name, roles, figures, sign) AS (VALUES
        (1, 'accounts receivable (1100) = what customers owe (invoices on account - payments - CREDIT refunds)',
         ARRAY['receivable'], ARRAY['receivable'], 1),
        (2, 'sales revenue (4000) - sales returns (4010) = invoice nets - credit note nets',
         ARRAY['revenue', 'returns'], ARRAY['revenue'], -1),
        (3, 'tax payable (2100) = invoice taxes - credit note taxes', ARRAY['tax_payable'], ARRAY['tax'], -1),
        (4, 'cash (1000) = CASH payments - CASH refunds', ARRAY['cash'], ARRAY['method:CASH'], 1),
        (5, 'card and mobile clearing (1010) = CARD and MOBILE payments - refunds',
         ARRAY['clearing'], ARRAY['method:CARD', 'method:MOBILE'], 1),
        (6, 'bank (1020) = BANK payments - BANK refunds', ARRAY['bank'], ARRAY['method:BANK'], 1)
    )
    SELECT b.tenant_id, b.currency, c.position, c.name AS reconciliation,
           coalesce(l.amount, 0) AS ledger, coalesce(d.amount, 0) AS subledger,
           coalesce(l.amount, 0) - coalesce(d.amount, 0) AS difference
      FROM books AS b CROSS JOIN checks AS c
      LEFT JOIN LATERAL (SELECT c.sign * sum(balance) AS amount FROM ledger
                          WHERE ledger.tenant_id = b.tenant_id AND ledger.currency = b.currency
                            AND ledger.role = ANY (c.roles)) AS l ON true
      LEFT JOIN LATERAL (SELECT sum(amount) AS amount FROM documents
                          WHERE documents.tenant_id = b.tenant_id AND documents.currency = b.currency
                            AND documents.figure = ANY (c.figures)) AS d ON true
"""


def upgrade() -> None:
    op.add_column("journal_lines", sa.Column("role", sa.Text))
    op.execute("DROP VIEW books_reconciliation")
    op.execute(f"CREATE OR REPLACE VIEW books_journal AS {BOOKS_JOURNAL}")
    op.execute(f"CREATE VIEW books_reconciliation AS {BOOKS_RECONCILIATION}")


def downgrade() -> None:
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("receivables_0005", Path(__file__).with_name("0005_receivables.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before = module.VIEWS
    op.execute("DROP VIEW books_reconciliation")
    op.execute("DROP VIEW books_journal")
    op.execute(f"CREATE VIEW books_journal AS {before['books_journal']}")
    op.execute(f"CREATE VIEW books_reconciliation AS {before['books_reconciliation']}")
    op.drop_column("journal_lines", "role")
