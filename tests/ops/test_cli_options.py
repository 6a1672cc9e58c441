"""The CLI's shared options, run as a subprocess like an operator runs it: --version, friendly
configuration errors (exit 2 naming the variable, no traceback), one --log-level and --log-format."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]


def run(*argv: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *argv], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=ROOT, timeout=timeout, stdin=subprocess.DEVNULL)


def test_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    r = run("--version")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"stockledger {version}\n", "")


# Every command builds its settings first: each one with a different malformed variable.
@pytest.mark.parametrize("command,variable,value,problem", [
    (["consume", "sales"], "STOCKLEDGER_KAFKA_PORT", "abc", "not an integer"),
    (["sink"], "STOCKLEDGER_PARTITIONS", "4.5", "not an integer"),
    (["api"], "STOCKLEDGER_API_RATE_LIMIT", "fast", "not a number"),
    (["notify"], "STOCKLEDGER_NOTIFY_TIMEOUT", "5x", "not a duration: '5x' (give e.g. 500ms, 30s, 5m, 1h)"),
    (["worker"], "STOCKLEDGER_NOTIFY_RETRY_SCHEDULE", "1m,soon",
     "not a duration: 'soon' (give e.g. 500ms, 30s, 5m, 1h)"),
    (["topics"], "STOCKLEDGER_KAFKA_SECURITY_PROTOCOL", "KERBEROS",
     "not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    (["tenant", "list"], "STOCKLEDGER_PG_PORT", "", "not an integer"),
    (["stack", "status"], "STOCKLEDGER_WEB_PORT", "66 06", "not an integer"),
])
def test_a_malformed_variable_is_exit_2_naming_it(command, variable, value, problem):
    r = run(*command, env={variable: value})
    assert r.returncode == 2
    assert r.stderr == f"stockledger: configuration error: {variable}={value!r}: {problem}\n"
    assert r.stdout == ""


def test_one_log_level_before_or_after_the_command():
    parser = build_parser()
    for argv in (["--log-level", "debug", "sink"], ["sink", "--log-level", "debug"], ["sink", "--loglevel", "DEBUG"],
                 ["--log-level", "debug", "worker"], ["api", "--log-level", "debug"],
                 ["replay", "sink", "--topic", "t", "--log-level", "debug"],
                 ["webhook", "list", "acme", "--log-level", "debug"]):
        assert parser.parse_args(argv).log_level == "debug", argv
    args = parser.parse_args(["notify", "--log-format", "json"])
    assert (args.log_level, args.log_format) == (None, "json")  # main() fills in the command's default


def test_an_unknown_log_level_or_format_is_a_usage_error():
    assert run("--log-level", "loud", "topics").returncode == 2
    r = run("sink", "--log-format", "xml")
    assert r.returncode == 2 and "invalid choice: 'xml'" in r.stderr
