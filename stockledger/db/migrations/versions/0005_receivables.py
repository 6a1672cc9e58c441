"""Receivables and the accountant's views (issue 16, SPEC 2 "The books reconcile", SPEC 9).

Invoices gain `due_date` (ON_ACCOUNT: issue day + the customer's payment terms), `credited_amount`
(what CREDIT credit notes settled of it), `first_payment_at` and `last_payment_at`, and the status
CREDITED (settled by credit notes alone). The views are the books as an accountant reads them; the
`stockledger books` commands read nothing else:

- `books_journal`: every journal line with its entry's tenant, currency, document and posting time.
- `books_receivable_items`: what customers owe, movement by movement: + an ON_ACCOUNT invoice,
  - a payment applied to an invoice, - a CREDIT credit note (against its invoice; what exceeds the
  invoice is the customer's credit). Their sum per tenant and currency is what 1100 must hold.
- `books_reconciliation`: SPEC 2's reconciliations per tenant and currency, the ledger's figure, the
  subledger's figure and the difference (0 when the books reconcile).
- `books_exceptions`: documents and journal entries that do not match one to one (a document of
  non-zero total without its entry, an entry without its document or with fewer than two lines, an
  entry that does not balance).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(18, 4)
TS = sa.DateTime(timezone=True)

VIEWS = {
    "books_journal": """
        SELECT e.tenant_id, e.currency, e.entry_id, e.document_id, e.document_type, e.posted_at,
               l.line_no, l.account,
               CASE l.account WHEN '1000' THEN 'Cash' WHEN '1010' THEN 'Card and mobile clearing'
                              WHEN '1020' THEN 'Bank' WHEN '1100' THEN 'Accounts receivable'
                              WHEN '2100' THEN 'Tax payable' WHEN '4000' THEN 'Sales revenue'
                              WHEN '4010' THEN 'Sales returns' END AS account_name,
               l.debit, l.credit
          FROM journal_entries AS e
          JOIN journal_lines AS l ON l.tenant_id = e.tenant_id AND l.entry_id = e.entry_id
    """,
    "books_receivable_items": """
        SELECT i.tenant_id, i.currency, i.customer_ref, i.invoice_id, i.due_date, i.issued_at AS booked_at,
               'invoice' AS kind, i.invoice_id AS document_id, i.total AS amount
          FROM invoices AS i
         WHERE i.payment_terms = 'ON_ACCOUNT'
        UNION ALL
        SELECT p.tenant_id, p.currency, p.customer_ref, a.invoice_id, NULL, p.received_at,
               'payment', p.payment_id, -a.amount
          FROM payments AS p
          JOIN payment_allocations AS a ON a.tenant_id = p.tenant_id AND a.payment_id = p.payment_id
         WHERE p.sale_id IS NULL  -- a PAID sale's own payments never pass through receivables
        UNION ALL
        SELECT c.tenant_id, c.currency, i.customer_ref, c.invoice_id, NULL, c.issued_at,
               'credit_note', c.credit_note_id, -c.total
          FROM credit_notes AS c
          JOIN invoices AS i ON i.tenant_id = c.tenant_id AND i.invoice_id = c.invoice_id
         WHERE c.refund_method = 'CREDIT'
    """,
    "books_reconciliation": """
        WITH ledger AS (
            SELECT tenant_id, currency, account, sum(debit) - sum(credit) AS balance
              FROM books_journal GROUP BY tenant_id, currency, account
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
        ), checks (position, name, accounts, figures, sign) AS (VALUES
            (1, 'accounts receivable (1100) = what customers owe (invoices on account - payments - CREDIT refunds)',
             ARRAY['1100'], ARRAY['receivable'], 1),
            (2, 'sales revenue (4000) - sales returns (4010) = invoice nets - credit note nets',
             ARRAY['4000', '4010'], ARRAY['revenue'], -1),
            (3, 'tax payable (2100) = invoice taxes - credit note taxes', ARRAY['2100'], ARRAY['tax'], -1),
            (4, 'cash (1000) = CASH payments - CASH refunds', ARRAY['1000'], ARRAY['method:CASH'], 1),
            (5, 'card and mobile clearing (1010) = CARD and MOBILE payments - refunds',
             ARRAY['1010'], ARRAY['method:CARD', 'method:MOBILE'], 1),
            (6, 'bank (1020) = BANK payments - BANK refunds', ARRAY['1020'], ARRAY['method:BANK'], 1)
        )
        SELECT b.tenant_id, b.currency, c.position, c.name AS reconciliation,
               coalesce(l.amount, 0) AS ledger, coalesce(d.amount, 0) AS subledger,
               coalesce(l.amount, 0) - coalesce(d.amount, 0) AS difference
          FROM books AS b CROSS JOIN checks AS c
          LEFT JOIN LATERAL (SELECT c.sign * sum(balance) AS amount FROM ledger
                              WHERE ledger.tenant_id = b.tenant_id AND ledger.currency = b.currency
                                AND ledger.account = ANY (c.accounts)) AS l ON true
          LEFT JOIN LATERAL (SELECT sum(amount) AS amount FROM documents
                              WHERE documents.tenant_id = b.tenant_id AND documents.currency = b.currency
                                AND documents.figure = ANY (c.figures)) AS d ON true
    """,
    "books_exceptions": """
        WITH documents AS (
            SELECT tenant_id, currency, invoice_id AS document_id, total FROM invoices
            UNION ALL SELECT tenant_id, currency, credit_note_id, total FROM credit_notes
            UNION ALL SELECT tenant_id, currency, payment_id, amount FROM payments WHERE sale_id IS NULL
        ), entries AS (
            SELECT e.tenant_id, e.currency, e.entry_id, e.document_id, count(l.line_no) AS lines,
                   coalesce(sum(l.debit), 0) AS debit, coalesce(sum(l.credit), 0) AS credit
              FROM journal_entries AS e
              LEFT JOIN journal_lines AS l ON l.tenant_id = e.tenant_id AND l.entry_id = e.entry_id
             GROUP BY e.tenant_id, e.currency, e.entry_id, e.document_id
        )
        SELECT d.tenant_id, d.currency, d.document_id, 'document of total ' || d.total || ' has no journal entry'
               AS problem
          FROM documents AS d
         WHERE d.total <> 0 AND NOT EXISTS (SELECT 1 FROM entries AS e WHERE e.tenant_id = d.tenant_id
                                                                        AND e.document_id = d.document_id)
        UNION ALL
        SELECT e.tenant_id, e.currency, e.document_id, 'journal entry ' || e.entry_id || ' has no document'
          FROM entries AS e
         WHERE NOT EXISTS (SELECT 1 FROM documents AS d WHERE d.tenant_id = e.tenant_id
                                                          AND d.document_id = e.document_id)
        UNION ALL
        SELECT tenant_id, currency, document_id, 'journal entry ' || entry_id || ' has ' || lines || ' lines'
          FROM entries WHERE lines < 2
        UNION ALL
        SELECT tenant_id, currency, document_id,
               'journal entry ' || entry_id || ' does not balance: debits ' || debit || ', credits ' || credit
          FROM entries WHERE debit <> credit
    """,
}

# The settled state of every invoice, as the sink keeps it (connectors/store.py, _SETTLE) from then on.
_BACKFILL = """
    UPDATE invoices AS i SET paid_amount = s.paid, credited_amount = s.credited, status = s.status,
                             first_payment_at = s.first_at, last_payment_at = s.last_at
      FROM (SELECT i.tenant_id, i.invoice_id, p.paid, least(coalesce(c.total, 0), i.total - p.paid) AS credited,
                   CASE WHEN i.total - p.paid - least(coalesce(c.total, 0), i.total - p.paid) = 0
                        THEN CASE WHEN p.paid = 0 AND coalesce(c.total, 0) > 0 THEN 'CREDITED' ELSE 'PAID' END
                        WHEN p.paid > 0 OR coalesce(c.total, 0) > 0 THEN 'PARTIALLY_PAID' ELSE 'UNPAID' END
                       AS status, p.first_at, p.last_at
              FROM invoices AS i
              CROSS JOIN LATERAL (
                  SELECT coalesce(max(a.paid_after), 0) AS paid, min(py.received_at) AS first_at,
                         max(py.received_at) AS last_at
                    FROM payment_allocations AS a
                    JOIN payments AS py ON py.tenant_id = a.tenant_id AND py.payment_id = a.payment_id
                   WHERE a.tenant_id = i.tenant_id AND a.invoice_id = i.invoice_id) AS p
              LEFT JOIN LATERAL (
                  SELECT sum(cn.total) AS total FROM credit_notes AS cn
                   WHERE cn.tenant_id = i.tenant_id AND cn.invoice_id = i.invoice_id
                     AND cn.refund_method = 'CREDIT') AS c ON true) AS s
     WHERE i.tenant_id = s.tenant_id AND i.invoice_id = s.invoice_id
