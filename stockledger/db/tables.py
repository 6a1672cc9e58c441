"""The books in PostgreSQL (SPEC section 4), as SQLAlchemy Core tables.

Primary keys are the deterministic document ids (tenant_id + id, plus a line number for lines),
so a record written twice is the same row and `INSERT ... ON CONFLICT DO NOTHING` is the second
guard behind the offsets stored with every batch. Money is NUMERIC(18,4) (the Avro decimal(18,4)),
read and written as Python Decimal. The migrations in `stockledger/db/migrations` create exactly this
(a test compares them); the journal balance check is a constraint trigger that only a migration
can express, named here so the code that writes can refer to it.
"""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

Money = Numeric(18, 4, asdecimal=True)
INVOICE_STATUSES = ("UNPAID", "PARTIALLY_PAID", "PAID", "CREDITED")  # CREDITED: settled by credit notes alone
ALLOCATION_STATUSES = ("UNPAID", "PARTIALLY_PAID", "PAID")
JOURNAL_BALANCE_TRIGGER = "journal_lines_balance"  # DEFERRABLE INITIALLY DEFERRED constraint trigger
JOURNAL_BALANCE_FUNCTION = "journal_entry_balanced"


def _status_check(column: str, name: str, statuses: tuple[str, ...] = INVOICE_STATUSES) -> CheckConstraint:
    values = ", ".join(f"'{s}'" for s in statuses)
    return CheckConstraint(f"{column} IN ({values})", name=name)


def _document_lines(name: str, parent: str, parent_id: str) -> Table:
    """Invoice and credit note lines share one shape (schemas InvoiceLine / CreditNoteLine)."""
    return Table(
        name, metadata,
        Column("tenant_id", Text, primary_key=True),
        Column(parent_id, Text, primary_key=True),
        Column("line_no", Integer, primary_key=True),
        Column("sku", Text, nullable=False),
        Column("quantity", BigInteger, nullable=False),
        Column("unit_price", Money, nullable=False),
        Column("discount_percent", Money, nullable=False),
        Column("tax_percent", Money, nullable=False),
        Column("net", Money, nullable=False),
        Column("tax", Money, nullable=False),
        Column("total", Money, nullable=False),
        # SPEC 9 (revision 0006): how the line (an invoice's, or the invoice line a credit note reverses) was
        # priced: LINE (the producer's price), PRICE_LIST (then price_list_id names the list) or CATALOG;
        # NULL for documents booked before price lists
        Column("price_source", Text),
        Column("price_list_id", Text),
        ForeignKeyConstraint(["tenant_id", parent_id], [f"{parent}.tenant_id", f"{parent}.{parent_id}"],
                             ondelete="CASCADE", name=f"{name}_{parent}_fkey"),
        CheckConstraint("quantity > 0", name=f"{name}_quantity_positive"),
        CheckConstraint("total = net + tax", name=f"{name}_total_is_net_plus_tax"),
    )


