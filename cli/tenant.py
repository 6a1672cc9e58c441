"""`stockledger tenant configure T --order-fulfilment RESERVE --credit-policy HOLD ...`: publish one
`tenant.configured` event (SPEC 8) on `tenant.settings`, keyed by the tenant. A setting not given keeps
its current value; the fold applies the change to the tenant's events after it in its log."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from cli.flags import EXIT_USAGE, connection_flags, settings_of
from streams.core.settings import CREDIT_POLICIES, FULFILMENTS, validate_tenant_configured

TOPIC = "tenant.settings"


def _decimal(value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"expected a decimal number, got {value!r}") from None


def _account(value: str) -> tuple[str, str]:
    role, sep, code = value.partition("=")
    if not sep or not role or not code:
        raise argparse.ArgumentTypeError(f"expected ROLE=ACCOUNT (e.g. bank=1030), got {value!r}")
    return role, code


def register_configure(actions: argparse._SubParsersAction) -> None:
    """`tenant configure`, beside the API's `tenant add|rotate|list` (cli/api.py)."""
    p = actions.add_parser("configure", help="publish the tenant's settings as a tenant.configured event (SPEC 8); "
                                             "a setting not given keeps its value")
    p.add_argument("tenant_id")
    p.add_argument("--order-fulfilment", choices=FULFILMENTS)
    p.add_argument("--credit-policy", choices=CREDIT_POLICIES)
    p.add_argument("--default-currency", help="ISO 4217, e.g. KES: the currency of sales and order imports that "
                                              "name none (default USD)")
    p.add_argument("--default-tax-percent", type=_decimal,
                   help="tax of a line whose event and catalog name none (default STOCKLEDGER_DEFAULT_TAX_PERCENT)")
    p.add_argument("--max-discount-percent", type=_decimal,
                   help="largest line discount (default STOCKLEDGER_MAX_DISCOUNT_PERCENT)")
    p.add_argument("--late-count-horizon-days", type=int,
                   help="a SKU's deltas kept one by one this long (default STOCKLEDGER_LATE_COUNT_HORIZON_DAYS)")
    p.add_argument("--dedup-horizon-days", type=int,
                   help="event ids remembered this long (default STOCKLEDGER_DEDUP_HORIZON_DAYS)")
    p.add_argument("--account", dest="accounts", action="append", type=_account, metavar="ROLE=ACCOUNT",
                   help="an override of the chart of accounts, e.g. receivable=1105, used by every later journal "
                        "entry (repeat; given, it replaces the tenant's overrides)")
    p.add_argument("--event-id", help="the event's id (default: a new one); the same id again is a duplicate")
    p.add_argument("--dry-run", action="store_true", help="print the event as JSON, publish nothing")
    connection_flags(p)
    p.set_defaults(func=cmd_configure)


def configured_event(args: argparse.Namespace, now_millis: int) -> dict[str, Any]:
    """The tenant.configured event the flags describe (JSON-plain)."""
    data: dict[str, Any] = {}
    for name in ("order_fulfilment", "credit_policy", "default_currency", "default_tax_percent",
                 "max_discount_percent", "late_count_horizon_days", "dedup_horizon_days"):
        value = getattr(args, name)
        if value is not None:
            data[name] = format(value, "f") if isinstance(value, Decimal) else value
    if args.accounts:
        data["accounts"] = dict(args.accounts)
    return {"event_id": args.event_id or f"tenant-configured-{uuid.uuid4()}", "event_type": "tenant.configured",
            "tenant_id": args.tenant_id, "timestamp": now_millis, "source": "cli", "data": data}


def cmd_configure(args: argparse.Namespace) -> int:
    from stockledger.produce import InputError, convert, publish

    event = configured_event(args, int(time.time() * 1000))
    if not event["data"]:
        print("tenant configure: give at least one setting (see --help)", file=sys.stderr)
        return EXIT_USAGE
    reasons = validate_tenant_configured({k: Decimal(v) if k.endswith("_percent") else v
                                          for k, v in event["data"].items()})
    if reasons:
        print(f"nothing published: {'; '.join(reasons)}", file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run:
        print(json.dumps(event, sort_keys=True))
        return 0
    try:
        prepared = convert(TOPIC, event)
    except (InputError, ValueError) as exc:
        print(f"nothing published: {exc}", file=sys.stderr)
        return EXIT_USAGE
    publish(settings_of(args), TOPIC, [prepared])
    print(f"published {event['event_id']} on {TOPIC} (key {prepared.key})")
    return 0
