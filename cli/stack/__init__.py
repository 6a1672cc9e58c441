"""`stockledger stack up|down|status`: Kafka, the schema registry and PostgreSQL without Docker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cli.stack._proc import Process, StackError, rss_mib
from cli.stack.kafka import Kafka
from cli.stack.postgres import Postgres
from cli.stack.registry import Registry
from stockledger.config import Settings

__all__ = ["Stack", "StackError", "PartStatus"]


@dataclass(frozen=True)
class PartStatus:
    name: str
    pid: int | None
    rss_mib: float
    address: str
    log: str

    @property
    def running(self) -> bool:
        return self.pid is not None


class Stack:
    """The three parts, started in dependency order: PostgreSQL and Kafka together, then the registry."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.postgres = Postgres(settings)
        self.kafka = Kafka(settings)
        self.registry = Registry(settings)
        self.parts = (self.postgres, self.kafka, self.registry)

    def up(self, progress: Callable[[str], None] = print) -> dict[str, float]:
        """Start what is not running and return when every part is ready; seconds per part."""
        timings: dict[str, float] = {}
        errors: list[BaseException] = []
        t0 = time.monotonic()

        def run(part) -> None:
            try:
                part.start(progress)
                part.wait(progress)
                timings[part.name] = time.monotonic() - t0
                progress(f"{part.name}: ready ({timings[part.name]:.1f}s)")
            except StackError as exc:
                errors.append(exc)
            except Exception as exc:  # name the part and its log whatever went wrong
                errors.append(StackError(f"{part.name}: {exc}; log: {part.proc.logfile}"))

        kafka = threading.Thread(target=run, args=(self.kafka,))
        kafka.start()
        run(self.postgres)
        if not errors:
            run(self.registry)  # keeps its data in PostgreSQL
        kafka.join()
        if errors:
            raise errors[0]
        timings["total"] = time.monotonic() - t0
        return timings

    def background_processes(self) -> list[Process]:
        """Workers and sinks started in the background by `demo` (their pid files live in home/run)."""
        run = self.settings.home / "run"
        return [Process(p.stem, run) for p in sorted(run.glob("*.pid"))] if run.exists() else []

    def down(self, progress: Callable[[str], None] = print) -> None:
        for proc in self.background_processes():
            if proc.stop(timeout=30):
                progress(f"{proc.name}: stopped")
        for part in (self.registry, self.kafka, self.postgres):
            stopped = part.stop()
            progress(f"{part.name}: {'stopped' if stopped else 'was not running'}")

    def status(self) -> list[PartStatus]:
        addresses = {
            "postgres": self.settings.database_url,
            "kafka": self.settings.bootstrap_servers,
            "registry": self.settings.schema_registry_url,
        }
        out = []
        for part in self.parts:
            pid = part.proc.pid()
            out.append(PartStatus(part.name, pid, rss_mib(pid) if pid else 0.0, addresses[part.name],
                                  str(part.proc.logfile)))
        return out

    def running(self) -> bool:
        return all(s.running for s in self.status())
