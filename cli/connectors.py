"""The `sink` and `replay` subcommands; `register(subparsers)` adds them to the `stockledger` CLI
(`notify` and `webhook` are in cli/notify.py)."""

from __future__ import annotations

import argparse
import sys

from cli.flags import EXIT_USAGE, connection_flags, settings_of
from connectors.sink import DEFAULT_BATCH_MS, DEFAULT_BATCH_SIZE

EXIT_REFUSED = 1


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sink", help="PostgreSQL connector worker: writes the ledger topics into the books, exactly once",
        description="Consumes ledger.invoices, ledger.credit_notes, ledger.payments, ledger.journal, "
                    "ledger.external_refs and ledger.shipments and writes the books. Start several with the same "
                    "--group to share "
                    "the partitions. Runs the schema migrations itself. SIGTERM/Ctrl-C: writes what it holds, "
                    "then stops.")
    p.add_argument("--batch-size", type=_positive, default=DEFAULT_BATCH_SIZE,
                   help=f"write when this many records are buffered (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--batch-ms", type=_positive, default=DEFAULT_BATCH_MS,
                   help=f"or when the oldest buffered record is this old (default {DEFAULT_BATCH_MS})")
    p.add_argument("--group", help="consumer group, also the key of the stored offsets (default <app_id>-sink)")
    p.add_argument("--instance-id", help="static group membership: a restarted worker takes its partitions back "
                                         "at once; a stopped one keeps them for the 10 s session timeout "
                                         "(give each worker its own)")
    p.add_argument("--topic-prefix", default="",
                   help="read <prefix>ledger.* instead of ledger.* (side-by-side runs, tests)")
    p.add_argument("--metrics-port", type=int, help="/metrics and /health on this port (STOCKLEDGER_SINK_METRICS_PORT, "
                                                    "default 6068; 0: none)")
    p.add_argument("--metrics-host", help="their address (STOCKLEDGER_METRICS_HOST, default 127.0.0.1)")
    connection_flags(p)
    p.set_defaults(func=cmd_sink)

    p = subparsers.add_parser(
        "replay", help="reprocess from an offset or a time: the sink, the stream group, or dead letters",
        description="sink: rewind the offsets the sink stored for --topic (running sinks write the records "
                    "again, nothing is duplicated). stream: move the stream group's committed offsets on an input "
                    "--topic (refused while the group has live members). dlq: republish chosen dead letters of "
                    "--topic (the DLQ or its source topic) to where they came from.")
    p.add_argument("target", choices=["sink", "stream", "dlq"])
    p.add_argument("--topic", required=True)
    p.add_argument("--partitions", help="comma-separated partitions (default: all)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--offset", type=int, help="go to this offset in every chosen partition")
    when.add_argument("--to-time", help="go to the first record at or after this ISO-8601 time (or epoch millis)")
    p.add_argument("--offsets", help="dlq: the dead letters to republish, PARTITION:OFFSET or PARTITION:FIRST-LAST, "
                                     "comma-separated (default: every one from --offset/--to-time on)")
    p.add_argument("--group", help="sink: the sink group (default <app_id>-sink); stream: the workers' group "
                                   "(default <app_id>)")
    p.add_argument("--dry-run", action="store_true", help="show what would move or be republished; change nothing")
    p.add_argument("--wait", action="store_true", help="sink: then show running sinks writing the records again")
    connection_flags(p)
    p.set_defaults(func=cmd_replay)


def cmd_sink(args: argparse.Namespace) -> int:
    import threading

    from connectors.offsets import install_signal_handlers
    from connectors.sink import Sink

    stop = threading.Event()
    install_signal_handlers(stop)
    settings = settings_of(args).with_overrides(sink_metrics_port=args.metrics_port,
                                                     metrics_host=args.metrics_host)
    try:
        sink = Sink(settings, group=args.group, topic_prefix=args.topic_prefix, batch_size=args.batch_size,
                    batch_ms=args.batch_ms, instance_id=args.instance_id, stop=stop,
                    metrics_port=settings.sink_metrics_port)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    stats = sink.run()
    print(f"sink stopped: {stats.line()}", flush=True)  # the result on stdout; logs on stderr
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from connectors import replay

    settings = settings_of(args)
    try:
        partitions = replay.parse_partitions(args.partitions)
        if args.target == "dlq":
            offsets = replay.parse_offsets(args.offsets) if args.offsets else None
            replay.dlq_replay(settings, args.topic, offsets=offsets, partitions=partitions, offset=args.offset,
                              to_time=args.to_time, dry_run=args.dry_run)
            return 0
        if args.offsets:
            raise replay.ReplayError("--offsets is for dlq replays; give --offset or --to-time")
        if args.offset is None and args.to_time is None:
            raise replay.ReplayError("give --offset or --to-time")
        if args.target == "sink":
            replay.sink_replay(settings, args.topic, group=args.group, partitions=partitions, offset=args.offset,
                               to_time=args.to_time, dry_run=args.dry_run, wait=args.wait)
        else:
            replay.stream_replay(settings, args.topic, group=args.group, partitions=partitions, offset=args.offset,
                                 to_time=args.to_time, dry_run=args.dry_run)
    except replay.ReplayRefused as exc:
        print(f"replay refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except replay.ReplayError as exc:
        print(f"nothing replayed: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return 0
