# Over 400 lines: the job's poller and the executor's start share the host protocol; the SSH plumbing is in ssh.py.
"""The remote executor: a step runs on a ``[hosts.NAME]`` machine over SSH (asyncssh), with a local step's guarantees.

What travels where:

* the session's remote folder is ``<workdir>/<session id>`` on the host; local paths under the session (and the
  project) are mapped into it, in the command line, the environment and a step function's ``ctx.json``;
* declared inputs (and the attempt's run files) go up over SFTP, only those whose sha256 differs on the host;
* the environment (the step's allow-list only) goes up as a file of mode 600 that the wrapper reads and removes
  before the step starts: never on a command line;
* the step starts detached in its own process group (the host's python does ``setsid``) behind the same ``sh``
  wrapper as a local step, which writes the exit status to a status file in the remote ``run/`` folder;
* the log is copied down by offset into the attempt's local log, so the watcher, journal and TUI read it as usual;
* once the status file says 0, the declared outputs (and a step function's artifacts and ``result.json``) come down
  and are hashed by the engine like local outputs.

The host key must be in the host's ``known_hosts`` file: an unknown or changed key is refused, with the host named.
The handle journaled with ``step_started`` holds the host's settings and the remote paths, so a resumed supervisor
finds the step by its status file and its process (pid, and the status path on its command line) and never starts
it twice. A dropped connection is reconnected with backoff for ``reconnect_s``; past that the attempt ends without
an exit status, naming the host and the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import shlex
import signal as signals
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import orjson

from pipeline.config import HostConfig, PhasefConfig
from pipeline.hashing import file_sha256
from pipeline.jobs.executor import ExecutorError, JobHandle, JobSpec, read_log, read_result
from pipeline.jobs.ssh import (
    DETACH,
    HASHES,
    WRAPPER,
    PathMap,
    connect,
    describe,
    reason_of,
    remote_word,
    run,
    stop_earlier_attempts,
)
from pipeline.layout import AttemptFiles, SessionLayout

POLL_S = 0.2
PROBE_TIMEOUT_S = 15.0
"""A look at the host that takes longer is taken for a dead connection (it is dropped and made again)."""
LOG_CHUNK = 1 << 20
GONE_LOOKS = 2
"""Looks in a row that must find neither the process nor its status file before the attempt is taken as ended
without one (one look may race a busy host's process table)."""
CLOSE_WAIT_S = 10.0
"""How long a closed job waits for signals still on their way to the host, and then for its poller to end."""
GROUP_AFTER_END_S = 15.0
"""How long the group is still watched after the main process ended (a step saving after TERM)."""


@contextlib.contextmanager
def stall_guard(drop: Callable[[], None]) -> Iterator[Callable[..., None]]:
    """While inside, a connection that makes no progress for ``PROBE_TIMEOUT_S`` is dropped (``drop``): every wait on it
    then fails at once. asyncssh's SFTP calls have no timeout, and closing a file or an SFTP session waits for the
    host's answer, even when cancelled: without this a host that stops answering SFTP would hold the poller, and its
    cancellation, forever. Yields the function that marks progress (call it after each chunk)."""
    loop = asyncio.get_running_loop()
    timer: asyncio.TimerHandle | None = None

    def kick(*_: object) -> None:
        nonlocal timer
        if timer is not None:
            timer.cancel()
        timer = loop.call_later(PROBE_TIMEOUT_S, drop)

    kick()
    try:
        yield kick
    finally:
        assert timer is not None
        timer.cancel()


HOST_ENV = {"PATH", "HOME", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "SHELL", "USER", "LOGNAME"}
"""Variables that describe the supervisor's machine: on the host its own values stand."""


class RemoteJob:
    """A job on a host: a poller copies its log down and watches its status file and process group."""

    def __init__(
        self,
        handle: JobHandle,
        files: AttemptFiles,
        host: HostConfig,
        conn: asyncssh.SSHClientConnection | None,
        downloads: list[tuple[str, str]],
    ) -> None:
        self.handle = handle
        self.files = files
        self.host = host
        self.name = str(handle.model_extra.get("host", "?") if handle.model_extra else "?")
        self.conn = conn
        self.downloads = downloads
        self.remote_log = str(self._extra("log"))
        self.remote_status = str(self._extra("status"))
        self.remote_result = str(self._extra("result"))
        self.offset = files.log.stat().st_size if files.log.exists() else 0
        self.status: int | None = None
        self.main_alive = True
        self.group = True
        self.ended = asyncio.Event()
        self.lost: str | None = None
        self.stalled: str | None = None
        """Why the connection was last dropped by the stall guard (named instead of the error it caused)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._gone_looks = 0

    def _extra(self, name: str) -> Any:
        return (self.handle.model_extra or {}).get(name)

    def begin(self) -> None:
        self._poller = asyncio.get_running_loop().create_task(self._poll_loop())

    # -- the Job protocol ---------------------------------------------------------------------------------------
    def read_log(self, offset: int, limit: int) -> bytes:
        return read_log(self.files, offset, limit)

    async def wait(self, timeout: float) -> bool:
        if self.ended.is_set() or timeout <= 0:
            return self.ended.is_set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ended.wait(), timeout)
        return self.ended.is_set()

    def signal(self, sig: int) -> None:
        if not self.group:
            return
        task = asyncio.get_running_loop().create_task(self._signal(sig))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def group_alive(self) -> bool:
        return self.group

    def exit_status(self) -> int | None:
        return self.status

    def result(self) -> dict[str, Any]:
        return read_result(self.files)

    async def close(self) -> None:
        """Let signals on their way reach the host (for up to ``CLOSE_WAIT_S``), then drop the connection and end
        the poller. The connection goes first: an SFTP transfer or a command waiting on it then fails at once, so
        the poller's end cannot wait on a graceful close that never comes."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=CLOSE_WAIT_S)
        self._drop()
        left = [t for t in (self._poller, *self._tasks) if t is not None and not t.done()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=CLOSE_WAIT_S)

    # -- behind it ----------------------------------------------------------------------------------------------
    async def _signal(self, sig: int) -> None:
        name = signals.Signals(sig).name.removeprefix("SIG")
        with contextlib.suppress(OSError, asyncssh.Error, ExecutorError, TimeoutError):
            conn = await self._conn()
            await run(conn, f"kill -{name} -{self.handle.pid} 2>/dev/null; true", timeout=30)

    async def _conn(self) -> asyncssh.SSHClientConnection:
        if self.conn is None:
            self.conn = await connect(self.host, self.name, retries=0)
        return self.conn

    def _stall(self, conn: asyncssh.SSHClientConnection) -> None:
        self.stalled = f"no answer over SFTP for {PROBE_TIMEOUT_S:g} s"
        self._drop(conn)

    def _drop(self, conn: asyncssh.SSHClientConnection | None = None) -> None:
        """Close the connection (only if it is still ``conn``, when given: a guard's late timer must not drop a
        newer one)."""
        if conn is not None and conn is not self.conn:
            conn.close()
            return
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    async def probe(self) -> None:
        """One look at the host: new log bytes, the status file, whether the wrapper and its group live."""
        conn = await self._conn()
        status, pid = shlex.quote(self.remote_status), self.handle.pid
        out = await run(
            conn,
            # the process first, then its status file: a wrapper gone before the look at the file has written it
            f"ps -ww -o args= -p {pid} 2>/dev/null; echo '|'; kill -0 -{pid} 2>/dev/null && echo group; echo '|'; "
            f"cat {status} 2>/dev/null; true",
            timeout=PROBE_TIMEOUT_S,
        )
        args, group, head = [*out.split("|"), "", ""][:3]
        try:
            self.status = int(head.strip()) if head.strip() else None
        except ValueError:
            self.status = None
        self.group = group.strip() == "group"
        self.main_alive = self.remote_status in args
        await self._copy_log(conn)

    async def _copy_log(self, conn: asyncssh.SSHClientConnection) -> None:
        with stall_guard(lambda: self._stall(conn)) as progress:
            async with conn.start_sftp_client() as sftp:
                try:
                    async with sftp.open(self.remote_log, "rb") as fh:
                        await fh.seek(self.offset)
                        while True:
                            data = await fh.read(LOG_CHUNK)
                            progress()
                            if not data:
                                break
                            with open(self.files.log, "ab") as out:
                                out.write(data if isinstance(data, bytes) else data.encode())
                            self.offset += len(data)
                except asyncssh.SFTPNoSuchFile:
                    pass

    async def _collect(self) -> None:
        conn = await self._conn()
        with stall_guard(lambda: self._stall(conn)) as progress:
            await self._collect_over(conn, progress)

    async def _collect_over(self, conn: asyncssh.SSHClientConnection, progress: Callable[..., None]) -> None:
        async with conn.start_sftp_client() as sftp:
            for remote, local in self.downloads:
                if any(ch in remote for ch in "*?["):
                    # the pattern's fixed head is the same folder on both sides; what matched keeps its place under it
                    head = posixpath.dirname(remote[: min(remote.index(c) for c in "*?[" if c in remote)])
                    local_head = (
                        Path(local[: len(local) - len(remote) + len(head)])
                        if local.endswith(remote[len(head) :])
                        else Path(local).parent
                    )
                    for match in await sftp.glob(remote):
                        name = match.decode() if isinstance(match, bytes) else match
                        await self._get(sftp, name, local_head / posixpath.relpath(name, head), progress)
                    continue
                if await sftp.exists(remote):
                    await self._get(sftp, remote, Path(local), progress)
            if await sftp.exists(self.remote_result):
                await self._get(sftp, self.remote_result, self.files.result, progress)

    async def _get(self, sftp: asyncssh.SFTPClient, remote: str, local: Path, progress: Callable[..., None]) -> None:
        progress()
        if await sftp.isdir(remote):
            local.mkdir(parents=True, exist_ok=True)
            for entry in await sftp.readdir(remote):
                if entry.filename in (".", ".."):
                    continue
                await self._get(
                    sftp, posixpath.join(remote, str(entry.filename)), local / str(entry.filename), progress
                )
            return
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f".{local.name}.part")
        await sftp.get(remote, str(tmp), progress_handler=progress)
        tmp.replace(local)

    async def _poll_loop(self) -> None:
        lost_since: float | None = None
        delay = POLL_S
        ended_at: float | None = None
        while True:
            try:
                await self.probe()
                lost_since, delay, self.stalled = None, POLL_S, None
            except (OSError, asyncssh.Error, ExecutorError, TimeoutError) as exc:
                self._drop()
                now = time.monotonic()
                lost_since = lost_since or now
                if now - lost_since > self.host.reconnect_s:
                    why = self.stalled or reason_of(exc)
                    self.lost = f"{describe(self.host, self.name)} unreachable: {why}"
                    with open(self.files.log, "ab") as out:
                        out.write(f"\nphasef: {self.lost}\n".encode())
                    self.status, self.group = None, False
                    self.ended.set()
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            gone = self.status is None and not self.main_alive
            self._gone_looks = self._gone_looks + 1 if gone else 0
            if not self.ended.is_set() and (self.status is not None or self._gone_looks >= GONE_LOOKS):
                if self.status == 0:
                    try:
                        await self._collect()
                    except (OSError, asyncssh.Error, ExecutorError, TimeoutError) as exc:
                        self._drop()
                        why, self.stalled = self.stalled or reason_of(exc), None
                        with open(self.files.log, "ab") as out:
                            out.write(f"\nphasef: outputs not downloaded from {self.name}: {why}\n".encode())
                        continue
                self.ended.set()
                ended_at = time.monotonic()
            if self.ended.is_set() and (
                not self.group or (ended_at is not None and time.monotonic() - ended_at > GROUP_AFTER_END_S)
            ):
                self._drop()
                return
            await asyncio.sleep(POLL_S)


