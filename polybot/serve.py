"""`polybot serve`: the compiled build in production."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

from polybot.app import create_app
from polybot.env import load_env
from polybot.listen import GRACEFUL_SHUTDOWN, bind, plural, run
from polybot.manifest import load_manifest
from polybot.openai_api import endpoint_notice


def cmd_serve(args: Any) -> int:
    from polybot.replylog import configure

    root: Path = args.project
    load_env(root)
    manifest = load_manifest(root / "build" / "manifest.json")
    server = create_app(manifest, root, allow_without_key=args.allow_without_key)
    sock = bind(args.host, args.port)  # a busy port is one line, before the "serving" line
    print(f"polybot serve: {plural(len(server.bots), 'bot')} on http://{args.host}:{args.port}/<Name>"
          f"{f' ({args.workers} workers)' if args.workers > 1 else ''}    (Ctrl-C to stop)", file=sys.stderr)
    print(f"polybot serve: {endpoint_notice(server, open_without_key=args.allow_without_key)}", file=sys.stderr)
    configure("json")
    if args.workers == 1:
        return run(server.app, sock)
    # Each worker process imports polybot.asgi, which builds the same app from the manifest.
    os.environ["POLYBOT_PROJECT"] = str(root)
    os.environ["POLYBOT_ALLOW_WITHOUT_KEY"] = "1" if args.allow_without_key else ""
    return run_workers(sock, args.workers)


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
