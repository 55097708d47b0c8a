"""`polybot serve`: the compiled build in production."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from polybot.manifest import load_manifest
from polybot.openai_api import endpoint_notice
from polybot.server import create_app


def cmd_serve(args: Any) -> int:
    import uvicorn

    root: Path = args.project
    manifest = load_manifest(root / "build" / "manifest.json")
    server = create_app(manifest, root, allow_without_key=args.allow_without_key)
    print(f"polybot serve: {len(server.bots)} bots on http://{args.host}:{args.port}/<Name>", file=sys.stderr)
    print(f"polybot serve: {endpoint_notice(server, open_without_key=args.allow_without_key)}", file=sys.stderr)
    if args.workers > 1:
        # Each worker process imports polybot.asgi, which builds the same app from the manifest.
        os.environ["POLYBOT_PROJECT"] = str(root)
        os.environ["POLYBOT_ALLOW_WITHOUT_KEY"] = "1" if args.allow_without_key else ""
        uvicorn.run("polybot.asgi:app", host=args.host, port=args.port, workers=args.workers,
                    log_level="warning")
    else:
        uvicorn.run(server.app, host=args.host, port=args.port, log_level="warning")
    return 0
