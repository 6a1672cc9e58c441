"""`stockledger books check|trial-balance|aging`: the flags and the exit status around connectors.books."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from sqlalchemy import create_engine

from cli.flags import connection_flags, settings_of
from connectors.books import EXIT_DIFFERENCES, EXIT_OK, EXIT_USAGE, aging, check, render, trial_balance
from connectors.books import __doc__ as BOOKS_DOC


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {value!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "books", help="the accountant's commands on PostgreSQL: check, trial-balance, aging",
        description=BOOKS_DOC.split("\n\n", 1)[1] if BOOKS_DOC else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", choices=["check", "trial-balance", "aging"])
    p.add_argument("--tenant", help="one tenant only")
    p.add_argument("--as-of", type=_date, help="trial-balance, aging: as of the end of this day (UTC), YYYY-MM-DD")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json", help="JSON rows")
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv", help="CSV with a header row")
    p.set_defaults(format="table")
    connection_flags(p)
    p.set_defaults(func=cmd_books)


def cmd_books(args: argparse.Namespace) -> int:
    if args.report == "check" and args.as_of is not None:
        print("--as-of is for trial-balance and aging; check reads the books as they are", file=sys.stderr)
        return EXIT_USAGE
    engine = create_engine(settings_of(args).database_url)
    try:
        if args.report == "check":
            report = check(engine, args.tenant)
        elif args.report == "trial-balance":
            report = trial_balance(engine, args.tenant, args.as_of)
        else:
            report = aging(engine, args.tenant, args.as_of)
    finally:
        engine.dispose()
    sys.stdout.write(render(report, args.format))
    if args.report == "check":
        if report.differences:
            print(f"books check: {report.differences} difference(s)", file=sys.stderr)
            return EXIT_DIFFERENCES
        print(f"books check: {len(report.rows)} reconciliations, every one agrees", file=sys.stderr)
    return EXIT_OK
