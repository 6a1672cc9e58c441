"""What every command shares: the connection flags, the settings they override, progress lines, exit codes.

The commands (cli/main.py, cli/api.py, cli/connectors.py, cli/notify.py) import this module; nothing
below the CLI sees argparse.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stockledger.config import Settings

EXIT_USAGE = 2


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def settings_of(args: argparse.Namespace) -> Settings:
    return Settings().with_overrides(
        home=Path(args.home) if getattr(args, "home", None) else None,
        kafka_port=getattr(args, "kafka_port", None),
        registry_port=getattr(args, "registry_port", None),
        pg_port=getattr(args, "pg_port", None),
        bootstrap_servers_env=getattr(args, "bootstrap_servers", None),
        schema_registry_url_env=getattr(args, "schema_registry_url", None),
        database_url_env=getattr(args, "database_url", None),
    )


def connection_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (STOCKLEDGER_BOOTSTRAP_SERVERS)")
    p.add_argument("--schema-registry-url", help="Confluent-compatible registry URL (STOCKLEDGER_SCHEMA_REGISTRY_URL)")
    p.add_argument("--database-url", help="SQLAlchemy URL of the books (STOCKLEDGER_DATABASE_URL)")
