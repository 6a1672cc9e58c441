"""`stockledger books check|trial-balance|aging`: the accountant's commands (SPEC 2 "The books reconcile", SPEC 9).

They read PostgreSQL only through the views of revisions 0005 (`books_journal`, `books_receivable_items`,
`books_reconciliation`, `books_exceptions`) and 0006 (`books_fulfilment_exceptions`), so what they print is
what `psql` shows an accountant:

- `check`: every reconciliation of SPEC 2 per tenant and currency (1100 = what customers owe, 4000 - 4010
  = invoice nets - credit note nets, 2100 = taxes invoiced - taxes credited, each cash or clearing
  account = payments - refunds of its methods), and every document without its journal entry (or the
  other way round), every order whose shipped plus cancelled quantity of a SKU exceeds what it ordered
  (SPEC 8: shipment lines and cancellation credit notes against invoice lines), and every line priced by
  PRICE_LIST that names no list. Exit 1 naming each difference; 0 when the books reconcile.
- `trial-balance`: per tenant, currency and account: debit, credit, balance (debit - credit), with a total
  row whose debits equal its credits; `--as-of DATE`: entries posted up to the end of that day (UTC).
- `aging`: receivables per customer in buckets by days past due as of `--as-of` (default today, UTC):
  current (not yet due), 1-30, 31-60, 61-90, over 90; `credit` is what the customer holds (CREDIT refunds
  beyond what the invoice still owed, store credit of PAID sales), as a negative amount; `total` = what
  the customer owes, the figure 1100 reconciles with.

A table for people; `--json` or `--csv` for machines. `--tenant T` keeps one tenant.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, text

EXIT_OK, EXIT_DIFFERENCES, EXIT_USAGE = 0, 1, 2
BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")

_RECONCILIATION = text("""
    SELECT tenant_id, currency, reconciliation, ledger, subledger, difference
      FROM books_reconciliation
     WHERE CAST(:tenant AS text) IS NULL OR tenant_id = :tenant
     ORDER BY tenant_id, currency, position
""")
_EXCEPTIONS = text("""
    SELECT tenant_id, currency, document_id, problem
      FROM (SELECT tenant_id, currency, document_id, problem FROM books_exceptions
            UNION ALL
            SELECT tenant_id, currency, document_id, problem FROM books_fulfilment_exceptions) AS x
     WHERE CAST(:tenant AS text) IS NULL OR tenant_id = :tenant
     ORDER BY tenant_id, currency, document_id, problem
""")
_TRIAL_BALANCE = text("""
    SELECT tenant_id, currency, account, account_name,
           sum(debit) AS debit, sum(credit) AS credit, sum(debit) - sum(credit) AS balance
      FROM books_journal
     WHERE (CAST(:tenant AS text) IS NULL OR tenant_id = :tenant)
       AND (CAST(:before AS timestamptz) IS NULL OR posted_at < :before)
     GROUP BY tenant_id, currency, account, account_name
     ORDER BY tenant_id, currency, account
""")
# Each invoice's balance as of the date (what is still owed on it, or, when negative, credit the customer
# holds), bucketed by days past its due date, summed per customer.
_AGING = text("""
    WITH per_invoice AS (
        SELECT tenant_id, currency, customer_ref, invoice_id, max(due_date) AS due_date, sum(amount) AS balance
          FROM books_receivable_items
         WHERE (CAST(:tenant AS text) IS NULL OR tenant_id = :tenant) AND booked_at < :before
         GROUP BY tenant_id, currency, customer_ref, invoice_id
    ), aged AS (
        SELECT *, CAST(:as_of AS date) - due_date AS days_past_due FROM per_invoice
    )
    SELECT tenant_id, currency, customer_ref,
           coalesce(sum(balance) FILTER (WHERE balance > 0 AND (days_past_due IS NULL OR days_past_due <= 0)), 0)
               AS "current",
           coalesce(sum(balance) FILTER (WHERE balance > 0 AND days_past_due BETWEEN 1 AND 30), 0) AS "1-30",
           coalesce(sum(balance) FILTER (WHERE balance > 0 AND days_past_due BETWEEN 31 AND 60), 0) AS "31-60",
           coalesce(sum(balance) FILTER (WHERE balance > 0 AND days_past_due BETWEEN 61 AND 90), 0) AS "61-90",
           coalesce(sum(balance) FILTER (WHERE balance > 0 AND days_past_due > 90), 0) AS "90+",
           coalesce(sum(balance) FILTER (WHERE balance < 0), 0) AS credit,
           sum(balance) AS total
      FROM aged
     GROUP BY tenant_id, currency, customer_ref
    HAVING bool_or(balance <> 0)
     ORDER BY tenant_id, currency, customer_ref
