"""Service kind ``mlx_serve``: an ``mlx_lm.server`` on loopback, serving a local model (and adapter) as an
OpenAI-compatible API.

The server runs in its own process group with its output in the service's log, on a free loopback port; ``start``
returns once ``GET /v1/models`` answers, and ``stop`` sends SIGTERM to the group, then SIGKILL after a grace
period, so nothing the server started outlives it. On Linux the server also gets SIGTERM from the kernel when the
supervisor that started it dies (even by SIGKILL), so a killed supervisor does not leave a server holding a port
and the model's memory; a resumed supervisor starts a new one when a step needs it.

Requests name the model ``default_model``: the server maps that
name to the model and adapter given on its command line (any other name would make it load that path instead, and
without the adapter).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.jobs.context import ServiceInfo, resolve_path
from pipeline.services import Service, ServiceError, free_ports

HOST = "127.0.0.1"
SERVED_MODEL_ID = "default_model"
STOP_GRACE_S = 5.0
POLL_INTERVAL_S = 0.2
LOG_TAIL_CHARS = 2000


class MlxServeParams(BaseModel):
    """The ``params`` table of an ``mlx_serve`` service."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="model folder ({project}/..., {session}/... or relative to the session)")
    adapter: str | None = Field(default=None, description="LoRA adapter folder, same path rules")
    extra_args: list[str] = Field(default_factory=list, description="more mlx_lm.server arguments")
    python: str | None = Field(default=None, description="interpreter to run the server (default: this one)")


def log_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - chars))
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


class MlxServe(Service):
    def __init__(self, name: str, params: dict[str, Any], session_dir: Path, project_dir: Path, log_path: Path) -> None:
        super().__init__(name, params, session_dir, project_dir, log_path)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.port: int | None = None

    @property
    def settings(self) -> MlxServeParams:
        """The validated params (a ``ServiceError`` naming each bad field otherwise)."""
        try:
            return MlxServeParams.model_validate(self.params)
        except ValidationError as exc:
            problems = "; ".join(
                f"params.{'.'.join(str(p) for p in e['loc'])}: "
                + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
                for e in exc.errors()
            )
            raise ServiceError(f"service {self.name}: {problems}") from None

    def model_path(self) -> Path:
        return resolve_path(self.settings.model, self.session_dir, self.project_dir)

    def adapter_path(self) -> Path | None:
        if self.settings.adapter is None:
            return None
        return resolve_path(self.settings.adapter, self.session_dir, self.project_dir)

    def command(self, port: int) -> list[str]:
        cmd = [self.settings.python or sys.executable, "-m", "mlx_lm.server", "--model", str(self.model_path())]
        adapter = self.adapter_path()
        if adapter is not None:
            cmd += ["--adapter-path", str(adapter)]
        return [*cmd, "--host", HOST, "--port", str(port), *self.settings.extra_args]

    async def start(self, timeout: float) -> ServiceInfo:
        model = self.model_path()
        if not (model / "config.json").is_file():
            raise ServiceError(f"service {self.name}: no model at {model} (config.json missing)")
        adapter = self.adapter_path()
        if adapter is not None and not (adapter / "adapter_config.json").is_file():
            raise ServiceError(f"service {self.name}: no adapter at {adapter} (adapter_config.json missing)")
        deadline = time.monotonic() + timeout
        (self.port,) = free_ports(1, HOST)
        self._spawn(self.port)
        url = f"http://{HOST}:{self.port}/v1"
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while True:
                if self._proc is not None and self._proc.poll() is not None:
                    code = self._proc.returncode
                    await self.stop()
                    raise ServiceError(
                        f"service {self.name}: mlx_lm.server exited with status {code} before answering; "
                        f"log {self.log_path}:\n{log_tail(self.log_path)}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"{url}/models")
                    if response.status_code == 200:
                        break
                if time.monotonic() >= deadline:
                    await self.stop()
                    raise ServiceError(
                        f"service {self.name}: mlx_lm.server did not answer within {timeout:g}s; "
                        f"log {self.log_path}:\n{log_tail(self.log_path)}"
                    )
                await asyncio.sleep(POLL_INTERVAL_S)
        return ServiceInfo(
            name=self.name,
            kind="mlx_serve",
            url=url,
            model=SERVED_MODEL_ID,
            **_extra(port=self.port, pid=self.pid(), model_path=str(model), adapter_path=_str(adapter)),
        )

    def _spawn(self, port: int) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._log.write(f"$ {' '.join(self.command(port))}\n".encode())
        self._log.flush()
        env = dict(os.environ)
        # The server looks up its model locally; never let it reach out to a hub.
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        if not _hf_cache(env).is_dir():
            # ``GET /v1/models`` scans the hub cache and fails without one: give it an empty one.
            empty = self.log_path.parent / f".{self.name}-hf-cache"
            empty.mkdir(parents=True, exist_ok=True)
            env["HF_HUB_CACHE"] = str(empty)
        self._proc = subprocess.Popen(
            self.command(port),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
                if not await _wait(proc, STOP_GRACE_S):
                    _signal_group(proc.pid, signal.SIGKILL)
                    await _wait(proc, STOP_GRACE_S)
            else:
                _signal_group(proc.pid, signal.SIGKILL)  # anything the server left behind in its group
        if self._log is not None:
            self._log.close()
            self._log = None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to send SIGTERM to the child when its parent dies (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _hf_cache(env: dict[str, str]) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    home = Path(env["HF_HOME"]) if env.get("HF_HOME") else Path.home() / ".cache" / "huggingface"
    return home / "hub"


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


async def _wait(proc: subprocess.Popen[bytes], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while proc.poll() is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _extra(**fields: Any) -> dict[str, Any]:
    return fields
