"""The recorder: every state change is appended to the journal, applied to the state, then broadcast.

In that order, so nothing a client sees can be lost in a crash. Subscribers (control-socket clients) get a bounded
queue each; a slow one loses its oldest message and is told it lagged. Listeners (the headless printer) are called
in line. This module calls nothing above the journal and the state.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from pipeline.journal import Event, Journal
from pipeline.state import SessionState

SUBSCRIBER_QUEUE = 2000

Message = dict[str, Any]


class Recorder:
    def __init__(self, journal: Journal, state: SessionState) -> None:
        self.journal = journal
        self.state = state
        self.subscribers: set[asyncio.Queue[Message]] = set()
        self.listeners: list[Callable[[Message], None]] = []

    def record(
        self,
        type: str,
        key: str | None = None,
        *,
        attempt: int | None = None,
        payload: dict[str, Any] | None = None,
        sync: bool = True,
    ) -> Event:
        stage, step = key.split(".", 1) if key else (None, None)
        ev = self.journal.append(type, stage=stage, step=step, attempt=attempt, payload=payload, sync=sync)
        self.state.apply(ev)
        self.broadcast({"event": ev.model_dump()})
        return ev

    def sync(self) -> None:
        self.journal.sync()

    def broadcast(self, message: Message) -> None:
        for q in list(self.subscribers):
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
                q.put_nowait({"lagged": True})
            q.put_nowait(message)
        for fn in self.listeners:
            fn(message)

    def subscribe(self) -> asyncio.Queue[Message]:
        q: asyncio.Queue[Message] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Message]) -> None:
        self.subscribers.discard(q)
