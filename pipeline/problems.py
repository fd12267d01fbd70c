"""One type for "this input is wrong here": a file, a line, the field at fault and why (``file:line: field: why``).

Readers of outside input (the journal, traces, chat data, the trace index) report bad lines with it and carry on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    reason: str
    field: str = ""
    """The field at fault, when the reader names it apart from the reason."""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"
