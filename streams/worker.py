"""`stockledger worker`: one Faust worker process; start several to share the partitions."""

from __future__ import annotations

import logging
from pathlib import Path

from stockledger.config import Settings
from stockledger.topics import ensure_topics
from streams import sales, stock, web
from streams.app import Pipeline, create_app


def build(settings: Settings, datadir: Path, web_port: int) -> Pipeline:
    """The app with every agent and view installed (tests and the CLI build it the same way)."""
    p = create_app(settings, datadir, web_port)
    shell = stock.install(p)
    sales_shell = sales.install(p, shell)
    web.install(p, shell, sales_shell)
    return p


def run(settings: Settings, worker_id: str, web_port: int | None = None, datadir: Path | None = None,
        loglevel: str = "warning") -> None:
    from faust.worker import Worker

    web_port = web_port or settings.web_port
    datadir = datadir or settings.home / "workers" / worker_id
    datadir.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings.bootstrap_servers, settings.partitions)
    p = build(settings, datadir, web_port)
    p.register_schemas()
    logging.getLogger("stockledger").setLevel(loglevel.upper())
    Worker(p.app, loglevel=loglevel, quiet=True, redirect_stdouts=False).execute_from_commandline()