"""


def upgrade() -> None:
    op.add_column("invoices", sa.Column("due_date", sa.Date))
    op.add_column("invoices", sa.Column("credited_amount", MONEY, nullable=False, server_default=sa.text("0")))
    op.add_column("invoices", sa.Column("first_payment_at", TS))
    op.add_column("invoices", sa.Column("last_payment_at", TS))
    op.drop_constraint("invoices_status_known", "invoices", type_="check")
    op.create_check_constraint("invoices_status_known", "invoices",
                               "status IN ('UNPAID', 'PARTIALLY_PAID', 'PAID', 'CREDITED')")
    op.create_index("credit_notes_invoice_idx", "credit_notes", ["tenant_id", "invoice_id"])
    op.create_index("journal_entries_document_idx", "journal_entries", ["tenant_id", "document_id"])
    op.execute(_BACKFILL)
    for name, sql in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_index("journal_entries_document_idx", "journal_entries")
    op.drop_index("credit_notes_invoice_idx", "credit_notes")
    op.drop_constraint("invoices_status_known", "invoices", type_="check")
    op.execute("UPDATE invoices SET status = 'PAID' WHERE status = 'CREDITED'")
    op.create_check_constraint("invoices_status_known", "invoices", "status IN ('UNPAID', 'PARTIALLY_PAID', 'PAID')")
    for column in ("last_payment_at", "first_payment_at", "credited_amount", "due_date"):
        op.drop_column("invoices", column)
