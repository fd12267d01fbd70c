"""SSH plumbing shared by the remote executor and ``phasef hosts check``: connecting with strict host key checking,
running a command, the detached status-file wrapper, and the map between local and remote session paths.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import shlex
from pathlib import Path
from typing import Any

import asyncssh

from pipeline.config import HostConfig
from pipeline.jobs.executor import ExecutorError

WRAPPER = (
    'STATUS="$1"; ENVF="$2"; shift 2; set -a; . "$ENVF"; set +a; rm -f "$ENVF"; '
    '"$@"; rc=$?; echo "$rc" > "$STATUS.tmp" && mv "$STATUS.tmp" "$STATUS"; exit "$rc"'
)
DETACH = "import os,sys; os.setsid(); os.execvp(sys.argv[1], sys.argv[1:])"
HASHES = (
    "import hashlib,json,os,sys\n"
    "out={}\n"
    "for p in sys.argv[1:]:\n"
    "    try:\n"
    "        h=hashlib.sha256()\n"
    "        with open(p,'rb') as f:\n"
    "            for b in iter(lambda: f.read(1<<20), b''): h.update(b)\n"
    "        out[p]=h.hexdigest()\n"
    "    except OSError: pass\n"
    "print(json.dumps(out))\n"
)


def remote_word(path: str) -> str:
    """A path for a remote shell: ``~/x`` keeps its tilde outside the quotes."""
    if path == "~":
        return "~"
    if path.startswith("~/"):
        return "~/" + shlex.quote(path[2:])
    return shlex.quote(path)


def describe(host: HostConfig, name: str) -> str:
    return f"host {name} ({host.user + '@' if host.user else ''}{host.address}:{host.port})"


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return f"host key refused (not in known_hosts, or changed): {exc}"
    if isinstance(exc, asyncssh.PermissionDenied):
        return f"authentication refused: {exc}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "connection timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if type(exc).__name__ not in text else text


async def connect(host: HostConfig, name: str, retries: int | None = None) -> asyncssh.SSHClientConnection:
    """Connect with strict host key checking; retry a refused or timed-out connection with backoff, but never a
    refused host key or a refused login. Raises :class:`ExecutorError` naming the host and the reason."""
    tries = host.connect_retries if retries is None else retries
    known = str(Path(host.known_hosts).expanduser())
    options: dict[str, Any] = {
        "port": host.port,
        "known_hosts": known,
        "connect_timeout": host.connect_timeout,
        "keepalive_interval": 15,
        "keepalive_count_max": 3,
    }
    if host.user:
        options["username"] = host.user
    if host.identity:
        options["client_keys"] = [str(Path(host.identity).expanduser())]
        options["agent_path"] = None
    if not Path(known).is_file():
        raise ExecutorError(f"{describe(host, name)}: known_hosts file {known} not found (strict host key checking)")
    delay = 0.5
    for attempt in range(tries + 1):
        try:
            return await asyncssh.connect(host.address, **options)
        except (asyncssh.HostKeyNotVerifiable, asyncssh.PermissionDenied) as exc:
            raise ExecutorError(f"{describe(host, name)}: {reason_of(exc)}") from exc
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            if attempt >= tries:
                raise ExecutorError(
                    f"{describe(host, name)} unreachable after {tries + 1} tries: {reason_of(exc)}"
                ) from exc
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)
    raise AssertionError("unreachable")


async def run(conn: asyncssh.SSHClientConnection, command: str, timeout: float = 60) -> str:
    """Run ``command`` on the host; its stdout (an error naming stderr when it fails)."""
    result = await asyncio.wait_for(conn.run("/bin/sh -c " + shlex.quote(command), check=False), timeout)
    if result.exit_status != 0:
        err = str(result.stderr or "").strip()[-500:]
        raise ExecutorError(f"remote command failed with status {result.exit_status}: {err}")
    return str(result.stdout or "")


FREE_PORTS = r"""
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
"""


async def free_ports(host: HostConfig, name: str, count: int) -> list[int]:
    """``count`` distinct TCP ports free on the host now (all bound at once, then released), for MLX's ring: the
    host chooses, so a port another process holds there is never handed to a rank."""
    conn = await connect(host, name)
    try:
        out = await run(conn, f"{remote_word(host.python)} -c {shlex.quote(FREE_PORTS)} {count}", timeout=60)
    finally:
        conn.close()
    try:
        ports = [int(word) for word in out.split()]
    except ValueError:
        ports = []
    if len(ports) != count or len(set(ports)) != count:
        raise ExecutorError(f"{describe(host, name)}: could not get {count} free ports: {out.strip()[:200]!r}")
    return ports


class PathMap:
    """Local session and project paths <-> their places under the host's workdir."""

    def __init__(self, session_dir: Path, project_dir: Path, remote_root: str) -> None:
        self.session_dir = session_dir
        self.project_dir = project_dir
        self.root = remote_root
        if session_dir.is_relative_to(project_dir):
            self.remote_project = remote_root
            self.remote_session = posixpath.join(remote_root, session_dir.relative_to(project_dir).as_posix())
        else:
            self.remote_session = posixpath.join(remote_root, "session")
            self.remote_project = posixpath.join(remote_root, "project")

    def pairs(self) -> list[tuple[str, str]]:
        """(local, remote) prefixes, the longer local prefix first."""
        pairs = [(str(self.session_dir), self.remote_session), (str(self.project_dir), self.remote_project)]
        return sorted(pairs, key=lambda p: -len(p[0]))

    def to_remote(self, path: Path) -> str:
        for local, remote in self.pairs():
            if path == Path(local) or path.is_relative_to(local):
                rel = path.relative_to(local).as_posix()
                return remote if rel == "." else posixpath.join(remote, rel)
        return str(path)

    def rewrite(self, text: str) -> str:
        for local, remote in self.pairs():
            text = text.replace(local, remote)
        return text


