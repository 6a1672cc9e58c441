"""A tenant's settings, kept as events (SPEC 8, "Per-tenant settings are events too").

`tenant.configured` (topic `tenant.settings`, key tenant_id) carries any of the settings; a field left
out (or null) keeps its current value, at first the default. The fold keeps one `TenantSettings` per
tenant (table `settings`, key `<tenant>`) and reads it when it decides the tenant's later events, so a
replay decides the same as the first run.

What each setting decides (fold.py `tenant_config`: the tenant's value wins, the process's FoldConfig,
from stockledger.config.Settings, is the fallback while the tenant has not set one):
- `order_fulfilment`, `credit_policy`: IMMEDIATE / RESERVE and REFUSE / HOLD (lifecycle.py).
- `default_currency`: the currency of a sale or order that names none (currency "" or absent: an import
  mapped by `stockledger produce` or the API's order import without --currency / currency), fixed when
  the order is placed (a held order keeps it); USD until set.
- `default_tax_percent`: the tax of a line whose catalog entry and event give none.
- `max_discount_percent`: above it an order line is refused (DISCOUNT_NOT_ALLOWED), a POS sale warned.
- `late_count_horizon_days`, `dedup_horizon_days`: the horizons of SPEC 2 "Cost does not grow with
  history", in whole days (0 to 3650).
- `accounts`: the chart every journal entry of the tenant is posted with (sales, payments including the
  treasury's, refunds, cancellations), from the next event on; entries already posted keep their codes.

Choices where SPEC 8 is silent:
- `default_tax_percent` absent means "not set": the process-wide FoldConfig.default_tax_percent (the
  STOCKLEDGER_DEFAULT_TAX_PERCENT setting) stays the fallback.
- A horizon change applies from the next event on to everything already kept: the dedup queue keeps
  each event id with its timestamp (not an expiry), so a shorter horizon forgets the ids queued before
  it once they are behind the new horizon (in queue order, at most EXPIRY_SWEEP per event, as always);
  a longer one keeps those not yet forgotten longer; a forgotten id stays forgotten. A SKU's deltas fold
  into its base at its next event under the horizon then in force. Deterministic: the same log gives the
  same state in the worker and in serial_fold.
- `default_currency` must be a code stockledger can book (money.MINOR_UNITS), and a chart may not give
  two roles one account code (the books reconcile each role on its own accounts).
- `accounts` replaces the whole override map when given (an empty map restores the default chart);
  unknown account roles are refused at admission.
- A tenant.configured that changes nothing is still applied (it is idempotent) and emits nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from .journal import Accounts
from .money import is_known_currency

__all__ = [
    "IMMEDIATE",
    "RESERVE",
    "REFUSE",
    "HOLD",
    "FULFILMENTS",
    "CREDIT_POLICIES",
    "TenantSettings",
    "settings_key",
    "settings_of",
    "validate_tenant_configured",
]

IMMEDIATE, RESERVE = "IMMEDIATE", "RESERVE"  # order_fulfilment
REFUSE, HOLD = "REFUSE", "HOLD"  # credit_policy
FULFILMENTS = (IMMEDIATE, RESERVE)
CREDIT_POLICIES = (REFUSE, HOLD)
MAX_HORIZON_DAYS = 3650
_ROLES = frozenset(f.name for f in fields(Accounts))
_SETTINGS_FIELDS = ("order_fulfilment", "credit_policy", "default_currency", "default_tax_percent",
                    "max_discount_percent", "late_count_horizon_days", "dedup_horizon_days", "accounts")


def settings_key(tenant: str) -> str:
    """The tenant's key in the fold's `settings` table."""
    return tenant


def settings_of(state: Any, tenant: str) -> TenantSettings:
    """The tenant's settings in a fold state (anything with `get(table, key)`): the defaults until configured."""
    return TenantSettings.from_dict(state.get("settings", settings_key(tenant)))


