"""Shipments, price sources and order fulfilment in the books (issues 19 and 20; SPEC 8 and 9).

- `shipments` and `shipment_lines`: one delivery note per accepted `order.shipped` (topic
  `ledger.shipments`), the order (sale_id) and its invoice, where and when it left, and the quantity per SKU.
- `invoice_lines` and `credit_note_lines` gain `price_source` (LINE, PRICE_LIST, CATALOG) and
  `price_list_id`: how each line was priced (NULL for documents booked before price lists).
- `books_fulfilment`: per order and SKU, the quantity invoiced (ordered), shipped (shipment lines) and
  cancelled (lines of the credit notes of `order.cancelled`, found through external_refs kind cancellation).
- `books_fulfilment_exceptions`: orders whose shipped plus cancelled quantity of a SKU exceeds what was
  ordered (a shipment of an unknown order included), and lines priced by PRICE_LIST that name no list;
  `stockledger books check` reports them with the other exceptions.

Credit notes of cancellations already name their order (`sale_id`) and invoice (`invoice_id`), and
`external_refs` maps the cancellation id to the credit note: no new column is needed for that link.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

VIEWS = {
    "books_fulfilment": """
        WITH ordered AS (
            SELECT i.tenant_id, i.sale_id, i.currency, l.sku, sum(l.quantity) AS quantity
              FROM invoices AS i
              JOIN invoice_lines AS l ON l.tenant_id = i.tenant_id AND l.invoice_id = i.invoice_id
             GROUP BY i.tenant_id, i.sale_id, i.currency, l.sku
        ), shipped AS (
            SELECT s.tenant_id, s.sale_id, l.sku, sum(l.quantity) AS quantity
              FROM shipments AS s
              JOIN shipment_lines AS l ON l.tenant_id = s.tenant_id AND l.shipment_id = s.shipment_id
             GROUP BY s.tenant_id, s.sale_id, l.sku
        ), cancelled AS (
            SELECT c.tenant_id, c.sale_id, l.sku, sum(l.quantity) AS quantity
              FROM credit_notes AS c
              JOIN external_refs AS r ON r.tenant_id = c.tenant_id AND r.kind = 'cancellation'
                                     AND r.internal_id = c.credit_note_id
              JOIN credit_note_lines AS l ON l.tenant_id = c.tenant_id AND l.credit_note_id = c.credit_note_id
             GROUP BY c.tenant_id, c.sale_id, l.sku
        )
        SELECT tenant_id, o.currency, sale_id, sku, coalesce(o.quantity, 0) AS ordered,
               coalesce(s.quantity, 0) AS shipped, coalesce(c.quantity, 0) AS cancelled
          FROM ordered AS o
          FULL JOIN shipped AS s USING (tenant_id, sale_id, sku)
          FULL JOIN cancelled AS c USING (tenant_id, sale_id, sku)
    """,
    "books_fulfilment_exceptions": """
        SELECT tenant_id, currency, sale_id AS document_id,
               'order ' || sale_id || ' sku ' || sku || ': shipped ' || shipped || ' + cancelled ' || cancelled
               || ' exceeds ordered ' || ordered AS problem
          FROM books_fulfilment
         WHERE shipped + cancelled > ordered
        UNION ALL
        SELECT i.tenant_id, i.currency, i.invoice_id,
               'line ' || l.line_no || ' priced by PRICE_LIST names no price list'
          FROM invoices AS i
          JOIN invoice_lines AS l ON l.tenant_id = i.tenant_id AND l.invoice_id = i.invoice_id
         WHERE l.price_source = 'PRICE_LIST' AND l.price_list_id IS NULL
        UNION ALL
        SELECT c.tenant_id, c.currency, c.credit_note_id,
               'line ' || l.line_no || ' priced by PRICE_LIST names no price list'
          FROM credit_notes AS c
          JOIN credit_note_lines AS l ON l.tenant_id = c.tenant_id AND l.credit_note_id = c.credit_note_id
         WHERE l.price_source = 'PRICE_LIST' AND l.price_list_id IS NULL
    """,
}
LINE_TABLES = ("invoice_lines", "credit_note_lines")


def upgrade() -> None:
    for table in LINE_TABLES:
        op.add_column(table, sa.Column("price_source", sa.Text))
        op.add_column(table, sa.Column("price_list_id", sa.Text))
    op.create_table(
        "shipments",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("shipment_id", sa.Text, primary_key=True),
        sa.Column("source_shipment_id", sa.Text, nullable=False),
        sa.Column("sale_id", sa.Text, nullable=False),
        sa.Column("invoice_id", sa.Text),
        sa.Column("location_id", sa.Text),
        sa.Column("shipped_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("shipments_sale_idx", "shipments", ["tenant_id", "sale_id"])
    op.create_table(
        "shipment_lines",
        sa.Column("tenant_id", sa.Text, primary_key=True),
        sa.Column("shipment_id", sa.Text, primary_key=True),
        sa.Column("line_no", sa.Integer, primary_key=True),
        sa.Column("sku", sa.Text, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id", "shipment_id"], ["shipments.tenant_id", "shipments.shipment_id"],
                                ondelete="CASCADE", name="shipment_lines_shipments_fkey"),
        sa.CheckConstraint("quantity > 0", name="shipment_lines_quantity_positive"),
    )
    for name, sql in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def downgrade() -> None:
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table("shipment_lines")
    op.drop_index("shipments_sale_idx", "shipments")
    op.drop_table("shipments")
    for table in LINE_TABLES:
        op.drop_column(table, "price_list_id")
        op.drop_column(table, "price_source")