SWEEP = (
    "import json,os,re,signal,subprocess,sys,time\n"
    "run_dir,key,current=sys.argv[1].rstrip('/'),sys.argv[2],int(sys.argv[3])\n"
    "pat=re.compile(re.escape(run_dir+'/'+key+'.')+r'(\\d+)(\\.[a-z]+\\d+)?\\.status')\n"
    "ps=subprocess.run(['ps','-axww','-o','pid=,pgid=,args='],capture_output=True,text=True).stdout\n"
    "found={}\n"
    "for line in ps.splitlines():\n"
    "    parts=line.split(None,2)\n"
    "    if len(parts)<3 or 'phasef-step' not in parts[2] or parts[0]!=parts[1]: continue\n"
    "    m=pat.search(parts[2])\n"
    "    if m and int(m.group(1))<current and not os.path.exists(m.group(0)): found[int(parts[1])]=m.group(0)\n"
    "def alive(g):\n"
    "    try: os.killpg(g,0); return True\n"
    "    except OSError: return False\n"
    "for g in found:\n"
    "    try: os.killpg(g,signal.SIGTERM)\n"
    "    except OSError: pass\n"
    "end=time.time()+float(sys.argv[4])\n"
    "while time.time()<end and any(alive(g) for g in found): time.sleep(0.1)\n"
    "for g in found:\n"
    "    if alive(g):\n"
    "        try: os.killpg(g,signal.SIGKILL)\n"
    "        except OSError: pass\n"
    "with open(sys.argv[5],'a') as log:\n"
    "    for g,s in found.items():\n"
    "        log.write(f'phasef: stopped process group {g} of an earlier attempt still running on {sys.argv[6]} '\n"
    "                  f'({os.path.basename(s)} not written)\\n')\n"
    "print(json.dumps({str(g):s for g,s in found.items()}))\n"
)
"""Run on the host before an attempt starts: the process groups of earlier attempts of the same step still
running there (their wrapper's command line names their status file, not yet written) get TERM, then KILL; each
one stopped is noted in the new attempt's log (the remote one: the local copy follows it by offset)."""


async def stop_earlier_attempts(
    conn: asyncssh.SSHClientConnection,
    host: HostConfig,
    name: str,
    files: tuple[str, str],
    key: str,
    attempt: int,
    grace_s: float = 5.0,
) -> dict[str, str]:
    """Stop what earlier attempts of step ``key`` left running on the host (a retry after the host was lost
    must not run beside the attempt it replaces); ``files`` are the remote run folder and the new attempt's remote
    log. Returns process group -> status file of each one stopped."""
    if attempt <= 1:
        return {}
    run_dir, log = files
    words = [remote_word(host.python), "-c", shlex.quote(SWEEP), shlex.quote(run_dir), shlex.quote(key)]
    words += [str(attempt), str(grace_s), shlex.quote(log), shlex.quote(name)]
    out = await run(conn, " ".join(words), timeout=grace_s + 60)
    found: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    return found
