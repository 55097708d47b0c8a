"""`polybot serve`: the compiled build in production."""

from __future__ import annotations

import socket

from polybot.listen import GRACEFUL_SHUTDOWN


def run_workers(sock: socket.socket, workers: int) -> int:
    """uvicorn's worker supervisor on our socket; 130 after Ctrl-C, like one process."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        interrupted = False

        def handle_int(self) -> None:
            Supervisor.interrupted = True
            super().handle_int()

    config = uvicorn.Config("polybot.asgi:app", workers=workers, log_level="warning",
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN)  # type: ignore[arg-type]
    try:
        Supervisor(config, sockets=[sock]).run()
    finally:
        sock.close()
    return 130 if Supervisor.interrupted else 0
