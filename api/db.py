"""PostgreSQL off the event loop: a SQLAlchemy engine and a thread pool of the same size, so a
blocking psycopg2 call never stalls the loop and never waits for a connection it cannot get.

The API's sessions are in autocommit (every statement it runs stands alone: a lookup, a claim, a
stored answer), so a request costs one round trip per statement and no BEGIN/COMMIT/ROLLBACK; and
they do not wait for the WAL flush (`synchronous_commit off`): a crash of PostgreSQL may forget the
last moment's claims and answers, and a retry then executes again with the same event id, which the
pipeline recognises (it re-sends the same outcome). Tenants and credentials are written by the CLI,
with its own engine and ordinary transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event

T = TypeVar("T")


class Database:
    def __init__(self, url: str, size: int = 8):
        self.engine: Engine = create_engine(url, pool_size=size, max_overflow=0, pool_recycle=300,
                                            pool_timeout=30, isolation_level="AUTOCOMMIT")
        event.listen(self.engine, "connect", _session)
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="api-db")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(engine, *args)` in the pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, self.engine, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.engine.dispose()


def _session(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.autocommit = True
    with dbapi_connection.cursor() as cur:
        cur.execute("SET synchronous_commit TO OFF")
