"""The SSH server's log: one JSON object per line in a file (for audits and tests), one readable line on stderr.

It records who came from where with which key, what they were refused, and how long their sessions lasted. It never
records what they typed or saw, and there is no password to leak since password logins are off.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO


class ConnectionLog:
    def __init__(self, path: Path | None, stream: TextIO | None = None) -> None:
        self.path = path
        self._stream = stream if stream is not None else sys.stderr
        self._file: TextIO | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # kept open for the life of the server

    def event(self, kind: str, **fields: Any) -> None:
        now = datetime.now(UTC)
        record = {"ts": now.isoformat(timespec="milliseconds"), "event": kind}
        record.update({k: v for k, v in fields.items() if v is not None})
        if self._file is not None:
            self._file.write(json.dumps(record, default=str) + "\n")
            self._file.flush()
        shown = " ".join(f"{k}={_show(v)}" for k, v in record.items() if k not in ("ts", "event"))
        print(f"{now:%H:%M:%S} ssh {kind} {shown}".rstrip(), file=self._stream, flush=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(text) if (" " in text or not text) else text
