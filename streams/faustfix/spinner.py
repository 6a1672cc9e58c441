"""Faust's Worker without its terminal spinner.

faust-streaming 0.15.3's `Worker` always makes a terminal spinner and, at a log level of WARNING or
above, sets the root logger to DEBUG so that every log call of any library turns the spinner
(`Worker._setup_spinner_handler`): every `log.debug` in aiokafka's fetcher and in Faust builds a
LogRecord and goes through a handler, 7-11% of a busy worker's CPU in a profile, and the worker's log
fills with the spinner's terminal escapes. This Worker has no spinner; the log level is the one
asked for.
"""

from __future__ import annotations

from typing import Any

import faust


class Worker(faust.Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spinner = None


__all__ = ["Worker"]
