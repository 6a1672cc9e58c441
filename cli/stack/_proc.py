"""Background processes the stack starts: pid files that remember exactly what we started."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class StackError(RuntimeError):
    """A part of the stack that failed; the message names the part and its log."""


def _start_ticks(pid: int) -> str | None:
    """The kernel's start time of `pid`: a reused pid will not match the one we recorded."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@dataclass
class Process:
    """One long-running process with a pid file `<dir>/<name>.pid` holding `pid start_ticks`."""

    name: str
    directory: Path

    @property
    def pidfile(self) -> Path:
        return self.directory / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.directory / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid if the process we started is still alive, else None (and the stale file goes)."""
        try:
            pid_text, ticks = self.pidfile.read_text().split()
        except (OSError, ValueError):
            return None
        pid = int(pid_text)
        if _start_ticks(pid) != ticks:
            self.pidfile.unlink(missing_ok=True)
            return None
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return None
        if state == "Z":
            return None
        return pid

    def spawn(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
              user: str | None = None) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.logfile, "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
                                user=user)
        log.close()
        self.pidfile.write_text(f"{proc.pid} {_start_ticks(proc.pid)}\n")
        return proc.pid

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> bool:
        """`sig`, then SIGKILL after `timeout`; returns whether something was running."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.1)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            while self.pid() is not None:
                time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)
        return True

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def rss_mib(pid: int) -> float:
    """Resident memory of a process, for `status`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: Process,
               progress: Callable[[str], None]) -> float:
    """Poll `check` until true; show progress; fail naming the part and its log."""
    start = time.monotonic()
    last_note = start
    while True:
        try:
            if check():
                return time.monotonic() - start
        except Exception:  # not up yet
            pass
        now = time.monotonic()
        if proc.pid() is None:
            raise StackError(f"{proc.name} exited while {what}; log: {proc.logfile}\n{proc.tail()}")
        if now - start > timeout:
            raise StackError(f"{proc.name} not ready after {timeout:.0f}s ({what}); log: {proc.logfile}\n{proc.tail()}")
        if now - last_note >= 5:
            progress(f"{proc.name}: {what} ({now - start:.0f}s)")
            last_note = now
        time.sleep(0.25)
