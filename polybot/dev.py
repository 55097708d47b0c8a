"""`polybot dev`: serve from source, rebuild what changed, swap it in, keep the last good bot."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polybot.bot import Runtime
from polybot.build import ProjectSources, compile_bot, read_project
from polybot.env import load_env
from polybot.errors import Problem
from polybot.listen import bind, plural, serve
from polybot.project import SHARED_DIR, name_problems
from polybot.prompts import PromptLibrary
from polybot.reliability import ProviderPool


@dataclass
class Refresh:
    """What one refresh changed."""

    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # broken now, last good version still served
    fixed: list[str] = field(default_factory=list)  # bots (or project files) whose errors cleared


class Workspace:
    """Compiled bots from source, recompiled incrementally; a failed bot keeps its last good runtime."""

    def __init__(self, root: Path, on_put: Callable[[Runtime], None] | None = None,
                 on_remove: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.library = PromptLibrary()
        self.pool = ProviderPool({})
        self.runtimes: dict[str, Runtime] = {}
        self.hashes: dict[str, str] = {}  # input hash of each bot's last compile attempt
        self.digest: str | None = None  # of providers.toml + bots/_shared at the last good refresh
        self.broken: set[tuple[str, str]] = set()  # ("bot", name) or ("file", path) with errors last time
        self.on_put = on_put or (lambda runtime: None)
        self.on_remove = on_remove or (lambda name: None)

    def refresh(self) -> Refresh:
        """Recompile every bot whose inputs changed since the last refresh and swap it in."""
        result = self._refresh()
        now = {_owner(p) for p in result.problems}
        if ("file", "providers.toml") in now:
            # Bots were not compiled this time: what was broken stays broken until we know better.
            now |= {owner for owner in self.broken if owner[0] == "bot"}
        gone = {("bot", n) for n in result.removed}
        gone |= {o for o in self.broken if o[0] == "bot" and not (self.root / "bots" / o[1]).is_dir()}
        result.fixed = sorted(name for _, name in self.broken - now - gone)
        self.broken = now
        return result

    def _refresh(self) -> Refresh:
        result = Refresh()
        project = read_project(self.root)
        bad_names = name_problems(project.bots)
        result.problems += project.problems + bad_names
        invalid = {p.path.removeprefix("bots/") for p in bad_names}
        project.bots = [b for b in project.bots if b.name not in invalid]
        present = {b.name for b in project.bots}
        for name in sorted(set(self.runtimes) - present):
            del self.runtimes[name]
            self.hashes.pop(name, None)
            self.library.remove(name)
            self.on_remove(name)
            result.removed.append(name)
        global_change = project.digest != self.digest
        if project.problems:
            # A broken providers.toml changes nothing: keep serving what we have.
            result.kept += [b.name for b in project.bots if b.name in self.runtimes]
            return result
        staged: list[tuple[Runtime, str]] = []
        for folder in project.bots:
            scratch = PromptLibrary()
            scratch.set_files(SHARED_DIR, project.shared)
            previous = self.runtimes.get(folder.name)
            compiled = compile_bot(project, folder, scratch,
                                   previous.spec if previous is not None and not global_change else None)
            if compiled.spec is not None and previous is not None and compiled.spec is previous.spec:
                continue  # unchanged
            if compiled.problems or compiled.spec is None:
                result.problems += compiled.problems
                if previous is not None:
                    result.kept.append(folder.name)
                continue
            staged.append((Runtime(compiled.spec, self.library, self.pool, compiled.hooks, self.root),
                           compiled.spec.hash))
        if global_change and result.kept:
            # providers.toml or bots/_shared changed and broke a served bot: those files are shared by
            # every bot, so keep serving all of them exactly as they were until the change is fixed.
            result.updated.clear()
            return result
        if global_change:
            self._adopt(project)
        for runtime, digest in staged:
            name = runtime.spec.name
            self.library.set_files(name, runtime.spec.templates)
            self.runtimes[name] = runtime
            self.hashes[name] = digest
            self.on_put(runtime)
            result.updated.append(name)
        return result

    def _adopt(self, project: ProjectSources) -> None:
        self.library.set_files(SHARED_DIR, project.shared)
        self.pool.update(project.providers)
        self.digest = project.digest


def _owner(problem: Problem) -> tuple[str, str]:
    """The bot a problem belongs to, or else its project file (providers.toml, bots/_shared/...)."""
    parts = problem.path.split("/")
    if len(parts) > 1 and parts[0] == "bots" and not parts[1].startswith(("_", ".")):
        return ("bot", parts[1])
    return ("file", problem.path)


def report(result: Refresh, out: Any = None) -> None:
    out = out or sys.stderr
    for problem in sorted(set(result.problems), key=lambda p: (p.path, p.line or 0)):
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


async def watch(workspace: Workspace, stop: asyncio.Event,
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


async def reload_keys(workspace: Workspace, changed: list[str]) -> None:
    """`.env` changed: bots take their access keys again, providers make new clients with new keys."""
    for runtime in workspace.runtimes.values():
        workspace.on_put(runtime)
    await workspace.pool.aclose()
    print(f"polybot dev: .env changed ({', '.join(changed)}); keys reloaded", file=sys.stderr)


def cmd_dev(args: Any) -> int:
    from polybot.openai_api import mount_openai
    from polybot.playground import Playground
    from polybot.replylog import configure
    from polybot.security import DevAccess, binding_warning
    from polybot.server import BotServer

    root: Path = args.project
    load_env(root)
    sock = bind(args.host, args.port)  # a busy port is one line, before anything else
    access = DevAccess.for_binding(args.host, args.port, getattr(args, "allow_host", []))
    server = BotServer(dev=access)
    mount_openai(server, open_without_key=True)  # dev never needs keys; POLYBOT_API_KEY, when set, is checked
    workspace = Workspace(root, on_put=server.put, on_remove=server.remove)
    playground = Playground(workspace, access)
    playground.mount(server.app)
    first = workspace.refresh()
    binding_warning(access, [n for n, b in server.bots.items() if not b.access_key])
    playground.publish(first)
    report(Refresh(problems=first.problems, kept=first.kept))
    base = f"http://{args.host}:{args.port}"
    print(f"polybot dev: serving {plural(len(workspace.runtimes), 'bot')}, watching bots/, providers.toml "
          "and .env", file=sys.stderr)
    for name in sorted(workspace.runtimes):
        print(f"  {base}/{name}", file=sys.stderr)
    # The playground answers loopback names only, whatever --host is.
    print(f"playground: http://127.0.0.1:{args.port}/    (Ctrl-C to stop)", file=sys.stderr)
    configure("readable")

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

    try:
        return asyncio.run(main())
    finally:
        sock.close()