class RemoteExecutor:
    name = "remote"

    def __init__(self, cfg: PhasefConfig | None) -> None:
        self.cfg = cfg
        self._extra_uploads: list[Path] = []

    def _host(self, name: str) -> HostConfig:
        if self.cfg is None or name not in self.cfg.hosts:
            raise ExecutorError(f"unknown host {name!r}")
        return self.cfg.hosts[name]

    async def start(self, spec: JobSpec, host: str | None = None, extra_uploads: list[Path] | None = None) -> RemoteJob:
        """Start the step on its host (or on ``host``: a rank placed there), with ``extra_uploads`` sent too."""
        assert self.cfg is not None
        name = host or self.cfg.step(spec.key).host
        assert name is not None
        self._extra_uploads = extra_uploads or []
        return await self._start_on(spec, name, self._host(name))

    async def _start_on(self, spec: JobSpec, name: str, host: HostConfig) -> RemoteJob:
        layout = SessionLayout(Path(spec.env["PHASEF_SESSION_DIR"]), Path(spec.env["PHASEF_PROJECT_DIR"]))
        for stale in (spec.files.status, spec.files.result):
            stale.unlink(missing_ok=True)
        conn = await connect(host, name)
        try:
            return await self._start(spec, name, host, layout, conn)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            conn.close()
            raise ExecutorError(f"{describe(host, name)}: could not start the step: {reason_of(exc)}") from exc
        except ExecutorError as exc:
            conn.close()
            raise ExecutorError(f"{describe(host, name)}: could not start the step: {exc}") from exc

    async def _start(
        self, spec: JobSpec, name: str, host: HostConfig, layout: SessionLayout, conn: asyncssh.SSHClientConnection
    ) -> RemoteJob:
        assert self.cfg is not None
        sc = self.cfg.step(spec.key)
        workdir = await run(conn, f"mkdir -p {remote_word(host.workdir)} && cd {remote_word(host.workdir)} && pwd")
        root = posixpath.join(workdir.strip(), layout.session_dir.name)
        paths = PathMap(layout.session_dir, layout.project_dir, root)
        files = spec.files
        r_status, r_log = paths.to_remote(files.status), paths.to_remote(files.log)
        r_run, r_cwd = posixpath.dirname(r_status), paths.to_remote(spec.cwd)
        r_env = r_status.removesuffix(".status") + ".env"
        uploads: dict[str, Path] = {}
        for path in [*layout.expand(sc.inputs), *self._extra_uploads]:
            for f in [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()):
                uploads[paths.to_remote(f)] = f
        rewritten: dict[str, bytes] = {}
        run_file = files.command if sc.kind == "shell" else files.ctx
        if run_file.exists():
            rewritten[paths.to_remote(run_file)] = paths.rewrite(run_file.read_text()).encode()
        if sc.kind != "shell" and layout.resolved_config.exists():
            uploads[paths.to_remote(layout.resolved_config)] = layout.resolved_config
        dirs = {r_run, posixpath.dirname(r_log), r_cwd, *(posixpath.dirname(p) for p in [*uploads, *rewritten])}
        if sc.kind != "shell":
            dirs.add(paths.to_remote(layout.artifacts(spec.key)))
        for out in sc.outputs:
            dirs.add(posixpath.dirname(paths.to_remote(layout.resolve(out))))
        await run(conn, "mkdir -p " + " ".join(shlex.quote(d) for d in sorted(dirs)))
        await stop_earlier_attempts(conn, host, name, (r_run, r_log), spec.key, spec.attempt)
        await run(conn, f"rm -f {shlex.quote(r_status)} {shlex.quote(paths.to_remote(files.result))}")
        changed = await self._changed(conn, host, uploads)
        env = {
            k: paths.rewrite(v) if k.startswith("PHASEF_") or k == "MLX_HOSTFILE" else v
            for k, v in spec.env.items()
            if k not in HOST_ENV
        }
        env_text = "".join(f"{k}={shlex.quote(v)}\nexport {k}\n" for k, v in env.items() if k.isidentifier())
        async with conn.start_sftp_client() as sftp:
            for remote in changed:
                await sftp.put(str(uploads[remote]), remote + ".part")
                await sftp.posix_rename(remote + ".part", remote)
            for remote, data in rewritten.items():
                async with sftp.open(remote, "wb") as fh:
                    await fh.write(data)
            with contextlib.suppress(asyncssh.SFTPNoSuchFile):
                await sftp.remove(r_env)
            async with sftp.open(r_env, "wb", asyncssh.SFTPAttrs(permissions=0o600)) as fh:
                await sftp.chmod(r_env, 0o600)
                await fh.write(env_text.encode())
        argv = [paths.rewrite(a) for a in spec.argv]
        if sc.kind != "shell" and argv and Path(argv[0]).name.startswith("python"):
            argv[0] = host.python
        words = [remote_word(host.python), "-c", shlex.quote(DETACH), "/bin/sh", "-c", shlex.quote(WRAPPER)]
        words += ["phasef-step", shlex.quote(r_status), shlex.quote(r_env)]
        words += [remote_word(a) if a == host.python else shlex.quote(a) for a in argv]
        command = (
            f"cd {shlex.quote(r_cwd)} || exit 1\n{' '.join(words)} < /dev/null >> {shlex.quote(r_log)} 2>&1 &\necho $!"
        )
        pid = int((await run(conn, command)).strip().splitlines()[-1])
        downloads = [(paths.to_remote(layout.resolve(out)), str(layout.resolve(out))) for out in sc.outputs]
        if sc.kind != "shell":
            downloads.append((paths.to_remote(layout.artifacts(spec.key)), str(layout.artifacts(spec.key))))
        handle = JobHandle.model_validate(
            {
                "executor": self.name,
                "pid": pid,
                "host": name,
                "host_config": host.model_dump(),
                "status": r_status,
                "log": r_log,
                "result": paths.to_remote(files.result),
                "downloads": downloads,
                "uploaded": len(changed),
            }
        )
        job = RemoteJob(handle, files, host, conn, downloads)
        job.begin()
        return job

    async def _changed(
        self, conn: asyncssh.SSHClientConnection, host: HostConfig, uploads: dict[str, Path]
    ) -> list[str]:
        """The remote paths whose content differs from the local file (by sha256)."""
        if not uploads:
            return []
        names = " ".join(shlex.quote(p) for p in uploads)
        there = orjson.loads(await run(conn, f"{remote_word(host.python)} -c {shlex.quote(HASHES)} {names}"))
        return [r for r, local in uploads.items() if there.get(r) != file_sha256(local)]

    async def reattach(self, handle: JobHandle, files: AttemptFiles) -> tuple[RemoteJob, bool] | None:
        extra = handle.model_extra or {}
        host = HostConfig.model_validate(extra.get("host_config") or self._host(str(extra.get("host"))).model_dump())
        name = str(extra.get("host", "?"))
        downloads = [(str(r), str(loc)) for r, loc in extra.get("downloads", [])]
        try:
            conn: asyncssh.SSHClientConnection | None = await connect(host, name)
        except ExecutorError:
            conn = None  # the poller keeps trying for reconnect_s
        job = RemoteJob(handle, files, host, conn, downloads)
        if conn is None:
            job.begin()
            return job, True
        try:
            await job.probe()
        except (OSError, asyncssh.Error, ExecutorError, TimeoutError):
            job._drop()
            job.begin()
            return job, True
        if not job.main_alive and job.status is None:
            await asyncio.sleep(POLL_S)  # a second look before the attempt is taken as interrupted
            with contextlib.suppress(OSError, asyncssh.Error, ExecutorError, TimeoutError):
                await job.probe()
        if not job.main_alive and job.status is None:
            job._drop()
            return None
        job.begin()
        return job, job.main_alive
