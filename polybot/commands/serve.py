"""`polybot serve`: the compiled build in production."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from polybot.app import create_app
from polybot.env import load_env
from polybot.listen import bind, plural
from polybot.listen import run as run_app
from polybot.manifest import load_manifest, manifest_path
from polybot.openai_api import endpoint_notice
from polybot.serve import run_workers


@dataclass(frozen=True, slots=True)
class Options:
    project: Path
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    allow_without_key: bool = False


def run(options: Options) -> int:
    from polybot.replylog import configure, observe

    root: Path = options.project
    load_env(root)
    manifest = load_manifest(manifest_path(root))
    server = create_app(manifest, root, allow_without_key=options.allow_without_key)
    sock = bind(options.host, options.port)  # a busy port is one line, before the "serving" line
    print(f"polybot serve: {plural(len(server.bots), 'bot')} on http://{options.host}:{options.port}/<Name>"
          f"{f' ({options.workers} workers)' if options.workers > 1 else ''}    (Ctrl-C to stop)", file=sys.stderr)
    print(f"polybot serve: {endpoint_notice(server, open_without_key=options.allow_without_key)}", file=sys.stderr)
    configure("json")
    if options.workers == 1:  # else each worker process (polybot.asgi) keeps its own replies: WAL lets them share
        observe(root, manifest.settings, lambda: manifest.providers, dev=False)
        return run_app(server.app, sock)
    # Each worker process imports polybot.asgi, which builds the same app from the manifest.
    os.environ["POLYBOT_PROJECT"] = str(root)
    os.environ["POLYBOT_ALLOW_WITHOUT_KEY"] = "1" if options.allow_without_key else ""
    return run_workers(sock, options.workers)
