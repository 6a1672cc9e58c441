"""Starting and stopping one `stockledger api` process: migrate, register the schemas, assign the
outcome partitions at their end, then serve; SIGTERM/Ctrl-C stop it after the requests in flight."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web
from sqlalchemy import create_engine

from api.app import build_app, new_services
from api.db import Database
from api.idempotency import prune
from api.outcomes import DEAD_LETTERS, OUTCOMES, OutcomeWaiter
from api.publisher import Publisher
from api.workers import Workers
from stockledger.codec import Codec
from stockledger.config import Settings
from stockledger.db import migrate
from stockledger.topics import INPUTS, ensure_topics

PRUNE_EVERY = 3600.0
log = logging.getLogger("stockledger.api")


def migrate_database(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


async def _prune_forever(db: Database) -> None:
    while True:
        try:
            n = await db.run(prune)
            if n:
                log.info("pruned %d expired idempotency records", n)
        except Exception as exc:  # the database may be away for a moment; next round
            log.warning("prune failed: %s", exc)
        await asyncio.sleep(PRUNE_EVERY)


async def serve(settings: Settings, host: str, port: int, db_pool: int = 16) -> None:
    migrate_database(settings)
    master_key = settings.master_key()
    codec = Codec(settings.schema_registry_url, auth=settings.registry_auth)
    ensure_topics(settings.kafka_config(), settings.partitions,
                  [t.name for t in INPUTS] + [OUTCOMES, *DEAD_LETTERS])
    for t in INPUTS:
        codec.register(t.name)
    loop = asyncio.get_running_loop()
    db = Database(settings.database_url, db_pool)
    publisher = Publisher(settings, codec).start()
    outcomes = await loop.run_in_executor(None, lambda: OutcomeWaiter(settings, codec).start(loop))
    workers = await Workers(settings).start()
    app = build_app(new_services(settings, db, master_key, publisher, outcomes, workers))
    # keepalive_timeout is also how long a new connection may take to send its first request's
    # headers (aiohttp closes a connection idle in the header phase then): the header timeout.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=settings.api_header_timeout,
                           max_line_size=8190, max_field_size=8190, max_headers=64)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pruner = asyncio.create_task(_prune_forever(db))
    print(f"stockledger api listening on http://{host}:{port} (workers {settings.worker_url})",
          file=sys.stderr, flush=True)
    await stop.wait()
    pruner.cancel()
    await runner.cleanup()
    await workers.close()
    outcomes.close()
    publisher.close()
    db.close()
