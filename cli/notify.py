"""The `notify` and `webhook add|list|remove|failures|stats` subcommands (registered by cli.main)."""

from __future__ import annotations

import argparse
import json
import sys

from cli.flags import EXIT_USAGE, connection_flags, settings_of
from connectors.notify.metrics import FAILURE_CLASSES


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "notify", help="webhook connector worker: pushes every stock.levels and catalog.groups change to the "
                       "subscribed endpoints",
        description="Consumes stock.levels and catalog.groups and POSTs seed 003's inventory.change (absolute "
                    "new_quantity) and catalog.update (the full product group), signed X-ERP-Signature over "
                    "<X-ERP-Timestamp>.<body>, to every webhook subscription of the tenant that asked for them. "
                    "Retries 500/502/503/504, timeouts and connection errors on the schedule, never 4xx; dead-letters "
                    "after the maximum age; newest level per SKU and newest version per group only; a circuit breaker "
                    "per endpoint. Start several "
                    "with the same --group to share the work. SIGTERM/Ctrl-C: finishes the requests in flight, "
                    "then stops.")
    p.add_argument("--group", help="consumer group, also the key of the stored offsets (default <app_id>-notify)")
    p.add_argument("--instance-id", "--id", dest="instance_id",
                   help="static group membership: a restarted notifier takes its partitions back at once")
    p.add_argument("--topic-prefix", default="",
                   help="read <prefix>stock.levels and <prefix>catalog.groups (side-by-side runs, tests)")
    p.add_argument("--metrics-port", type=int,
                   help="/metrics and /health on this port (STOCKLEDGER_NOTIFY_METRICS_PORT, default 6067; 0: none)")
    p.add_argument("--metrics-host", help="their address (STOCKLEDGER_METRICS_HOST, default 127.0.0.1)")
    p.add_argument("--retry-schedule", help="delays between tries after a failure, the last repeating "
                                            "(STOCKLEDGER_NOTIFY_RETRY_SCHEDULE, default 1m,5m,15m,1h,6h)")
    p.add_argument("--dead-letter-after",
                   help="give up this long after the first failure (STOCKLEDGER_NOTIFY_DEAD_LETTER_AFTER, "
                        "default 24h)")
    p.add_argument("--timeout", help="per request (STOCKLEDGER_NOTIFY_TIMEOUT, default 5s)")
    p.add_argument("--breaker-failures", type=int,
                   help="consecutive failures that open an endpoint's breaker (default 5)")
    p.add_argument("--breaker-open", help="how long it stays open before one probe (default 60s)")
    p.add_argument("--concurrency", type=int, help="requests in flight at most (default 64)")
    connection_flags(p)
    p.set_defaults(func=cmd_notify)

    w = subparsers.add_parser("webhook", help="outbound webhook subscriptions: add, list, remove, failures, stats")
    wsub = w.add_subparsers(dest="action", required=True)
    p = wsub.add_parser("add", help="subscribe URL to a tenant's stock (and catalog) changes; prints the signing "
                                    "secret once")
    p.add_argument("tenant")
    p.add_argument("url")
    p.add_argument("--events", help="comma-separated: inventory.change (default), catalog.update")
    secret = p.add_mutually_exclusive_group()
    secret.add_argument("--secret", help="the shared secret (default: a new one, printed once)")
    secret.add_argument("--secret-from-tenant", action="store_true",
                        help="sign with the tenant's inbound ERP webhook secret (stockledger tenant add); then "
                             "every delivery is also a valid inbound webhook for the tenant: prefer the default")
    p.add_argument("--allow-private-url", action="store_true",
                   help="let the URL reach loopback, private or link-local addresses (refused by default)")
    p.add_argument("--backfill", action="store_true",
                   help="first send the tenant's current state (every SKU's level, every product group, as the "
                        "subscription's events ask), then the live changes: nothing missed, nothing repeated")
    p.add_argument("--topic-prefix", default="", help="read <prefix>stock.levels and <prefix>catalog.groups "
                                                      "for the backfill (side-by-side runs, tests)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    connection_flags(p)
    p.set_defaults(func=cmd_webhook)
    p = wsub.add_parser("backfill", help="send a subscription the tenant's current state again (sends only what "
                                         "it has not been sent yet; e.g. after an add --backfill that failed)")
    p.add_argument("subscription_id")
    p.add_argument("--topic-prefix", default="", help="read <prefix>stock.levels and <prefix>catalog.groups")
    connection_flags(p)
    p.set_defaults(func=cmd_webhook)
    p = wsub.add_parser("list", help="a tenant's subscriptions (never their secrets)")
    p.add_argument("tenant")
    p.add_argument("--json", action="store_true", help="JSON lines")
    connection_flags(p)
    p.set_defaults(func=cmd_webhook)
    p = wsub.add_parser("remove", help="delete a subscription and what it still had pending")
    p.add_argument("subscription_id")
    connection_flags(p)
    p.set_defaults(func=cmd_webhook)
    p = wsub.add_parser("failures", help="a tenant's data errors, rejections and dead letters, newest first")
    p.add_argument("tenant")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true", help="JSON lines, with the body that was sent")
    connection_flags(p)
    p.set_defaults(func=cmd_webhook)
    p = wsub.add_parser("stats",
                        help="a tenant's deliveries, failures, pending levels, breakers and p50/p95/p99 latency")
    p.add_argument("tenant")
    p.add_argument("--metrics-url", action="append",
                   help="a notifier's metrics (repeat for several; "
                        "default http://127.0.0.1:<notify metrics port>/metrics)")
    p.add_argument("--json", action="store_true")
    connection_flags(p)
    p.set_defaults(func=cmd_webhook)


def _notify_settings(args: argparse.Namespace):
    from stockledger.config import parse_duration, parse_durations

    settings = settings_of(args).with_overrides(
        notify_retry_schedule=args.retry_schedule, notify_dead_letter_after=args.dead_letter_after,
        notify_timeout=args.timeout, notify_breaker_failures=args.breaker_failures,
        notify_breaker_open=args.breaker_open, notify_concurrency=args.concurrency,
        notify_metrics_port=args.metrics_port, metrics_host=args.metrics_host)
    parse_durations(settings.notify_retry_schedule)  # ValueError: a usage error
    for d in (settings.notify_dead_letter_after, settings.notify_timeout, settings.notify_breaker_open):
        parse_duration(d)
    return settings


def cmd_notify(args: argparse.Namespace) -> int:
    import threading

    from connectors.notify.worker import Notifier
    from connectors.offsets import install_signal_handlers

    try:
        settings = _notify_settings(args)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    stop = threading.Event()
    install_signal_handlers(stop)
    notifier = Notifier(settings, group=args.group, topic_prefix=args.topic_prefix, instance_id=args.instance_id,
                        stop=stop)
    stats = notifier.run()
    print(f"notify stopped: {stats.line()}", flush=True)  # the result on stdout; logs on stderr
    return 1 if notifier.deliverer.error is not None else 0


def cmd_webhook(args: argparse.Namespace) -> int:
    from connectors import store
    from connectors.notify import subscriptions as subs
    from stockledger.db import migrate

    settings = settings_of(args)
    engine = store.engine_for(settings.database_url)
    try:
        migrate.upgrade(engine)
        if args.action == "add":
            sub, secret = subs.add(engine, settings.master_key(), args.tenant, args.url,
                                   events=subs.parse_events(args.events), secret=args.secret,
                                   secret_from_tenant=args.secret_from_tenant,
                                   allow_private=args.allow_private_url)
            if args.json:
                print(json.dumps({"subscription_id": sub.subscription_id, "tenant": sub.tenant_id, "url": sub.url,
                                  "events": list(sub.events), "secret": secret,
                                  "secret_from_tenant": sub.secret_from_tenant,
                                  "allow_private_url": sub.allow_private}))
            else:
                print(f"subscription {sub.subscription_id}: {sub.tenant_id} -> {sub.url} ({', '.join(sub.events)})")
                if secret is not None and args.secret is None:
                    print(f"secret (shown once, keep it): {secret}")
                elif sub.secret_from_tenant:
                    print("signed with the tenant's webhook secret")
            if sub.secret_from_tenant:
                print("warning: deliveries signed with the tenant's inbound secret are also valid inbound ERP webhooks "
                      "for this tenant", file=sys.stderr)
            return _backfill(settings, engine, sub, args) if args.backfill else 0
        if args.action == "backfill":
            return _backfill(settings, engine, subs.get(engine, args.subscription_id), args)
        if args.action == "list":
            for s in subs.list_for(engine, args.tenant):
                row = {"subscription_id": s.subscription_id, "url": s.url, "events": list(s.events),
                       "secret": "tenant" if s.secret_from_tenant else "own", "allow_private_url": s.allow_private,
                       "created_at": s.created_at.isoformat() if s.created_at else None}
                print(json.dumps(row) if args.json else
                      f"{s.subscription_id}  {s.url}  {','.join(s.events)}  secret={row['secret']}  "
                      f"{row['created_at']}")
            return 0
        if args.action == "remove":
            s = subs.remove(engine, args.subscription_id)
            print(f"removed {s.subscription_id} ({s.tenant_id} -> {s.url})")
            return 0
        if args.action == "failures":
            return _failures(engine, args)
        return _stats(engine, settings, args)
    except (subs.SubscriptionError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    finally:
        engine.dispose()


def _backfill(settings, engine, sub, args: argparse.Namespace) -> int:
    """The subscription (stored and committed) gets the tenant's current state (connectors.notify.backfill)."""
    from confluent_kafka import KafkaException

    from connectors.notify import backfill

    try:
        result = backfill.run(settings, engine, sub, topic_prefix=args.topic_prefix)
    except (KafkaException, TimeoutError, OSError) as exc:
        print(f"backfill of {sub.subscription_id} failed ({type(exc).__name__}: {exc}); the subscription is stored "
              f"and gets live changes; run `stockledger webhook backfill {sub.subscription_id}` again", file=sys.stderr)
        return 1
    print(result.line(), file=sys.stderr if getattr(args, "json", False) else sys.stdout)
    return 0


def _failures(engine, args: argparse.Namespace) -> int:
    from connectors.notify import payload, state

    with engine.connect() as conn:
        rows = state.failures(conn, args.tenant, args.limit)
    for r in rows:
        if args.json:
            print(json.dumps({**r, "created_at": r["created_at"].isoformat()}, default=str))
        else:
            status = r["status"] if r["status"] is not None else "-"
            print(f"{r['created_at'].isoformat()}  {r['kind']:<11} {status:>3}  {payload.shown_key(r['sku'])}  "
                  f"{r['event_id']}  "
                  f"{r['subscription_id']}  {r['url']}  tries={r['attempts']}  {r['error']}")
    if not rows and not args.json:
        print(f"no webhook failures for {args.tenant}")
    return 0


def _stats(engine, settings, args: argparse.Namespace) -> int:
    import requests

    from connectors.notify import metrics, state
    from connectors.notify import subscriptions as subs

    urls = args.metrics_url or [f"http://127.0.0.1:{settings.notify_metrics_port}/metrics"]
    pages, unreachable = [], []
    for u in urls:
        try:
            r = requests.get(u, timeout=5)
            r.raise_for_status()
            pages.append(r.text)
        except requests.RequestException as exc:
            unreachable.append(f"{u} ({type(exc).__name__})")
    samples = metrics.scrape(pages)

    def total(name: str, **labels: str) -> float:
        return sum(v for lab, v in samples.get(name, ()) if all(lab.get(k) == x for k, x in labels.items()))

    t = args.tenant
    buckets = metrics.latency_buckets(samples, t)
    endpoints = sorted({s.url for s in subs.list_for(engine, t)})
    with engine.connect() as conn:
        pending, retrying = state.pending_counts(conn).get(t, (0, 0))
    breaker_names = {v: k for k, v in {"closed": 0, "half-open": 1, "open": 2}.items()}
    out = {
        "tenant": t,
        "deliveries": int(total("stockledger_webhook_deliveries_total", tenant=t)),
        "failures": {c: int(total("stockledger_webhook_failures_total", tenant=t, **{"class": c}))
                     for c in FAILURE_CLASSES},
        "dead_letters": int(total("stockledger_webhook_dead_letters_total", tenant=t)),
        "pending": pending, "retries_pending": retrying,
        "breakers": {e: breaker_names.get(max((v for lab, v in  # type: ignore[arg-type]
                                                samples.get("stockledger_webhook_breaker_state", ())
                                                if lab.get("endpoint") == e), default=0), "?") for e in endpoints},
        "latency_seconds": {f"p{int(q * 100)}": metrics.quantile(q, buckets) for q in (0.5, 0.95, 0.99)},
        "latency_count": int(buckets[-1][1]) if buckets else 0,
        "notifiers_scraped": len(pages), "unreachable": unreachable,
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"tenant {t}: {out['deliveries']} delivered, {out['dead_letters']} dead-lettered, {pending} pending "
          f"({retrying} waiting for a retry); {len(pages)} notifier(s) scraped")
    print("failures: " + ", ".join(f"{c}={n}" for c, n in out["failures"].items()))
    lat = out["latency_seconds"]
    if out["latency_count"]:
        print(f"latency (stock.levels record to 2xx, {out['latency_count']} deliveries): "
              + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in lat.items()))
    else:
        print("latency: no deliveries measured yet")
    for e, st in out["breakers"].items():
        print(f"breaker {st:<9} {e}")
    for u in unreachable:
        print(f"not reachable: {u}", file=sys.stderr)
    return 0
