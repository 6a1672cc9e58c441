"""The books of a fold's outputs: journal balances per account and the subledgers they must equal (SPEC 2,
"The books reconcile"), computed the way `stockledger books check` computes them in PostgreSQL.

Each figure is read from the accounts of its role in the tenant's chart (SPEC 8, `accounts`): a tenant
whose chart changed over its log has the union of every code a role had (a chart never gives two roles
one code, settings.validate_tenant_configured)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from streams.core.credit import CreditState
from streams.core.fold import DictState, Emit
from streams.core.journal import DEFAULT_ACCOUNTS, Accounts
from streams.core.settings import settings_of

Z = Decimal(0)
CASH_ROLES = {"cash": ("CASH",), "clearing": ("CARD", "MOBILE"), "bank": ("BANK",)}
LEDGER = ("ledger.invoices", "ledger.credit_notes", "ledger.payments", "ledger.journal")


def ledger_emits(outputs: Iterable[Any]) -> list[Emit]:
    return [o for o in outputs if isinstance(o, Emit) and o.topic in LEDGER]


def balances(outputs: Iterable[Any]) -> dict[tuple[str, str, str], Decimal]:
    """(tenant, currency, account) -> debits - credits of every journal entry emitted."""
    out: dict[tuple[str, str, str], Decimal] = defaultdict(lambda: Z)
    for e in ledger_emits(outputs):
        if e.topic == "ledger.journal":
            v = e.value
            for line in v["lines"]:
                out[(v["tenant_id"], v["currency"], line["account"])] += line["debit"] - line["credit"]
    return dict(out)


def differences(state: DictState, outputs: list[Any], charts: Mapping[str, Sequence[Accounts]] | None = None
                ) -> list[str]:
    """Every way the ledger disagrees with its subledgers (empty: the books reconcile).

    `charts`: tenant -> every chart its log used; by default SPEC's chart and the tenant's chart now."""
    problems: list[str] = []
    emits = ledger_emits(outputs)
    keys = Counter((e.topic, e.key) for e in emits)
    problems += [f"{topic} {key} emitted {n} times" for (topic, key), n in keys.items() if n > 1]
    bal = balances(outputs)
    docs: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: Z))
    entries = {e.value["entry_id"] for e in emits if e.topic == "ledger.journal"}
    for e in emits:
        v = e.value
        where = (v["tenant_id"], v["currency"])
        if e.topic == "ledger.journal":
            if len(v["lines"]) < 2:
                problems.append(f"{v['entry_id']} has {len(v['lines'])} lines")
            debit = sum((x["debit"] for x in v["lines"]), Z)
            if debit != sum((x["credit"] for x in v["lines"]), Z):
                problems.append(f"{v['entry_id']} does not balance")
            continue
        if e.topic == "ledger.invoices":
            docs[where]["net"] += v["net_total"]
            docs[where]["tax"] += v["tax_total"]
            doc_id, total = v["invoice_id"], v["total"]
        elif e.topic == "ledger.credit_notes":
            docs[where]["net"] -= v["net_total"]
            docs[where]["tax"] -= v["tax_total"]
            if v["refund_method"] != "CREDIT":
                docs[where][v["refund_method"]] -= v["total"]
            doc_id, total = v["credit_note_id"], v["total"]
        else:
            docs[where][v["method"]] += v["amount"]
            if v["sale_id"] is not None:
                continue  # a PAID sale's payment is posted in its invoice's entry
            doc_id, total = v["payment_id"], v["amount"]
        if (f"JE-{doc_id}" in entries) != (total != 0):
            problems.append(f"{doc_id} of total {total} {'has' if total == 0 else 'has no'} journal entry")
    outstanding: dict[str, Decimal] = defaultdict(lambda: Z)
    for raw in state.tables["credit"].values():
        credit = CreditState.from_dict(raw)
        outstanding[credit.tenant_id] += credit.outstanding
    tenants = {t for t, _ in docs} | {t for t, _, _ in bal} | set(outstanding)
    for tenant in sorted(tenants):
        used = (charts or {}).get(tenant) or (DEFAULT_ACCOUNTS, settings_of(state, tenant).chart())

        def codes(*roles: str, used: Sequence[Accounts] = used) -> set[str]:
            return {getattr(chart, role) for chart in used for role in roles}

        currencies = {c for t, c in docs if t == tenant} | {c for t, c, _ in bal if t == tenant}
        if len(currencies) > 1:
            raise ValueError("the receivables identity is checked for one currency per tenant")
        receivable = codes("receivable")
        ar = sum((b for (t, _, a), b in bal.items() if t == tenant and a in receivable), Z)
        if ar != outstanding[tenant]:
            problems.append(f"{tenant}: {'+'.join(sorted(receivable))} is {ar}, customers owe {outstanding[tenant]}")
        for currency in sorted(currencies):
            d = docs[(tenant, currency)]

            def gl(accounts: set[str], tenant: str = tenant, currency: str = currency) -> Decimal:
                return sum((bal.get((tenant, currency, a), Z) for a in accounts), Z)

            sales = codes("revenue", "returns")
            if -gl(sales) != d["net"]:
                problems.append(f"{tenant} {currency}: {'+'.join(sorted(sales))} is {-gl(sales)}, "
                                f"documents {d['net']}")
            tax = codes("tax_payable")
            if -gl(tax) != d["tax"]:
                problems.append(f"{tenant} {currency}: {'+'.join(sorted(tax))} is {-gl(tax)}, documents {d['tax']}")
            for role, methods in CASH_ROLES.items():
                want = sum((d[m] for m in methods), Z)
                if gl(codes(role)) != want:
                    problems.append(f"{tenant} {currency}: {role} {'+'.join(sorted(codes(role)))} is "
                                    f"{gl(codes(role))}, payments - refunds {want}")
    return problems
