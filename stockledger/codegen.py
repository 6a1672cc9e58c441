"""The source of a function generated at run time (the compiled Avro writers and readers): lines at an
indent, fresh local names, constants handed to the code by name, then compiled and executed once."""

from __future__ import annotations

from typing import Any

__all__ = ["Source"]


class Source:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.n = 0

    def name(self, prefix: str) -> str:
        """A local name not used before in this source."""
        self.n += 1
        return f"{prefix}{self.n}"

    def const(self, value: Any) -> str:
        """The name under which the generated code reads `value`."""
        name = self.name("_c")
        self.consts[name] = value
        return name

    def emit(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def define(self, function: str, filename: str, scope: dict[str, Any]) -> Any:
        """Compile the lines (named `filename` in tracebacks), run them with `scope` and the constants, and
        return what they define as `function`. Raises SyntaxError or RecursionError on code nested deeper
        than Python's compiler takes."""
        code = compile("\n".join(self.lines), filename, "exec")
        scope = {**scope, **self.consts}
        exec(code, scope)
        return scope[function]
