"""Listening sockets for ccai's local servers, with one usage error for an address in use.

A busy port is the caller's choice of ``--host``/``--port``, not unavailable collateral or a bug:
every server (the dev collateral server, the local engine, the buffering proxy) binds through
:func:`listen_socket` and reports ``cannot listen on HOST:PORT: address already in use``.
"""

from __future__ import annotations

import socket

from ccai.errors import UsageError

__all__ = ["listen_socket"]


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (``port=0`` picks a free port), not yet listening.

    Args:
        host: IPv4 or IPv6 address (or a name) to bind.
        port: Port to bind.

    Returns:
        The bound socket; the caller owns it (uvicorn calls ``listen`` on it).

    Raises:
        UsageError: the address cannot be bound (in use, not local, no permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # accepted connections inherit it. Without it, Nagle's algorithm holds a streamed response's small
    # writes until the client's delayed ACK (about 40 ms) on every reused connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # SO_REUSEADDR lets a restarted server reuse a port in TIME_WAIT; a port another process
        # listens on still fails (EADDRINUSE) on Linux and macOS.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = (exc.strerror or str(exc)).lower()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        raise UsageError(
            f"cannot listen on {where}: {reason}", hint="choose another --port or --host"
        ) from None
    return sock
