"""Long-lived services that steps declare they need (``services = ["name"]``), such as a model server.

The engine starts a service before the first step that needs it runs, hands its ``ServiceInfo`` (URL, model name)
to those steps (in ``StepContext.services`` and as ``PHASEF_SERVICE_<NAME>_URL`` in their environment) and stops it
when no pending step needs it any more. A service kind subclasses ``Service`` and is registered by name in
``pipeline.registry.SERVICE_KINDS``.
"""

from __future__ import annotations

import abc
import contextlib
import socket
from pathlib import Path
from typing import Any

from pipeline.jobs.context import ServiceInfo


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports on ``host`` that were free a moment ago (all bound at once, then released): for
    a model server, or the ranks of a step on this machine."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


class ServiceError(Exception):
    """A service could not start or died; the message says why (and where its log is)."""


class Service(abc.ABC):
    def __init__(self, name: str, params: dict[str, Any], session_dir: Path, project_dir: Path, log_path: Path) -> None:
        self.name = name
        self.params = params
        self.session_dir = session_dir
        self.project_dir = project_dir
        self.log_path = log_path

    @abc.abstractmethod
    async def start(self, timeout: float) -> ServiceInfo:
        """Start and wait until the service answers; raise ``ServiceError`` on failure or timeout."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop the service and everything it started; safe to call twice."""

    @abc.abstractmethod
    def alive(self) -> bool:
        """Whether the service's process still runs."""

    def pid(self) -> int | None:
        """Process id of the service (journaled so that a resumed supervisor can clean up), if any."""
        return None
