"""The one State protocol of the core: the tenant's state as the shell holds it.

Values are JSON-plain (Decimal as text), by table and key; `put(table, key, None)` deletes. The fold
(`fold.State`) and the credit book (`credit.py`) both read and write through it; `fold.Tables` is the
dict-backed one of the tests and the serial reference, `streams/state.py` the worker's.
"""

from __future__ import annotations

from typing import Any, Protocol


class State(Protocol):
    """The tenant's state as the shell holds it; values are JSON-plain; `put(table, key, None)` deletes."""

    def get(self, table: str, key: str) -> Any | None: ...

    def put(self, table: str, key: str, value: Any) -> None: ...


__all__ = ["State"]
