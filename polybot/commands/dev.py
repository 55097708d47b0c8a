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


#: How long dev compiles before it starts serving; what is left compiles in the background.
FIRST_SECONDS = 0.1
#: How many bot URLs the start banner lists; the playground lists them all.
BANNER_URLS = 3


def banner(workspace: LiveBuild, host: str, port: int) -> None:
    """What dev serves, at any size: a count, the first few URLs, the playground."""
    names = sorted(set(workspace.runtimes) | workspace.pending)
    later = len(workspace.pending)
    print(f"polybot dev: serving {plural(len(names), 'bot')}"
          f"{f' ({later} compiling in the background)' if later else ''}, watching bots/, providers.toml, "
          "polybot.toml and .env", file=sys.stderr)
    for name in names[:BANNER_URLS]:
        print(f"  http://{host}:{port}/{name}", file=sys.stderr)
    if len(names) > BANNER_URLS:
        print(f"  ... and {len(names) - BANNER_URLS} more: http://{host}:{port}/<Name>, listed in the playground",
              file=sys.stderr)
    # The playground answers loopback names only, whatever --host is.
    print(f"playground: http://127.0.0.1:{port}/    (Ctrl-C to stop)", file=sys.stderr)


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
    server.ensure = workspace.ensure  # a request for a bot not compiled yet compiles it first
    workspace.load()
    if access.bound_off_loopback:
        workspace.settle()  # which bots answer other machines is printed before serving
    else:
        workspace.settle(FIRST_SECONDS)  # the rest compile in the background, or when asked for
    first = workspace.finish()
    binding_warning(access, [n for n, b in server.bots.items() if not b.access_key])
    playground.publish(first)
    report(Refresh(problems=first.problems, kept=first.kept))
    banner(workspace, options.host, options.port)
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