""")


@dataclass(frozen=True)
class Report:
    columns: tuple[str, ...]
    rows: list[dict[str, Any]]
    differences: int = 0  # check: how many figures disagree


def _day_end(as_of: date | None) -> datetime | None:
    if as_of is None:
        return None
    return datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC) + timedelta(days=1)


def _money(value: Any) -> Any:
    """Decimal figures as PostgreSQL returns them (scale 4), shown at 2 decimals when nothing is lost."""
    if isinstance(value, Decimal):
        q = value.quantize(Decimal("0.01"))
        return q if q == value else value.normalize()
    return value


def _rows(engine: Engine, query: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [{k: _money(v) for k, v in row._mapping.items()} for row in conn.execute(query, params)]


def check(engine: Engine, tenant: str | None = None) -> Report:
    """Every reconciliation row and every exception; `differences` counts those that disagree."""
    rows = [{**r, "status": "ok" if r["difference"] == 0 else "DIFFERENCE"}
            for r in _rows(engine, _RECONCILIATION, {"tenant": tenant})]
    exceptions = _rows(engine, _EXCEPTIONS, {"tenant": tenant})
    rows += [{"tenant_id": e["tenant_id"], "currency": e["currency"],
              "reconciliation": f"{e['document_id']}: {e['problem']}", "ledger": None, "subledger": None,
              "difference": None, "status": "DIFFERENCE"} for e in exceptions]
    bad = sum(1 for r in rows if r["status"] != "ok")
    return Report(("tenant_id", "currency", "reconciliation", "ledger", "subledger", "difference", "status"),
                  rows, bad)


def trial_balance(engine: Engine, tenant: str | None = None, as_of: date | None = None) -> Report:
    """Per tenant, currency and account; a TOTAL row per tenant and currency."""
    rows: list[dict[str, Any]] = []
    lines = _rows(engine, _TRIAL_BALANCE, {"tenant": tenant, "before": _day_end(as_of)})
    for i, line in enumerate(lines):
        rows.append(line)
        last = i + 1 == len(lines) or (lines[i + 1]["tenant_id"], lines[i + 1]["currency"]) != (
            line["tenant_id"], line["currency"])
        if last:
            mine = [r for r in lines if (r["tenant_id"], r["currency"]) == (line["tenant_id"], line["currency"])]
            debit = sum((r["debit"] for r in mine), Decimal(0))
            credit = sum((r["credit"] for r in mine), Decimal(0))
            rows.append({"tenant_id": line["tenant_id"], "currency": line["currency"], "account": "TOTAL",
                         "account_name": "", "debit": _money(debit), "credit": _money(credit),
                         "balance": _money(debit - credit)})
    return Report(("tenant_id", "currency", "account", "account_name", "debit", "credit", "balance"), rows)


def aging(engine: Engine, tenant: str | None = None, as_of: date | None = None) -> Report:
    day = as_of or datetime.now(UTC).date()
    rows = _rows(engine, _AGING, {"tenant": tenant, "as_of": day, "before": _day_end(day)})
    return Report(("tenant_id", "currency", "customer_ref", *BUCKETS, "credit", "total"), rows)


# -- output ---------------------------------------------------------------------------------------
def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps([{c: (_text(r[c]) if isinstance(r[c], Decimal) else r[c]) for c in report.columns}
                           for r in report.rows], indent=1) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(report.columns)
        for r in report.rows:
            writer.writerow([_text(r[c]) for c in report.columns])
        return buf.getvalue()
    cells = [list(report.columns)] + [[_text(r[c]) for c in report.columns] for r in report.rows]
    numeric = [all(_numeric(row[i]) for row in cells[1:] if row[i]) and any(row[i] for row in cells[1:])
               for i in range(len(report.columns))]
    widths = [max(len(row[i]) for row in cells) for i in range(len(report.columns))]
    out = []
    for n, row in enumerate(cells):
        out.append("  ".join(cell.rjust(w) if numeric[i] else cell.ljust(w)
                             for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out) + "\n"


def _numeric(cell: str) -> bool:
    try:
        Decimal(cell)
        return True
    except ArithmeticError:
        return False
