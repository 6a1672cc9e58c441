"""The stack's process handling: readiness, idempotent up, status, and data that survives down/up."""

from __future__ import annotations

import dataclasses
import shutil
import uuid

from cli.stack import Stack
from cli.stack.postgres import Postgres
from cli.testing import spare_port


def test_status_reports_every_part(stack):
    rows = {s.name: s for s in stack.status()}
    assert set(rows) == {"postgres", "kafka", "registry"}
    assert all(s.running and s.rss_mib > 0 for s in rows.values())


def test_up_is_idempotent(stack):
    pids = {s.name: s.pid for s in stack.status()}
    stack.up(lambda m: None)
    assert {s.name: s.pid for s in stack.status()} == pids  # nothing was started again


def test_postgres_data_survives_down_and_up_and_down_stops_only_its_own(stack, settings):
    """A second PostgreSQL on its own folder and port, beside the test stack's: the side-by-side case."""
    home = settings.home / f"side-{uuid.uuid4().hex[:6]}"  # not /tmp: the postgres user must reach it
    mine = dataclasses.replace(settings, home=home, pg_port=spare_port())
    pg = Postgres(mine)
    other = Stack(settings).postgres.proc.pid()
    try:
        pg.start(print)
        pg.wait(print)
        conn = pg.connect("stockledger")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("create table kept (v int); insert into kept values (42)")
        conn.close()
        assert pg.stop() is True
        assert pg.proc.pid() is None
        assert Stack(settings).postgres.proc.pid() == other  # the other cluster was not touched
        pg.start(print)
        pg.wait(print)
        conn = pg.connect("stockledger")
        with conn.cursor() as cur:
            cur.execute("select v from kept")
            assert cur.fetchall() == [(42,)]
        conn.close()
    finally:
        pg.stop()
        shutil.rmtree(home, ignore_errors=True)
