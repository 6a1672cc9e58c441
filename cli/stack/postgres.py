"""A project-local PostgreSQL cluster: Debian's server binaries, data in the stack folder, its own port."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg2

from cli.stack._proc import Process, StackError, wait_until
from stockledger.config import Settings

DATABASES = ("stockledger", "registry")


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise StackError("postgres: server binaries not found (install Debian's postgresql package)")


def _run_as() -> str | None:
    """initdb and postgres refuse to run as root: run them as the `postgres` user then."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise StackError("postgres: running as root needs a 'postgres' user (Debian's package creates it)") from None
    return "postgres"


class Postgres:
    name = "postgres"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.dir = settings.home / "postgres"
        self.data = self.dir / "data"
        self.proc = Process("postgres", self.dir)

    def connect(self, db: str = "postgres"):
        return psycopg2.connect(host="127.0.0.1", port=self.settings.pg_port, user="postgres", dbname=db,
                                connect_timeout=2)

    def _ready(self) -> bool:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("select 1")
                return cur.fetchone() == (1,)
        finally:
            conn.close()

    def start(self, progress: Callable[[str], None]) -> None:
        if self.proc.pid() is not None:
            return
        user = _run_as()
        bindir = _bindir()
        self.dir.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(self.dir, user)
        if not (self.data / "PG_VERSION").exists():
            progress("postgres: initdb")
            rc = subprocess.call([str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                                  "-E", "UTF8", "--locale=C.UTF-8"], user=user,
                                 stdout=open(self.proc.logfile, "ab"), stderr=subprocess.STDOUT)
            if rc != 0:
                raise StackError(f"postgres: initdb failed; log: {self.proc.logfile}\n{self.proc.tail()}")
        self.proc.spawn([str(bindir / "postgres"), "-D", str(self.data), "-p", str(self.settings.pg_port),
                         "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                         "-c", "max_connections=200", "-c", "fsync=on"], user=user)

    def wait(self, progress: Callable[[str], None]) -> None:
        wait_until(self._ready, 60, "accepting queries", self.proc, progress)
        conn = self.connect()
        conn.autocommit = True  # CREATE DATABASE refuses to run inside a transaction
        try:
            with conn.cursor() as cur:
                for db in DATABASES:
                    cur.execute("select 1 from pg_database where datname = %s", (db,))
                    if cur.fetchone() is None:
                        cur.execute(f'create database "{db}"')
        finally:
            conn.close()

    def stop(self) -> bool:
        return self.proc.stop(timeout=30, sig=signal.SIGINT)  # SIGINT: fast shutdown, rolls back clients
