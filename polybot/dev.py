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
from polybot.livebuild import LiveBuild, Refresh


def report(result: Refresh, out: Any = None) -> None:
    out = out or sys.stderr
    for problem in sorted_problems(result.problems):
        print(str(problem), file=out)
    for name in result.kept:
        print(f"polybot dev: {name} has errors; still serving its last good version", file=out)
    for name in result.fixed:
        print(f"polybot dev: fixed {name}", file=out)
    if result.updated:
        print(f"polybot dev: reloaded {', '.join(result.updated)}", file=out)
    if result.removed:
        print(f"polybot dev: removed {', '.join(result.removed)}", file=out)
    out.flush()


def _watch_filter(root: Path) -> Callable[[Any, str], bool]:
    bots = str(root / "bots")
    top = {str(root / "providers.toml"), str(root / ".env")}

    def keep(change: Any, path: str) -> bool:
        return path in top or path.startswith(bots + os.sep) or path == bots

    return keep


async def watch(workspace: LiveBuild, stop: asyncio.Event,
                on_refresh: Callable[[Refresh], None] = lambda result: None) -> None:
    """Refresh on every change to bots/, providers.toml or .env until `stop` is set."""
    from watchfiles import awatch

    root = workspace.root
    keep = _watch_filter(root)
    # Two watchers: bots/ recursively, the project root only at its top (not .venv/, .git/).
    queue: asyncio.Queue[None] = asyncio.Queue()

    (root / "bots").mkdir(exist_ok=True)

    async def pump(path: Path, recursive: bool) -> None:
        async for _ in awatch(path, watch_filter=keep, recursive=recursive, stop_event=stop,
                              debounce=400, step=20, rust_timeout=200):
            queue.put_nowait(None)

    tasks = [asyncio.create_task(pump(root / "bots", True)), asyncio.create_task(pump(root, False))]
    try:
        while not stop.is_set():
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, *tasks}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            while not queue.empty():
                queue.get_nowait()
            changed = load_env(root)
            if changed:
                await reload_keys(workspace, changed)
            result = workspace.refresh()
            report(result)
            on_refresh(result)
    finally:
        for task in tasks:
            task.cancel()


async def reload_keys(workspace: LiveBuild, changed: list[str]) -> None:
    """`.env` changed: bots take their access keys again, providers make new clients with new keys."""
    for runtime in workspace.runtimes.values():
        workspace.on_put(runtime)
    await workspace.pool.aclose()
    print(f"polybot dev: .env changed ({', '.join(changed)}); keys reloaded", file=sys.stderr)
