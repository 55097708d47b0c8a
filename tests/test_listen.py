"""The socket `dev` and `serve` listen on."""

from __future__ import annotations

import socket

from polybot.listen import bind
from tests.fakes.server import free_port


def test_connections_are_accepted_with_nagle_off() -> None:
    """Without TCP_NODELAY a reply's first frame waits behind its headers for the client's delayed
    ACK: ~40 ms added to every reply (bench/README.md, added latency)."""
    listener = bind("127.0.0.1", free_port())
    try:
        assert listener.proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY only when it says TCP
        listener.listen()
        with socket.create_connection(listener.getsockname()[:2], timeout=5):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        listener.close()
