"""`polybot dev`: serve from source, rebuild what changed, swap it in, keep the last good bot."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from polybot.env import load_env
from polybot.errors import sorted_problems
from polybot.graph import ENV_FILE, PROJECT_FILES
from polybot.livebuild import LiveBuild, Refresh

#: A line names at most this many bots; past that it counts them.
MAX_NAMES = 10


def report(result: Refresh, out: Any = None) -> None:
    out = out or sys.stderr
    for problem in sorted_problems(result.problems):
        print(str(problem), file=out)
    for name in result.kept:
        print(f"polybot dev: {name} has errors; still serving its last good version", file=out)
    for name in result.fixed:
        print(f"polybot dev: fixed {name}", file=out)
    if len(result.updated) > MAX_NAMES:
        print(f"polybot dev: reloaded {len(result.updated)} bots ({', '.join(result.updated[:MAX_NAMES])}, ...)",
              file=out)
    elif result.updated:
        print(f"polybot dev: reloaded {', '.join(result.updated)}", file=out)
    if result.removed:
        print(f"polybot dev: removed {', '.join(result.removed)}", file=out)
    out.flush()


def _watch_filter(root: Path) -> Callable[[Any, str], bool]:
    bots = str(root / "bots")
    top = {str(root / name) for name in (*PROJECT_FILES, ENV_FILE)}

    def keep(change: Any, path: str) -> bool:
        return path in top or path.startswith(bots + os.sep) or path == bots

    return keep


async def watch(workspace: LiveBuild, stop: asyncio.Event,
                on_refresh: Callable[[Refresh], None] = lambda result: None) -> None:
    """Refresh on every change to bots/, providers.toml, polybot.toml or .env until `stop` is set: read only the
    files that changed, then compile the bots they touch a batch at a time, between requests (a
    request for a bot still pending compiles it first, `LiveBuild.ensure`); report once settled."""
    from watchfiles import awatch

    root = workspace.root
    keep = _watch_filter(root)
    # Two watchers: bots/ recursively, the project root only at its top (not .venv/, .git/).
    queue: asyncio.Queue[set[Path]] = asyncio.Queue()

    (root / "bots").mkdir(exist_ok=True)

    resolved = root.resolve()

    def under_root(path: str) -> Path:  # the watcher's absolute paths, onto the root the project was read from
        try:
            return root / Path(path).relative_to(resolved)
        except ValueError:
            return Path(path)

    async def pump(path: Path, recursive: bool) -> None:
        async for changes in awatch(path, watch_filter=keep, recursive=recursive, stop_event=stop,
                                    debounce=400, step=20, rust_timeout=200):
            queue.put_nowait({under_root(p) for _, p in changes})

    tasks = [asyncio.create_task(pump(root / "bots", True)), asyncio.create_task(pump(root, False))]
    try:
        while not stop.is_set():
            if workspace.pending and queue.empty():
                workspace.settle(BATCH_SECONDS)  # between requests: a batch, then the loop again
                for _ in range(YIELDS):
                    await asyncio.sleep(0)
                if not workspace.pending:
                    settled(workspace, on_refresh)
                continue
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            changed = getter.result()
            while not queue.empty():
                changed |= queue.get_nowait()
            if root / ".env" in changed and (names := load_env(root)):
                await reload_keys(workspace, names)
            workspace.load(changed)
            workspace.settle(BATCH_SECONDS)
            if not workspace.pending:
                settled(workspace, on_refresh)
    finally:
        for task in tasks:
            task.cancel()


#: How long one batch of background compiles holds the event loop.
BATCH_SECONDS = 0.005
#: How many turns of the event loop every other task gets between two batches: a request needs a
#: dozen or so (accept, parse, the guard, the bot's stream) and would otherwise wait a batch for each.
YIELDS = 8


def settled(workspace: LiveBuild, on_refresh: Callable[[Refresh], None]) -> None:
    """Every pending bot compiled: print what changed and tell the playground."""
    result = workspace.finish()
    report(result)
    on_refresh(result)


async def reload_keys(workspace: LiveBuild, changed: list[str]) -> None:
    """`.env` changed: bots take their access keys again, providers make new clients with new keys."""
    for runtime in workspace.runtimes.values():
        workspace.on_put(runtime)
    await workspace.pool.aclose()
    print(f"polybot dev: .env changed ({', '.join(changed)}); keys reloaded", file=sys.stderr)