invoices = Table(
    "invoices", metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("invoice_id", Text, primary_key=True),
    Column("sale_id", Text, nullable=False),
    Column("customer_ref", Text),
    Column("channel", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("payment_terms", Text, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("net_total", Money, nullable=False),
    Column("tax_total", Money, nullable=False),
    Column("total", Money, nullable=False),
    # Settled state, derived by the sink from payment allocations (the highest paid_after) and CREDIT credit
    # notes (capped at what payments left), so arrival order does not matter (store._SETTLE).
    Column("paid_amount", Money, nullable=False, server_default=text("0")),
    Column("status", Text, nullable=False, server_default=text("'UNPAID'")),
    Column("due_date", Date),  # ON_ACCOUNT: issue day + the customer's payment terms (revision 0005)
    Column("credited_amount", Money, nullable=False, server_default=text("0")),
    Column("first_payment_at", DateTime(timezone=True)),
    Column("last_payment_at", DateTime(timezone=True)),
    CheckConstraint("total = net_total + tax_total", name="invoices_total_is_net_plus_tax"),
    _status_check("status", "invoices_status_known"),
)

invoice_lines = _document_lines("invoice_lines", "invoices", "invoice_id")

credit_notes = Table(
    "credit_notes", metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("credit_note_id", Text, primary_key=True),
    Column("refund_id", Text, nullable=False),
    Column("sale_id", Text, nullable=False),
    Column("invoice_id", Text, nullable=False),  # no foreign key: the invoice may arrive later
    Column("currency", Text, nullable=False),
    Column("refund_method", Text, nullable=False),
    Column("restock", Boolean, nullable=False),
    Column("issued_at", DateTime(timezone=True), nullable=False),
    Column("net_total", Money, nullable=False),
    Column("tax_total", Money, nullable=False),
    Column("total", Money, nullable=False),
    CheckConstraint("total = net_total + tax_total", name="credit_notes_total_is_net_plus_tax"),
)

credit_note_lines = _document_lines("credit_note_lines", "credit_notes", "credit_note_id")

payments = Table(
    "payments", metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("payment_id", Text, primary_key=True),
    Column("customer_ref", Text),
    Column("sale_id", Text),
    Column("method", Text, nullable=False),
    Column("amount", Money, nullable=False),
    Column("currency", Text, nullable=False),
    Column("reference", Text),
    Column("received_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("amount > 0", name="payments_amount_positive"),
)

payment_allocations = Table(
    "payment_allocations", metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("payment_id", Text, primary_key=True),
    Column("invoice_id", Text, primary_key=True),
    Column("amount", Money, nullable=False),
    Column("paid_after", Money, nullable=False),
    Column("status_after", Text, nullable=False),
    ForeignKeyConstraint(["tenant_id", "payment_id"], ["payments.tenant_id", "payments.payment_id"],
                         ondelete="CASCADE", name="payment_allocations_payments_fkey"),
    CheckConstraint("amount > 0", name="payment_allocations_amount_positive"),
    CheckConstraint("paid_after >= amount", name="payment_allocations_paid_after_covers_amount"),
    _status_check("status_after", "payment_allocations_status_known", ALLOCATION_STATUSES),
)
# The paid-state update looks allocations up by invoice.
Index("payment_allocations_invoice_idx", payment_allocations.c.tenant_id, payment_allocations.c.invoice_id)
Index("credit_notes_invoice_idx", credit_notes.c.tenant_id, credit_notes.c.invoice_id)

journal_entries = Table(
    "journal_entries", metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("entry_id", Text, primary_key=True),
    Column("document_id", Text, nullable=False),
    Column("document_type", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("posted_at", DateTime(timezone=True), nullable=False),
    Column("description", Text),
    Index("journal_entries_document_idx", "tenant_id", "document_id"),
)

journal_lines = Table(
    "journal_lines", metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("entry_id", Text, primary_key=True),
    Column("line_no", Integer, primary_key=True),  # position in the record, from 1
    Column("account", Text, nullable=False),
    Column("debit", Money, nullable=False),
    Column("credit", Money, nullable=False),
    Column("role", Text),  # the account's role in the tenant's chart (SPEC 8; revision 0007); null: SPEC's chart
    ForeignKeyConstraint(["tenant_id", "entry_id"], ["journal_entries.tenant_id", "journal_entries.entry_id"],
                         ondelete="CASCADE", name="journal_lines_journal_entries_fkey"),
    CheckConstraint("debit >= 0 AND credit >= 0", name="journal_lines_amounts_not_negative"),
    CheckConstraint("debit = 0 OR credit = 0", name="journal_lines_one_sided"),
)

external_refs = Table(
    "external_refs", metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("kind", Text, primary_key=True),  # sale, refund, customer, product
    Column("external_id", Text, primary_key=True),
    Column("internal_id", Text, nullable=False),
)

# SPEC 8 (revision 0006): what left the warehouse for an order, one row per accepted order.shipped (its
# delivery note, ledger.shipments), one line per SKU shipped. Under IMMEDIATE fulfilment an order leaves stock
# when it is accepted and has no shipment rows (order.shipped is refused there).
shipments = Table(
    "shipments", metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("shipment_id", Text, primary_key=True),  # SHIP-<the event's shipment_id>
    Column("source_shipment_id", Text, nullable=False),
    Column("sale_id", Text, nullable=False),  # the order
    Column("invoice_id", Text),  # no foreign key: the invoice may arrive later
    Column("location_id", Text),
    Column("shipped_at", DateTime(timezone=True), nullable=False),
    Index("shipments_sale_idx", "tenant_id", "sale_id"),
)

shipment_lines = Table(
    "shipment_lines", metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("shipment_id", Text, primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("sku", Text, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    ForeignKeyConstraint(["tenant_id", "shipment_id"], ["shipments.tenant_id", "shipments.shipment_id"],
                         ondelete="CASCADE", name="shipment_lines_shipments_fkey"),
    CheckConstraint("quantity > 0", name="shipment_lines_quantity_positive"),
)

sink_offsets = Table(
    "sink_offsets", metadata,
    Column("group_id", Text, primary_key=True),
    Column("topic", Text, primary_key=True),
    Column("partition", Integer, primary_key=True),
    # The next offset to read: written in the same transaction as the rows it covers.
    Column("next_offset", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

# -- outbound webhooks (connectors/notify, revision 0003) ----------------------------------------------
webhook_subscriptions = Table(
    "webhook_subscriptions", metadata,
    Column("subscription_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("url", Text, nullable=False),
    Column("events", ARRAY(Text), nullable=False),
    # stockledger.security.seal(master key, tenant, secret); NULL when the tenant's own secret signs
    Column("secret_sealed", LargeBinary),
    Column("secret_from_tenant", Boolean, nullable=False, server_default=text("false")),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    # `webhook add --allow-private-url`: the URL may reach loopback, private or link-local addresses (0004)
    Column("allow_private", Boolean, nullable=False, server_default=text("false")),
    CheckConstraint("secret_sealed IS NOT NULL OR secret_from_tenant", name="webhook_subscriptions_has_secret"),
    Index("webhook_subscriptions_tenant", "tenant_id"),
)

# One row per (subscription, SKU): the newest level not yet delivered (pending_*, NULL when none) and
# the last one delivered; offsets are the stock.levels record's (one SKU stays on one partition).
webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("subscription_id", Text, primary_key=True),
    Column("sku", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("partition", Integer, nullable=False),
    Column("pending_offset", BigInteger),
    Column("pending_event_id", Text),
    Column("pending_body", Text),
    Column("pending_record_ms", BigInteger),  # the stock.levels record's timestamp (latency)
    Column("delivered_offset", BigInteger),
    Column("delivered_event_id", Text),
    Column("delivered_at", DateTime(timezone=True)),
    Column("attempts", Integer, nullable=False, server_default=text("0")),  # failed tries of the pending chain
    Column("first_failed_at", DateTime(timezone=True)),
    Column("next_attempt_at", DateTime(timezone=True)),  # when the pending level is due
    Column("lease_until", DateTime(timezone=True)),  # a try is in flight until then (claimed by a notifier)
    Column("last_error", Text),
    ForeignKeyConstraint(["subscription_id"], ["webhook_subscriptions.subscription_id"], ondelete="CASCADE",
                         name="webhook_deliveries_subscription_fkey"),
    Index("webhook_deliveries_due", "next_attempt_at", postgresql_where=text("pending_offset IS NOT NULL")),
)

WEBHOOK_FAILURE_KINDS = ("data_error", "rejected", "dead_letter")
webhook_failures = Table(
    "webhook_failures", metadata,
    Column("failure_id", BigInteger, Identity(), primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("subscription_id", Text, nullable=False),  # no foreign key: failures outlive a removed subscription
    Column("url", Text, nullable=False),
    Column("sku", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("status", Integer),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("first_failed_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    CheckConstraint("kind IN ('data_error', 'rejected', 'dead_letter')", name="webhook_failures_kind_known"),
    UniqueConstraint("subscription_id", "event_id", "kind", name="webhook_failures_once"),
    Index("webhook_failures_tenant", "tenant_id", "created_at"),
)

BOOKS = (invoices, invoice_lines, credit_notes, credit_note_lines, payments, payment_allocations,
         journal_entries, journal_lines, external_refs, shipments, shipment_lines)


# -- the HTTP API service's own state (api/, revision 0002) -----------------------------------------
api_tenants = Table(
    "api_tenants", metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
)

# Integration keys and bearer tokens only as `credential_hash`; webhook secrets sealed (AES-256-GCM,
# tenant as associated data). A rotation gives the old row an `expires_at` (the end of the overlap).
api_credentials = Table(
    "api_credentials", metadata,
    Column("credential_id", Text, primary_key=True),
    Column("tenant_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("credential_hash", Text),
    Column("sealed", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=text("now()")),
    Column("expires_at", DateTime(timezone=True)),
    ForeignKeyConstraint(["tenant_id"], ["api_tenants.tenant_id"], ondelete="CASCADE",
                         name="api_credentials_api_tenants_fkey"),
    CheckConstraint("kind IN ('key', 'token', 'webhook_secret')", name="api_credentials_kind_known"),
    CheckConstraint("(credential_hash IS NULL) <> (sealed IS NULL)", name="api_credentials_hash_or_sealed"),
)
Index("api_credentials_hash_idx", api_credentials.c.credential_hash, unique=True)
Index("api_credentials_tenant_idx", api_credentials.c.tenant_id, api_credentials.c.kind)

# One row per Idempotency-Key (scope 'idempotency') or webhook event id (scope 'erp', 'treasury'):
# claimed 'running' by the request that executes it, then 'done' with the answer to replay, or
# 'released' (a 5xx or 429: nothing stored, the next request with the key executes).
api_requests = Table(
    "api_requests", metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("scope", Text, primary_key=True),
    Column("request_key", Text, primary_key=True),
    Column("fingerprint", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
    # The `timestamp` of the events the request publishes when its body names none: kept when a claim
    # is taken over or released, so executing again publishes the very same record.
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("response_status", Integer),
    Column("response_headers", Text),  # JSON object
    Column("response_body", LargeBinary),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    CheckConstraint("state IN ('running', 'done', 'released')", name="api_requests_state_known"),
    CheckConstraint("state <> 'done' OR response_status IS NOT NULL", name="api_requests_done_has_answer"),
)
Index("api_requests_expires_idx", api_requests.c.expires_at)
