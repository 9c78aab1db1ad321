"""``ccai._net.listen_socket``: the one way ccai's servers bind."""

from __future__ import annotations

import asyncio
import socket

import pytest

from ccai._net import listen_socket
from ccai.errors import UsageError


def test_accepted_connections_have_nagle_off() -> None:
    """asyncio sets TCP_NODELAY only on TCP-protocol sockets; with Nagle on, a streamed response's
    small writes waited for the client's delayed ACK (~40 ms) on every reused connection."""
    seen: list[int] = []

    async def main() -> None:
        sock = listen_socket("127.0.0.1", 0)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer = writer.get_extra_info("socket")
            seen.append(peer.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        port = server.sockets[0].getsockname()[1]
        async with server:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(main())
    assert seen and seen[0] != 0


def test_a_busy_port_is_a_usage_error() -> None:
    first = listen_socket("127.0.0.1", 0)
    first.listen()
    try:
        with pytest.raises(UsageError, match=r"cannot listen on 127\.0\.0\.1:"):
            listen_socket("127.0.0.1", first.getsockname()[1])
    finally:
        first.close()
