"""The `api` and `tenant` subcommands; `register(subparsers)` adds them to the `stockledger` CLI."""

from __future__ import annotations

import argparse
import json
import sys

from cli.flags import EXIT_USAGE, connection_flags, settings_of


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "api", help="the HTTP API for tills, web stores and ERPs (seeds 000-003): publishes to the input topics",
        description="A stateless HTTP service in front of the topics: POS sales and refunds, order import, "
                    "inventory adjust and snapshot, stock/credit/sale reads, signed ERP and treasury webhooks. "
                    "Its state (tenants, credentials, idempotency records) is in PostgreSQL; start several.")
    p.add_argument("--host", help="address to bind (STOCKLEDGER_API_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (STOCKLEDGER_API_PORT, default 8088)")
    p.add_argument("--worker-url", help="the stream workers' HTTP (STOCKLEDGER_WORKER_URL)")
    p.add_argument("--id", default="api", help="a name for this process in logs")
    connection_flags(p)
    p.set_defaults(func=cmd_api)

    p = subparsers.add_parser("tenant", help="tenants of the HTTP API and their credentials")
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("add", help="create a tenant; prints its integration key, bearer token and webhook "
                                       "secret once (they are stored only as hashes / sealed)")
    a.add_argument("tenant")
    a.add_argument("--json", action="store_true", help="print one JSON object")
    connection_flags(a)
    a = actions.add_parser("rotate", help="issue a new credential; the current one keeps working for --overlap")
    a.add_argument("tenant")
    a.add_argument("kind", choices=["key", "token", "webhook-secret"])
    a.add_argument("--overlap", default="24h", help="how long the current one stays valid (default 24h; 0 ends it now)")
    a.add_argument("--json", action="store_true")
    connection_flags(a)
    a = actions.add_parser("list", help="every tenant and its valid credentials (never the secrets)")
    a.add_argument("--json", action="store_true")
    connection_flags(a)
    p.set_defaults(func=cmd_tenant)
    from cli.tenant import register_configure

    register_configure(actions)


def cmd_api(args: argparse.Namespace) -> int:
    import asyncio

    from api.server import serve
    from stockledger import logs

    logs.setup(args.log_level, args.log_format, process=args.id)
    settings = settings_of(args).with_overrides(api_host=args.host, api_port=args.port,
                                                     worker_url_env=args.worker_url)
    asyncio.run(serve(settings, settings.api_host, settings.api_port))
    return 0


def _print_credentials(creds, as_json: bool) -> None:
    if as_json:
        print(json.dumps(creds.as_dict()))
        return
    labels = {"integration_key": "integration key (X-Integration-Key)",
              "bearer_token": "bearer token (Authorization: Bearer)",
              "webhook_secret": "webhook secret (X-ERP-Signature HMAC)"}
    print(f"tenant {creds.tenant}: shown once, store them now")
    for name, value in creds.as_dict().items():
        if name != "tenant":
            print(f"  {labels[name]:40} {value}")


def cmd_tenant(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from sqlalchemy import create_engine

    from stockledger import tenants
    from stockledger.config import parse_duration
    from stockledger.db import migrate

    settings = settings_of(args)
    engine = create_engine(settings.database_url)
    try:
        migrate.upgrade(engine)
        if args.action == "list":
            rows = tenants.list_tenants(engine)
            for row in rows:
                print(json.dumps(row) if args.json else
                      f"{row['tenant']:24} created {row['created_at']}  " + "  ".join(
                          f"{k}: {v['valid']} valid" + (f" (one ends {v['overlap_ends']})" if v["overlap_ends"] else "")
                          for k, v in sorted(row["credentials"].items())))
            return 0
        if args.action == "add":
            creds = tenants.add(engine, settings.master_key(), args.tenant)
        else:
            creds = tenants.rotate(engine, settings.master_key(), args.tenant, args.kind,
                                   timedelta(seconds=parse_duration(args.overlap)))
    except tenants.TenantExists as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except (tenants.TenantError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    finally:
        engine.dispose()
    _print_credentials(creds, args.json)
    return 0
