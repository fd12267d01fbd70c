"""Asking one auditor one prompt: a headless command line or an OpenAI-compatible chat endpoint.

A backend never raises for the auditor's own failures: a command that is not installed, a key that is not set, a
service that is not running, a timeout or an error answer all come back as an ``Answer`` with a status and a
reason, because each of them must end the gate as BLOCKED or NO-GO with that reason shown, not crash the step.
Whatever the auditor printed is written to disk before it is judged.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.audit.params import PROMPT_FILE_PLACEHOLDER, ApiAuditor, CliAuditor
from pipeline.fsio import atomic_write_text
from pipeline.jobs.context import ServiceInfo

AnswerStatus = Literal["ok", "timeout", "error"]
_STDERR_TAIL = 400


@dataclass(frozen=True)
class Answer:
    status: AnswerStatus
    text: str
    """What the auditor printed (stdout, or the completion text); empty when there was no answer."""
    error: str | None
    latency_s: float | None


class AuditorBackend(ABC):
    """One configured auditor."""

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def blocked_reason(self) -> str | None:
        """Why this auditor cannot be asked at all here (missing command, unset key, no service), or None."""

    @abstractmethod
    async def ask(self, system: str, prompt: str, raw_path: Path, timeout: float) -> Answer:
        """Ask once (with the backend's own retries); write what came back to ``raw_path``.

        ``timeout`` is the step's limit per auditor call; a CLI auditor's own ``timeout`` replaces it per attempt.
        """


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class CliBackend(AuditorBackend):
    """``gemini -y``, ``claude -p`` and the like: the prompt on stdin, or in a file named by ``{prompt_file}``."""

    def __init__(self, name: str, config: CliAuditor, workdir: Path) -> None:
        super().__init__(name)
        self.config = config
        self.workdir = workdir

    def blocked_reason(self) -> str | None:
        program = self.config.command[0]
        if shutil.which(program) is None:
            return f"auditor {self.name!r}: command {program!r} not found on PATH"
        if self.config.key_env and not os.environ.get(self.config.key_env):
            return f"auditor {self.name!r}: environment variable {self.config.key_env} is not set"
        return None

    def _secrets(self) -> list[str]:
        value = os.environ.get(self.config.key_env) if self.config.key_env else None
        return [value] if value else []

    async def ask(self, system: str, prompt: str, raw_path: Path, timeout: float) -> Answer:
        full_prompt = f"{system.rstrip()}\n\n{prompt}"
        prompt_file = raw_path.resolve().with_name(raw_path.stem + ".prompt.md")
        atomic_write_text(prompt_file, full_prompt)
        argv = [arg.replace(PROMPT_FILE_PLACEHOLDER, str(prompt_file)) for arg in self.config.command]
        stdin = None if not self.config.prompt_on_stdin else full_prompt.encode("utf-8")
        limit = self.config.timeout or timeout
        answer = Answer("error", "", "not run", None)
        for attempt in range(1, self.config.retries + 2):
            answer = await self._run_once(argv, stdin, raw_path, limit)
            if answer.status == "ok":
                break
            if attempt <= self.config.retries:
                _keep_attempt(raw_path, attempt)
        return answer

    async def _run_once(self, argv: list[str], stdin: bytes | None, raw_path: Path, timeout: float) -> Answer:
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.workdir,
                start_new_session=True,
            )
        except OSError as exc:
            _write_raw(raw_path, "", "")
            return Answer("error", "", f"cannot start {argv[0]!r}: {exc.strerror or exc}", None)
        out, err = bytearray(), bytearray()
        status: AnswerStatus = "ok"
        error: str | None = None
        try:
            await asyncio.wait_for(
                asyncio.gather(_feed(proc, stdin), _pump(proc.stdout, out), _pump(proc.stderr, err), proc.wait()),
                timeout,
            )
        except TimeoutError:
            status, error = "timeout", f"no answer within {timeout:g} s (killed)"
        finally:
            await _kill_group(proc)
        latency = time.monotonic() - started
        secrets = self._secrets()
        text = _redact(out.decode("utf-8", errors="replace"), secrets)
        errtext = _redact(err.decode("utf-8", errors="replace"), secrets)
        _write_raw(raw_path, text, errtext)
        if status == "ok" and proc.returncode != 0:
            tail = errtext.strip()[-_STDERR_TAIL:] or "(no stderr)"
            status, error = "error", f"exit code {proc.returncode}: {tail}"
        return Answer(status, text, error, latency)


async def _feed(proc: asyncio.subprocess.Process, data: bytes | None) -> None:
    """Write the prompt and close stdin; an auditor that exits without reading it is not an error here."""
    if data is None or proc.stdin is None:
        return
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(data)
        await proc.stdin.drain()
    proc.stdin.close()


async def _pump(stream: asyncio.StreamReader | None, into: bytearray) -> None:
    """Collect a pipe as it comes, so that a killed auditor's partial output is still kept."""
    if stream is None:
        return
    while chunk := await stream.read(1 << 16):
        into.extend(chunk)


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """Kill the auditor and anything it left behind (it runs in its own session, so its group is its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await proc.wait()


def _write_raw(raw_path: Path, stdout: str, stderr: str) -> None:
    atomic_write_text(raw_path, stdout)
    if stderr:
        atomic_write_text(raw_path.with_name(raw_path.stem + ".stderr.txt"), stderr)


def _keep_attempt(raw_path: Path, attempt: int) -> None:
    """Keep a failed attempt's output next to the final one instead of overwriting it."""
    stderr = raw_path.with_name(raw_path.stem + ".stderr.txt")
    if raw_path.exists():
        raw_path.replace(raw_path.with_name(f"{raw_path.stem}.attempt{attempt}.txt"))
    if stderr.exists():
        stderr.replace(raw_path.with_name(f"{raw_path.stem}.attempt{attempt}.stderr.txt"))


class ApiBackend(AuditorBackend):
    """An OpenAI-compatible chat endpoint, given directly or by a running service of the session."""

    def __init__(self, name: str, config: ApiAuditor, services: dict[str, ServiceInfo]) -> None:
        super().__init__(name)
        self.config = config
        self.services = services

    def endpoint(self) -> tuple[str | None, str | None]:
        """(base_url, model), from the config or from the named service."""
        if self.config.service is None:
            return self.config.base_url, self.config.model
        info = self.services.get(self.config.service)
        if info is None:
            return None, None
        return info.url, self.config.model or info.model

    def blocked_reason(self) -> str | None:
        if self.config.service is not None:
            info = self.services.get(self.config.service)
            if info is None:
                return (
                    f"auditor {self.name!r}: service {self.config.service!r} is not running for this step "
                    f"(add it to the step's 'services')"
                )
            if not info.url:
                return f"auditor {self.name!r}: service {self.config.service!r} has no URL"
        if not self.endpoint()[1]:
            return f"auditor {self.name!r}: no model name (set 'model' or use a service that reports one)"
        if self.config.api_key_env and not os.environ.get(self.config.api_key_env):
            return f"auditor {self.name!r}: environment variable {self.config.api_key_env} is not set"
        return None

    async def ask(self, system: str, prompt: str, raw_path: Path, timeout: float) -> Answer:
        from pipeline.api_client import ChatClient, ChatError

        base_url, model = self.endpoint()
        assert base_url and model, "ask() after blocked_reason() said the endpoint is usable"
        atomic_write_text(raw_path.with_name(raw_path.stem + ".prompt.md"), f"{system}\n\n{prompt}")
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        started = time.monotonic()
        try:
            async with ChatClient(
                base_url,
                model,
                api_key_env=self.config.api_key_env,
                timeout=self.config.timeout,
                retries=self.config.retries,
            ) as client:
                result = await asyncio.wait_for(
                    client.complete(messages, max_tokens=self.config.max_tokens, temperature=self.config.temperature),
                    timeout,
                )
        except TimeoutError:
            atomic_write_text(raw_path, "")
            return Answer("timeout", "", f"no answer within {timeout:g} s", time.monotonic() - started)
        except ChatError as exc:
            atomic_write_text(raw_path, "")
            status: AnswerStatus = "timeout" if "timeout" in exc.error_class.lower() else "error"
            return Answer(status, "", f"{exc.error_class} after {exc.attempts} attempt(s): {exc}", None)
        atomic_write_text(raw_path, result.text)
        return Answer("ok", result.text, None, result.latency_s)
