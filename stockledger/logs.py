"""Logging for every command: one `--log-level`, and `--log-format text|json` (one JSON object a line)."""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error", "critical")
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message"}` plus `process` (when named) and `exception`."""

    def __init__(self, process: str | None = None):
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.process:
            out["process"] = self.process
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def dict_config(level: str, fmt: str = "text", process: str | None = None) -> dict[str, Any]:
    """A `logging.config.dictConfig` for stderr; Faust's worker takes it too (mode's `logging_config`).
    `process` names this process in every line (e.g. the API's --id)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; known: {', '.join(FORMATS)}")
    text = TEXT_FORMAT.replace("%(name)s", f"{process} %(name)s") if process else TEXT_FORMAT
    formatter: dict[str, Any] = {"()": JsonFormatter, "process": process} if fmt == "json" else {"format": text}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"stockledger": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": sys.stderr,
                                "formatter": "stockledger"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {"alembic": {"level": "WARNING"}},
    }


def setup(level: str, fmt: str = "text", process: str | None = None) -> None:
    logging.config.dictConfig(dict_config(level, fmt, process))
