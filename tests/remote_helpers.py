"""A real SSH server on loopback standing in for a remote host: asyncssh in a thread of the test process, commands
run by bash in child processes, SFTP on, a throwaway client key and host key, its own workdir."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import psutil


async def _bash(process: asyncssh.SSHServerProcess[bytes]) -> None:
    """Run the session's command with bash in a child process, its pipes copied to and from the channel."""
    command = process.command or "exec bash -l"
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    child_in = proc.stdin

    async def copy_out(src: asyncio.StreamReader, write: Any) -> None:
        while data := await src.read(1 << 16):
            write(data)

    async def copy_in() -> None:
        with contextlib.suppress(Exception):
            while data := await process.stdin.read(1 << 16):
                child_in.write(data)
                await child_in.drain()
        with contextlib.suppress(Exception):
            child_in.close()

    feeding = asyncio.create_task(copy_in())
    await asyncio.gather(copy_out(proc.stdout, process.stdout.write), copy_out(proc.stderr, process.stderr.write))
    rc = await proc.wait()
    feeding.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await feeding
    process.exit(rc if rc >= 0 else 255)


class _StallingSFTP(asyncssh.SFTPServer):
    """An SFTP server that never answers a read (a host whose disk or sftp-server hangs)."""

    async def read(self, file_obj: object, offset: int, size: int) -> bytes:  # type: ignore[override]
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@dataclass
class LoopbackHost:
    """The server, its keys and the files a ``[hosts.NAME]`` table points at."""

    folder: Path
    port: int = 0
    host_key: asyncssh.SSHKey = field(init=False)
    client_key_path: Path = field(init=False)
    known_hosts: Path = field(init=False)
    workdir: Path = field(init=False)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: Any = None
    connections: int = 0
    sftp_stalls: bool = False
    """SFTP reads are never answered."""
    _live: set[Any] = field(default_factory=set)
    """SSH connections accepted so far (over restarts)."""

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        client = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key_path = self.folder / "id_client"
        client.write_private_key(str(self.client_key_path))
        self.client_key_path.chmod(0o600)
        self.authorized = asyncssh.import_authorized_keys(client.export_public_key().decode())
        self.known_hosts = self.folder / "known_hosts"
        self.workdir = self.folder / "workdir"

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def start(self) -> LoopbackHost:
        ready = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._server = loop.run_until_complete(self._listen())
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=main, daemon=True)
        self._thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]
        self.port = self._server.sockets[0].getsockname()[1]
        if not self.known_hosts.exists():
            self.trust(self.host_key)
        return self

    async def _listen(self) -> Any:
        host = self

        class Counting(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                host.connections += 1
                host._live.add(conn)

            def connection_lost(self, exc: Exception | None) -> None:
                host._live = {c for c in host._live if not c.is_closed()}

        return await asyncssh.create_server(
            Counting,
            "127.0.0.1",
            self.port,
            server_host_keys=[self.host_key],
            authorized_client_keys=self.authorized,
            process_factory=_bash,
            encoding=None,
            sftp_factory=_StallingSFTP if self.sftp_stalls else True,
            allow_scp=False,
        )

    def stop(self) -> None:
        """Close the listener and every connection (a host going away), then end the server's thread."""
        if self._loop is not None and self._thread is not None:
            server = self._server

            async def close() -> None:
                for conn in list(self._live):
                    conn.abort()
                self._live.clear()
                server.close()
                await server.wait_closed()
                await asyncio.sleep(0.1)

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self._loop = self._thread = None

    def trust(self, key: asyncssh.SSHKey) -> None:
        """Write ``known_hosts`` with ``key`` as this host's key."""
        line = f"[127.0.0.1]:{self.port} {key.export_public_key().decode().strip()}\n"
        self.known_hosts.write_text(line)

    def hosts_toml(self, name: str = "box", **extra: Any) -> str:
        lines = [
            f"[hosts.{name}]",
            'address = "127.0.0.1"',
            f"port = {self.port}",
            f'identity = "{self.client_key_path}"',
            f'known_hosts = "{self.known_hosts}"',
            f'workdir = "{self.workdir}"',
        ]
        lines += [f"{k} = {v!r}".replace("'", '"') for k, v in extra.items()]
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def loopback_host(folder: Path, sftp_stalls: bool = False) -> Iterator[LoopbackHost]:
    host = LoopbackHost(folder, sftp_stalls=sftp_stalls).start()
    try:
        yield host
    finally:
        host.stop()


def processes_with(marker: str) -> list[psutil.Process]:
    """Live processes whose command line carries ``marker`` (what a remote step left behind, on loopback)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(marker in part for part in proc.info["cmdline"] or []):
                found.append(proc)
    return found
