"""The `stockledger` command: one entry point for operators (stack, produce, consume, worker, sink, replay, books)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from cli.flags import EXIT_USAGE
from cli.flags import connection_flags as _connection_flags
from cli.flags import progress as _progress
from cli.flags import settings_of as _settings
from stockledger import logs
from stockledger.config import ConfigError, Settings

# The log level each command starts with when --log-level is not given (the workers are quiet by default).
DEFAULT_LOG_LEVEL = {"sink": "info", "notify": "info"}


# -- stack ----------------------------------------------------------------------------------------
def cmd_stack(args: argparse.Namespace) -> int:
    from cli.stack import Stack, StackError
    from stockledger.topics import ensure_topics

    settings = _settings(args)
    if args.action == "kafka":
        return _kafka_tool(settings, args.tool_args)
    elif args.tool_args:
        print(f"stack {args.action} takes no arguments: {' '.join(args.tool_args)}", file=sys.stderr)
        return EXIT_USAGE
    stack = Stack(settings)
    if args.action == "up":
        try:
            timings = stack.up(_progress)
            ensure_topics(settings.kafka_config(), settings.partitions, log=_progress)
        except StackError as exc:
            print(f"stack up failed: {exc}", file=sys.stderr)
            return 1
        print(f"stack ready in {timings['total']:.1f}s: kafka {settings.bootstrap_servers}, "
              f"registry {settings.schema_registry_url}, postgres {settings.database_url}")
        return 0
    if args.action == "down":
        stack.down(_progress)
        return 0
    rows = stack.status()
    for s in rows:
        state = f"running pid {s.pid} rss {s.rss_mib:.0f} MiB" if s.running else "stopped"
        print(f"{s.name:9} {state:34} {s.address}  log {s.log}")
    return 0 if all(s.running for s in rows) else 3


def _kafka_tool(settings: Settings, argv: list[str]) -> int:
    from cli.stack import StackError, tools

    if not argv or argv[0] in ("-h", "--help", "list"):
        print("usage: stockledger stack kafka <tool> [args...]   (--bootstrap-server is added unless given)")
        print("tools: " + ", ".join(sorted(tools.TOOLS)))
        return 0 if argv else EXIT_USAGE
    try:
        return tools.run(settings, argv[0], argv[1:], _progress)
    except StackError as exc:
        print(f"stack kafka: {exc}", file=sys.stderr)
        return EXIT_USAGE


# -- produce / consume ----------------------------------------------------------------------------
def cmd_produce(args: argparse.Namespace) -> int:
    from stockledger.produce import InputError, produce_file

    try:
        n = produce_file(_settings(args), args.topic, args.file, tenant=args.tenant, currency=args.currency,
                         progress=_progress)
    except (InputError, ValueError) as exc:
        print(f"nothing published: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"nothing published: {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    print(f"published {n} records to {args.topic}", file=sys.stderr)
    return 0


def cmd_consume(args: argparse.Namespace) -> int:
    from stockledger.consume import dump

    if args.offset is not None and args.from_time is not None:
        print("give --offset or --from-time, not both", file=sys.stderr)
        return EXIT_USAGE
    try:
        dump(_settings(args), args.topic, sys.stdout, meta=args.meta, offset=args.offset,
             from_time=args.from_time, partition=args.partition, follow=args.follow)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from stockledger.codec import Codec
    from stockledger.topics import ensure_topics

    settings = _settings(args)
    ensure_topics(settings.kafka_config(), settings.partitions, log=_progress)
    codec = Codec(settings.schema_registry_url, auth=settings.registry_auth)
    # SPEC: every schema change must be BACKWARD compatible (Apicurio's default is NONE); as `stack up` does.
    codec.client.set_compatibility("BACKWARD")
    from stockledger.topics import BY_NAME
    for name in sorted(BY_NAME):
        print(json.dumps({"topic": name, "subject": f"{name}-value", "schema_id": codec.register(name)}))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.worker import run

    settings = _settings(args)
    run(settings, args.id, web_port=args.web_port, datadir=Path(args.data_dir) if args.data_dir else None,
        loglevel=args.log_level, web_host=args.web_host, log_format=args.log_format)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cli import demo
    from cli.stack import StackError

    settings = _settings(args)
    try:
        counts = demo.run(settings, _progress)
    except StackError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    url = f"http://127.0.0.1:{settings.web_port}"
    print(f"stockledger is running on demo data ({sum(counts.values())} events, tenant '{demo.TENANT}'):")
    print(f"  stock of a SKU:   curl '{url}/stock/SKU-001-RED?tenant={demo.TENANT}'")
    print(f"  every SKU (CSV):  curl '{url}/inventory/snapshot?tenant={demo.TENANT}&format=csv'")
    print(f"  health, metrics:  curl {url}/health ; curl {url}/metrics")
    print(f"  credit:           curl '{url}/credit/CUST-1?tenant={demo.TENANT}'")
    print(f"  a sale:           curl '{url}/sales/S-3-2?tenant={demo.TENANT}'")
    print("  outcomes:         .venv/bin/stockledger consume sales.outcomes | tail -3")
    print("  levels topic:     .venv/bin/stockledger consume stock.levels | head")
    psql = f"psql -h 127.0.0.1 -p {settings.pg_port} -U postgres stockledger -c"
    print(f"  the books:        {psql} "
          "\"select invoice_id, total, paid_amount, status from invoices order by 1 limit 10\"")
    print(f"  trial balance:    {psql} "
          "\"select account, sum(debit) - sum(credit) from journal_lines group by 1 order by 1\"")
    from cli import api_demo

    creds = api_demo.start(settings, demo.TENANT, _progress)
    print(f"the HTTP API on http://127.0.0.1:{settings.api_port}, tenant '{creds.tenant}' (credentials shown once):")
    for line in api_demo.curl_lines(settings, creds):
        print(line)
    print("  stop everything:  .venv/bin/stockledger stack down")
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stockledger")
    except PackageNotFoundError:
        return "unknown"


def _log_flags(p: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    """The same two flags on the program and on every (sub)command, before or after the command name."""
    p.add_argument("--log-level", "--loglevel", dest="log_level", type=str.lower, choices=logs.LEVELS,
                   default=default, help="log level (default: info for sink and notify, warning otherwise)")
    p.add_argument("--log-format", dest="log_format", choices=logs.FORMATS, default=default,
                   help="text (default) or json: one JSON object a line")


def _all_subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield sub
                yield from _all_subparsers(sub)
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stockledger", description=__doc__)
    parser.add_argument("--version", action="version", version=f"stockledger {_version()}")
    _log_flags(parser, default=None)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="the local stack without Docker: Kafka (KRaft), Apicurio Registry, PostgreSQL; "
                                     "and Kafka's own tools: stack kafka <tool> ...")
    p.add_argument("action", choices=["up", "down", "status", "kafka"])
    p.add_argument("--home", help="folder of the stack's data and logs (STOCKLEDGER_HOME)")
    p.add_argument("--kafka-port", type=int, help="broker port; the controller uses the next one")
    p.add_argument("--registry-port", type=int)
    p.add_argument("--pg-port", type=int)
    p.add_argument("--bootstrap-servers", help="kafka: the cluster the tool talks to (STOCKLEDGER_BOOTSTRAP_SERVERS)")
    p.add_argument("tool_args", nargs=argparse.REMAINDER,
                   help="kafka: a tool of Kafka's (kafka-consumer-groups, kafka-topics, ...; `list`) and its arguments")
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("produce", help="validate a JSON / JSON-lines file against the topic's schema and publish it")
    p.add_argument("topic")
    p.add_argument("file", help="a JSON document, a JSON array or JSON lines; - for stdin")
    p.add_argument("--tenant", help="tenant_id for records that have none (the seed examples)")
    p.add_argument("--currency", default="",
                   help="currency of mapped ERP order imports that name none (default: the tenant's default_currency)")
    _connection_flags(p)
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser("consume", help="print a topic's decoded records as JSON lines")
    p.add_argument("topic")
    p.add_argument("--offset", type=int, help="start at this offset in every partition (default: the beginning)")
    p.add_argument("--from-time", help="start at the first record at or after this ISO-8601 time")
    p.add_argument("--partition", type=int)
    p.add_argument("--follow", action="store_true", help="keep reading new records")
    p.add_argument("--meta", action="store_true", help="wrap each value with topic, partition, offset, key")
    _connection_flags(p)
    p.set_defaults(func=cmd_consume)

    p = sub.add_parser("worker", help="run a stream worker (Faust); start several to share the partitions")
    p.add_argument("--id", default="1", help="worker name: its state folder is $STOCKLEDGER_HOME/workers/<id>")
    p.add_argument("--web-port", type=int, help="HTTP port (STOCKLEDGER_WEB_PORT, default 6066)")
    p.add_argument("--web-host", help="HTTP address (STOCKLEDGER_WEB_HOST, default 127.0.0.1); beyond loopback "
                                      "STOCKLEDGER_OPERATOR_TOKEN is required")
    p.add_argument("--data-dir", help="RocksDB state folder (default: $STOCKLEDGER_HOME/workers/<id>)")
    _connection_flags(p)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("demo", help="start the local stack and run the pipeline on demo data")
    p.set_defaults(func=cmd_demo)

    from cli.connectors import register as register_connectors

    register_connectors(sub)
    from cli.notify import register as register_notify

    register_notify(sub)
    from cli.api import register as register_api

    register_api(sub)
    from cli.books import register as register_books

    register_books(sub)

    p = sub.add_parser("topics", help="create the contract topics and register their schemas")
    _connection_flags(p)
    p.set_defaults(func=cmd_topics)
    for p in _all_subparsers(parser):
        _log_flags(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    args.log_level = args.log_level or DEFAULT_LOG_LEVEL.get(args.command, "warning")
    args.log_format = args.log_format or "text"
    logs.setup(args.log_level, args.log_format)
    try:
        return func(args)
    except ConfigError as exc:  # a malformed variable: say which, no traceback
        print(f"stockledger: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
