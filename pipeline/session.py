"""Sessions on disk (``sessions/<id>/``) and the supervisor loop that runs one: engine + control socket.

A session folder holds ``journal.jsonl`` (the truth), ``config.resolved.toml``, ``artifacts/``, ``logs/``, ``run/``
(per-attempt status and context files), ``report/`` and, while a supervisor runs, ``control.sock``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pipeline.config import PhasefConfig
from pipeline.control import ControlServer, socket_path
from pipeline.engine import Engine, RunResult
from pipeline.journal import Journal

DEFAULT_CONFIG = "config.toml"


def new_session_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def sessions_root(cfg: PhasefConfig, project_dir: Path) -> Path:
    root = Path(cfg.project.sessions_dir).expanduser()
    return root if root.is_absolute() else project_dir / root


async def supervise(
    cfg: PhasefConfig,
    *,
    session_dir: Path,
    project_dir: Path,
    config_path: Path | None,
    until: str | None = None,
    on_engine: Callable[[Engine], None] | None = None,
) -> RunResult:
    """Run (or resume) a session to its end, serving the control socket meanwhile.

    SIGINT/SIGTERM cancel the run (the steps' process groups are stopped and the journal says so).
    """
    journal = Journal(session_dir)
    try:
        engine = Engine(
            cfg,
            session_dir=session_dir,
            project_dir=project_dir,
            config_path=config_path,
            until=until,
            journal=journal,
        )
        if on_engine is not None:
            on_engine(engine)
        server = ControlServer(engine)
        await server.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _on_signal, engine, sig)
        try:
            return await engine.run()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await server.close()
    finally:
        journal.close()


def _on_signal(engine: Engine, sig: int) -> None:
    if not engine._cancelled:
        engine.cancel(operator=f"signal {signal.Signals(sig).name}")


def wait_for_socket(session_dir: Path, timeout: float, pid: int | None = None) -> bool:
    """Block until the session's control socket exists (a detached supervisor is up) or ``timeout``."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if socket_path(session_dir).exists():
            return True
        if pid is not None:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = 0
            if done:
                return False
        time.sleep(0.05)
    return False
