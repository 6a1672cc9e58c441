"""PostgreSQL off the event loop: a SQLAlchemy engine and a thread pool of the same size, so a
blocking psycopg2 call never stalls the loop and never waits for a connection it cannot get."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from sqlalchemy import Engine, create_engine

T = TypeVar("T")


class Database:
    def __init__(self, url: str, size: int = 8):
        self.engine: Engine = create_engine(url, pool_size=size, max_overflow=0, pool_pre_ping=True,
                                            pool_timeout=30)
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="api-db")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(engine, *args)` in the pool."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, self.engine, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.engine.dispose()
