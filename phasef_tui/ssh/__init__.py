"""Remote operation over SSH: ``phasef serve --ssh`` gives each operator session its own TUI in a PTY.

The modules import asyncssh at their top, so only the ``serve`` handler (and tests) import this package; the rest of
the CLI starts without it.

- ``authorized_keys``: who may log in, under which operator name and role (read anew at each login).
- ``host_key``: the server's ed25519 host key, generated on first start.
- ``pty_child``: one program on a fresh pseudo-terminal, with resize, back-pressure and a clean stop.
- ``session``: one SSH session channel -> one PTY child (the TUI), with the limits that keep a session in bounds.
- ``server``: authentication per connection, the listener, caps, connection logs and graceful shutdown.
"""
