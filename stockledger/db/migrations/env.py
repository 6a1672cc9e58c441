"""Alembic environment of the sink's schema.

The sink calls `stockledger.db.migrate.upgrade`, which hands a connection (holding an advisory lock, so
that sink workers starting together migrate once) through `config.attributes["connection"]`. By
hand: `alembic -c stockledger/db/migrations/alembic.ini -x url=postgresql+psycopg2://... upgrade head`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from stockledger.db.tables import metadata

VERSION_TABLE = "sink_alembic_version"  # not alembic_version: other parts may keep their own migrations


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                      transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database: -x url=postgresql+psycopg2://user@host:port/db")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run them against the database")
run_migrations_online()
