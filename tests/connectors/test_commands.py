"""The `sink` and `replay` commands' flags, and the pure helpers of replay (no services)."""

from __future__ import annotations

import io

import pytest

from cli import main as cli
from connectors import replay
from connectors.progress import Progress


@pytest.fixture
def parser():
    return cli.build_parser()


def test_sink_flags(parser):
    args = parser.parse_args(["sink", "--batch-size", "500", "--batch-ms", "20", "--group", "g1",
                              "--instance-id", "w1", "--database-url", "postgresql+psycopg2://x/y"])
    assert (args.batch_size, args.batch_ms, args.group, args.instance_id, args.topic_prefix) == (500, 20, "g1", "w1",
                                                                                                 "")
    assert cli._settings(args).database_url == "postgresql+psycopg2://x/y"
    with pytest.raises(SystemExit):
        parser.parse_args(["sink", "--batch-size", "0"])


def test_replay_flags(parser):
    args = parser.parse_args(["replay", "stream", "--topic", "sales", "--to-time", "2026-03-01T09:00:00Z",
                              "--partitions", "0,2", "--dry-run"])
    assert (args.target, args.topic, args.to_time, args.partitions, args.dry_run) == \
        ("stream", "sales", "2026-03-01T09:00:00Z", "0,2", True)
    with pytest.raises(SystemExit):  # one of them, not both
        parser.parse_args(["replay", "sink", "--topic", "t", "--offset", "0", "--to-time", "2026-01-01"])


def test_replay_without_a_position_is_a_usage_error(parser, capsys):
    args = parser.parse_args(["replay", "sink", "--topic", "ledger.invoices"])
    assert args.func(args) == 2
    assert "give --offset or --to-time" in capsys.readouterr().err


def test_partition_and_offset_lists():
    assert replay.parse_partitions("2,0, 2") == [0, 2]
    assert replay.parse_partitions(None) is None
    assert replay.parse_offsets("0:12,0:15-20,3:7") == {0: [(12, 12), (15, 20)], 3: [(7, 7)]}
    for bad in ("x", "0:5-2", "0:-1", ","):
        with pytest.raises(replay.ReplayError):
            replay.parse_offsets(bad)


def test_move_descriptions():
    assert replay.Move("t", 1, 90, 40, 0, 100).describe() == "t[1]: 90 -> 40 (back 50 records; log 0..100)"
    assert replay.Move("t", 0, None, 5, 0, 9).describe() == "t[0]: none -> 5 (set; log 0..9)"


def test_progress_prints_a_line_per_tenth_when_not_a_terminal():
    out = io.StringIO()
    bar = Progress(200, "reading", stream=out)
    for _ in range(200):
        bar.advance()
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 11 and lines[-1] == f"reading [{'#' * 30}] 100% 200/200"
