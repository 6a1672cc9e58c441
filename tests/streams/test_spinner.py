"""streams/faustfix/spinner.py: the worker's log level stays the one asked for (no DEBUG root for a spinner)."""

from __future__ import annotations

import logging

import faust
from faust.worker import Worker as FaustWorker

from streams.faustfix.spinner import Worker


def test_the_root_logger_stays_at_the_level_asked_for():
    root = logging.getLogger()
    before = root.level
    app = faust.App("spinner-test", broker="kafka://127.0.0.1:9", web_enabled=False)
    try:
        root.setLevel(logging.WARNING)
        ours = Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
        ours._setup_spinner_handler(root, logging.WARNING)
        assert root.level == logging.WARNING and not root.isEnabledFor(logging.DEBUG)
        # Faust's own Worker is what this works around: it turns the root logger to DEBUG for its spinner
        handler = logging.StreamHandler()
        root.addHandler(handler)
        try:
            FaustWorker(app, loglevel="warning", quiet=True,
                        redirect_stdouts=False)._setup_spinner_handler(root, logging.WARNING)
            assert root.level == logging.DEBUG
        finally:
            for h in list(root.handlers):
                if h is handler or type(h).__name__ == "SpinnerHandler":
                    root.removeHandler(h)
    finally:
        root.setLevel(before)
