"""A plain-text progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None, min_interval: float = 0.2):
        self.total = max(0, total)
        self.label = label
        self.stream = stream or sys.stderr
        self.done = 0
        self.min_interval = min_interval
        self._last_draw = 0.0
        self._last_decile = -1
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def advance(self, n: int = 1) -> None:
        self.update(self.done + n)

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if self._tty:
            if now - self._last_draw >= self.min_interval or done >= self.total:
                self.stream.write("\r" + self.render())
                self.stream.flush()
                self._last_draw = now
        else:
            decile = (10 * done // self.total) if self.total else 10
            if decile != self._last_decile:
                self.stream.write(self.render() + "\n")
                self.stream.flush()
                self._last_decile = decile

    def render(self, width: int = 30) -> str:
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(frac * width)
        return f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {frac * 100:3.0f}% {self.done:,}/{self.total:,}"

    def close(self) -> None:
        if self._tty:
            self.stream.write("\r" + self.render() + "\n")
        elif self._last_decile != 10:
            self.stream.write(self.render() + "\n")
        self.stream.flush()