@dataclass(frozen=True, slots=True)
class TenantSettings:
    """One tenant's settings as of a point of its log (None: not set, the process default applies)."""

    order_fulfilment: str = IMMEDIATE
    credit_policy: str = REFUSE
    default_currency: str = "USD"
    default_tax_percent: Decimal | None = None
    max_discount_percent: Decimal | None = None
    late_count_horizon_days: int | None = None
    dedup_horizon_days: int | None = None
    accounts: tuple[tuple[str, str], ...] = ()  # (role, account) overrides of the default chart, sorted

    @property
    def reserves(self) -> bool:
        return self.order_fulfilment == RESERVE

    @property
    def holds(self) -> bool:
        return self.credit_policy == HOLD

    def tax_percent(self, fallback: Decimal) -> Decimal:
        return fallback if self.default_tax_percent is None else self.default_tax_percent

    def chart(self) -> Accounts:
        return Accounts.with_overrides(dict(self.accounts))

    def configured(self, data: Mapping[str, Any]) -> TenantSettings:
        """These settings with a tenant.configured's `data` applied (absent or null fields keep their value)."""
        changes: dict[str, Any] = {}
        for name in _SETTINGS_FIELDS:
            value = data.get(name)
            if value is None:
                continue
            if name in ("default_tax_percent", "max_discount_percent"):
                value = Decimal(value)
            elif name == "accounts":
                value = tuple(sorted((str(k), str(v)) for k, v in value.items()))
            changes[name] = value
        return replace(self, **changes) if changes else self

    def to_dict(self) -> dict[str, Any]:
        def dec(v: Decimal | None) -> str | None:
            return None if v is None else format(v, "f")

        return {"order_fulfilment": self.order_fulfilment, "credit_policy": self.credit_policy,
                "default_currency": self.default_currency, "default_tax_percent": dec(self.default_tax_percent),
                "max_discount_percent": dec(self.max_discount_percent),
                "late_count_horizon_days": self.late_count_horizon_days,
                "dedup_horizon_days": self.dedup_horizon_days, "accounts": dict(self.accounts)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TenantSettings:
        if not data:
            return cls()

        def dec(v: Any) -> Decimal | None:
            return None if v is None else Decimal(v)

        return cls(data.get("order_fulfilment", IMMEDIATE), data.get("credit_policy", REFUSE),
                   data.get("default_currency", "USD"), dec(data.get("default_tax_percent")),
                   dec(data.get("max_discount_percent")), data.get("late_count_horizon_days"),
                   data.get("dedup_horizon_days"), tuple(sorted((data.get("accounts") or {}).items())))


def _percent(data: Mapping[str, Any], name: str, reasons: list[str]) -> None:
    value = data.get(name)
    if value is None:
        return
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        reasons.append(f"{name} must be a decimal percent, got {value!r}")
        return
    if isinstance(value, bool) or not d.is_finite() or not Decimal(0) <= d <= Decimal(100):
        reasons.append(f"{name} must be from 0 to 100, got {value!r}")


def validate_tenant_configured(data: Mapping[str, Any]) -> list[str]:
    """Readable reasons why a tenant.configured `data` breaks the rules; empty when valid."""
    reasons: list[str] = []
    fulfilment = data.get("order_fulfilment")
    if fulfilment is not None and fulfilment not in FULFILMENTS:
        reasons.append(f"order_fulfilment must be one of {', '.join(FULFILMENTS)}, got {fulfilment!r}")
    policy = data.get("credit_policy")
    if policy is not None and policy not in CREDIT_POLICIES:
        reasons.append(f"credit_policy must be one of {', '.join(CREDIT_POLICIES)}, got {policy!r}")
    currency = data.get("default_currency")
    if currency is not None and not is_known_currency(currency):
        reasons.append(f"default_currency must be an ISO 4217 code that stockledger books, got {currency!r}")
    _percent(data, "default_tax_percent", reasons)
    _percent(data, "max_discount_percent", reasons)
    for name in ("late_count_horizon_days", "dedup_horizon_days"):
        days = data.get(name)
        if days is not None and (isinstance(days, bool) or not isinstance(days, int)
                                 or not 0 <= days <= MAX_HORIZON_DAYS):
            reasons.append(f"{name} must be a whole number of days from 0 to {MAX_HORIZON_DAYS}, got {days!r}")
    accounts = data.get("accounts")
    if accounts is not None:
        if not isinstance(accounts, Mapping):
            reasons.append("accounts must be a map of account role to account code")
        else:
            unknown = sorted(set(map(str, accounts)) - _ROLES)
            if unknown:
                reasons.append(f"unknown account roles {unknown}; known: {sorted(_ROLES)}")
            bad = sorted(str(k) for k, v in accounts.items() if not (isinstance(v, str) and v.strip()))
            if bad:
                reasons.append(f"accounts {bad} must name a non-empty account code")
            if not unknown and not bad:  # one account per role, or the books could not tell them apart
                chart = asdict(Accounts.with_overrides({str(k): v for k, v in accounts.items()}))
                roles_of: dict[str, list[str]] = {}
                for role, code in chart.items():
                    roles_of.setdefault(code, []).append(role)
                shared = {code: roles for code, roles in roles_of.items() if len(roles) > 1}
                for code, roles in sorted(shared.items()):
                    reasons.append(f"accounts: roles {roles} would share account {code!r}")
    return reasons
