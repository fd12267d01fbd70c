"""The SSH listener: public-key logins against a re-read authorized_keys, one TUI per session, clean shutdown.

Everything but an interactive session is off: password, keyboard-interactive, host-based and GSS logins, agent and
X11 forwarding, TCP and Unix-socket forwarding, tunnels. Each refusal is logged with the peer and the key.

Before login, a connection is admitted only within ``per_source_startups`` per address and ``max_startups``
(start:rate:full, random early drop; see admission.py), must finish the version and key exchange within
``preauth_timeout`` and log in within ``login_timeout``. After login, ``max_sessions`` TUIs at most, and an
authenticated connection that holds no session for ``login_timeout`` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any

import asyncssh

from phasef_tui.ssh.admission import Admission
from phasef_tui.ssh.authorized_keys import AuthorizedKeys, Operator, read_authorized_keys
from phasef_tui.ssh.host_key import HostKey
from phasef_tui.ssh.hub import SessionHub, allowed_server_environment
from phasef_tui.ssh.prefork import ForkServer, ForkServerError
from phasef_tui.ssh.session import ConnectionInfo, OperatorSession

SHUTDOWN_MESSAGE = "phasef: the SSH server is shutting down; the run goes on (connect again to reattach)"
CLIENT_LEAVE_S = 2.0
_conn_ids = itertools.count(1)


class OperatorConnection(asyncssh.SSHServer):
    """One client connection: its login, then the sessions it opens."""

    def __init__(self, service: SSHService) -> None:
        self.service = service
        self.hub = service.hub
        self.conn_id = next(_conn_ids)
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = "?"
        self.peer_addr = ""
        self.username = ""
        self.keys: AuthorizedKeys | None = None
        self.candidate: Operator | None = None
        self.info: ConnectionInfo | None = None
        self.sessions: set[OperatorSession] = set()
        self.opened = time.monotonic()
        self._sessionless: asyncio.TimerHandle | None = None
        self._preauth: asyncio.TimerHandle | None = None
        self._dropped = False
        self._counted = False  # admitted: counted among the connections logging in

    # -- connection lifecycle -----------------------------------------------------------------------------------

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.peer_addr = str(peer[0])
        self.peer = f"{peer[0]}:{peer[1]}"
        admission = self.service.admission
        refusal = admission.admit(self.peer_addr) if not self.hub.closing else None
        if self.hub.closing or refusal is not None:
            reason = refusal.reason if refusal is not None else "the server is shutting down"
            limit = refusal.limit if refusal is not None else None
            self.log("refused", what="connection", reason=reason, limit=limit, logging_in=admission.total)
            self._dropped = True
            conn.abort()
            return
        self._counted = True
        self.service.connections.add(self)
        self.log("connect")
        self._refuse_forwarding(conn)
        timeout = self.hub.settings.preauth_timeout
        if timeout > 0:
            self._preauth = asyncio.get_running_loop().call_later(timeout, self._preauth_expired)

    def _refuse_forwarding(self, conn: asyncssh.SSHServerConnection) -> None:
        """Agent and X11 forwarding are off (``create_server`` says so); these make each refusal a log line.

        asyncssh asks its connection for an agent or X11 listener when a session requests forwarding and refuses
        there without telling the server object, so the connection's own methods are replaced by ones that log
        and refuse.
        """

        async def no_agent() -> bool:
            self.log("refused", what="agent forwarding", reason="forwarding is off")
            return False

        async def no_x11(chan: object, auth_proto: bytes, auth_data: bytes, screen: int) -> None:
            self.log("refused", what="x11 forwarding", reason="forwarding is off")
            return None

        conn.create_agent_listener = no_agent  # type: ignore[method-assign]
        conn.attach_x11_listener = no_x11  # type: ignore[method-assign]

    def _preauth_expired(self) -> None:
        self._preauth = None
        if self.conn is not None and self.info is None:
            timeout = self.hub.settings.preauth_timeout
            self.log("closing", reason=f"no version and key exchange within {timeout:g} s")
            self.conn.abort()

    def _uncount(self) -> None:
        if self._counted:
            self._counted = False
            self.service.admission.release(self.peer_addr)
        if self._preauth is not None:
            self._preauth.cancel()
            self._preauth = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._uncount()
        self.service.connections.discard(self)
        if self._sessionless is not None:
            self._sessionless.cancel()
        if self._dropped:
            return
        reason = str(exc) if exc is not None else "closed"
        self.log("disconnect", reason=reason, duration_s=round(time.monotonic() - self.opened, 3))

    # -- authentication ---------------------------------------------------------------------------------------

    def begin_auth(self, username: str) -> bool:
        # the client sent its version and finished the key exchange; login_timeout bounds the rest
        if self._preauth is not None:
            self._preauth.cancel()
            self._preauth = None
        self.username = username
        self.keys = self.service.read_keys()  # at every login: a key removed from the file is refused at once
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        operator, why = (None, "no authorized keys") if self.keys is None else self.keys.find(key, self.peer_addr)
        if operator is None:
            self.log("auth_refused", key=key.get_fingerprint("sha256"), reason=why)
            return False
        # asyncssh calls this for every offered key and verifies the signature only afterwards; the login that
        # completes is the last key validated here, so the connection keeps that key's operator
        self.candidate = operator
        return True

    def validate_ca_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        self.log("auth_refused", key=key.get_fingerprint("sha256"), reason="certificates are not accepted")
        return False

    def auth_completed(self) -> None:
        self._uncount()
        assert self.candidate is not None, "public key is the only method"
        self.info = ConnectionInfo(self.conn_id, self.peer, self.username, self.candidate)
        self.log("login", source=self.candidate.source)
        self._arm_sessionless_timer()

    # -- what the client may open --------------------------------------------------------------------------------

    def session_requested(self) -> OperatorSession | bool:
        if self.info is None:
            return False
        session = OperatorSession(self.hub, self.info, on_end=self._session_ended)
        self.sessions.add(session)
        if self._sessionless is not None:
            self._sessionless.cancel()
            self._sessionless = None
        return session

    def _session_ended(self, session: OperatorSession) -> None:
        self.sessions.discard(session)
        if not self.sessions:
            self._arm_sessionless_timer()

    def _arm_sessionless_timer(self) -> None:
        timeout = self.hub.settings.login_timeout
        if timeout > 0 and self.conn is not None:
            self._sessionless = asyncio.get_running_loop().call_later(timeout, self._close_sessionless)

    def _close_sessionless(self) -> None:
        self._sessionless = None
        if not self.sessions and self.conn is not None:
            self.log("closing", reason=f"no session open for {self.hub.settings.login_timeout:g} s")
            self.conn.close()

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> bool:
        self.log("refused", what=f"tcp forwarding to {dest_host}:{dest_port}", reason="forwarding is off")
        return False

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        self.log("refused", what=f"remote forwarding from {listen_host}:{listen_port}", reason="forwarding is off")
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        self.log("refused", what=f"unix forwarding to {dest_path}", reason="forwarding is off")
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        self.log("refused", what=f"unix remote forwarding from {listen_path}", reason="forwarding is off")
        return False

    def tun_requested(self, unit: int | None) -> bool:
        self.log("refused", what="tun", reason="tunnels are off")
        return False

    def tap_requested(self, unit: int | None) -> bool:
        self.log("refused", what="tap", reason="tunnels are off")
        return False

    def log(self, kind: str, **fields: Any) -> None:
        op = self.info.operator if self.info else None
        self.hub.log.event(
            kind,
            conn=self.conn_id,
            peer=self.peer,
            user=self.username or None,
            operator=op.name if op else None,
            role=op.role if op else None,
            key=fields.pop("key", op.fingerprint if op else None),
            **fields,
        )


class SSHService:
    """The listening server and everything attached to it."""

    def __init__(self, hub: SessionHub, host_key: HostKey) -> None:
        self.hub = hub
        self.host_key = host_key
        self.connections: set[OperatorConnection] = set()
        settings = hub.settings
        self.admission = Admission(settings.max_startups, settings.per_source_startups)
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._known_issues: frozenset[str] = frozenset()

    def read_keys(self) -> AuthorizedKeys:
        keys = read_authorized_keys(self.hub.settings.authorized_keys)
        issues = frozenset(keys.issues)
        for issue in sorted(issues - self._known_issues):  # each problem once, not at every login
            self.hub.log.event("authorized_keys", issue=issue)
        self._known_issues = issues
        return keys

    @property
    def port(self) -> int:
        assert self._acceptor is not None
        return int(self._acceptor.get_port())

    async def start(self) -> None:
        settings = self.hub.settings
        logging.getLogger("asyncssh").setLevel(logging.WARNING)
        if settings.prefork:
            await self._start_fork_server()
        self._acceptor = await asyncssh.create_server(
            lambda: OperatorConnection(self),
            settings.host,
            settings.port,
            server_host_keys=[self.host_key.key],
            config=None,
            authorized_client_keys=None,
            public_key_auth=True,
            password_auth=False,
            kbdint_auth=False,
            host_based_auth=False,
            gss_host=None,
            gss_kex=False,
            gss_auth=False,
            allow_pty=True,
            agent_forwarding=False,
            x11_forwarding=False,
            line_editor=False,
            encoding=None,
            login_timeout=settings.login_timeout,
            keepalive_interval=settings.keepalive_interval,
            keepalive_count_max=settings.keepalive_count_max,
            reuse_address=True,
        )

    async def _start_fork_server(self) -> None:
        """The pre-forked session server, ready before the first login; without it sessions are spawned."""
        settings = self.hub.settings
        warm_session, _why = self.hub.session_dir()  # the TUI runs once on it, ahead (the newest one, if not fixed)
        fork_server = ForkServer(
            allowed_server_environment(), settings.cwd, preload=settings.preload, warm_session=warm_session
        )
        try:
            await fork_server.start()
        except ForkServerError as exc:
            self.hub.log.event("error", where="session server", error=f"{exc}; each session is spawned instead")
            return
        self.hub.fork_server = fork_server
        self.hub.log.event(
            "session_server", pid=fork_server.pid, preload_s=fork_server.preload_s, read_ahead=fork_server.read_ahead
        )

    async def close(self) -> None:
        """Stop listening, detach every TUI (the supervised run is another process and goes on), then hang up."""
        self.hub.closing = True
        if self._acceptor is not None:
            self._acceptor.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._acceptor.wait_closed(), 2.0)
        sessions = [s for c in list(self.connections) for s in c.sessions]
        for session in sessions:
            session.detach(SHUTDOWN_MESSAGE)
        if sessions:
            grace = self.hub.settings.shutdown_grace + 3
            await asyncio.wait([asyncio.ensure_future(s.done) for s in sessions], timeout=grace)
        # clients leave by themselves once their session closed; a disconnect sent at once could overtake the
        # goodbye line in the client's own buffers, so it is only for those that linger
        await self._until_no_connections(CLIENT_LEAVE_S)
        for conn in list(self.connections):
            if conn.conn is not None:
                conn.conn.close()
        await self._until_no_connections(2.0)
        if self.hub.fork_server is not None:
            await self.hub.fork_server.close()

    async def _until_no_connections(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
