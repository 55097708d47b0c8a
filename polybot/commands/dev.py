"""`polybot dev`: serve from source with live reload and a playground."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path

from polybot.dev import report, watch
from polybot.env import load_env
from polybot.listen import bind, plural, serve
from polybot.livebuild import LiveBuild, Refresh


@dataclass(frozen=True, slots=True)
class Options:
    project: Path
    host: str = "127.0.0.1"
    port: int = 8080
    allow_host: list[str] = field(default_factory=list)


def run(options: Options) -> int:
    from polybot.app import BotServer
    from polybot.config import load_settings
    from polybot.openai_api import mount_openai
    from polybot.playground import Playground
    from polybot.replylog import configure, observe
    from polybot.security import DevAccess, binding_warning

    root: Path = options.project
    load_env(root)
    sock = bind(options.host, options.port)  # a busy port is one line, before anything else
    access = DevAccess.for_binding(options.host, options.port, options.allow_host)
    server = BotServer(dev=access)
    mount_openai(server, open_without_key=True)  # dev never needs keys; POLYBOT_API_KEY, when set, is checked
    workspace = LiveBuild(root, on_put=server.put, on_remove=server.remove)
    playground = Playground(workspace, access)
    playground.mount(server.app)
    first = workspace.refresh()
    binding_warning(access, [n for n, b in server.bots.items() if not b.access_key])
    playground.publish(first)
    report(Refresh(problems=first.problems, kept=first.kept))
    base = f"http://{options.host}:{options.port}"
    print(f"polybot dev: serving {plural(len(workspace.runtimes), 'bot')}, watching bots/, providers.toml "
          "and .env", file=sys.stderr)
    for name in sorted(workspace.runtimes):
        print(f"  {base}/{name}", file=sys.stderr)
    # The playground answers loopback names only, whatever --host is.
    print(f"playground: http://127.0.0.1:{options.port}/    (Ctrl-C to stop)", file=sys.stderr)
    configure("readable")
    # polybot.toml's [logs] is read once: a change to it takes a restart.
    replies = observe(root, load_settings(root)[0], lambda: workspace.pool.configs, dev=True)

    async def main() -> int:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(workspace, stop, playground.publish))
        try:
            return await serve(server.app, sock)
        finally:
            stop.set()
            watcher.cancel()
            await workspace.pool.aclose()
            await playground.aclose()
            if replies is not None:
                replies.stop()

    try:
        return asyncio.run(main())
    finally:
        sock.close()
