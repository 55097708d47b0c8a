"""The bots of a project served from source, through one Compiler and the source graph.

`load` reads what changed (only the files a watcher names, project.reread) and marks the bots whose
inputs changed as pending; `ensure` compiles one pending bot at once (a request for it is
waiting), `settle` compiles pending bots in the background, a batch at a time; `refresh` does all
three. What compiled is swapped in; a bot whose new version fails keeps its last good runtime,
rendering with the shared partials it was compiled with. Knows nothing of terminals or watching.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from polybot.compiler import Compiler
from polybot.errors import Problem
from polybot.graph import Graph
from polybot.project import PROMPT_FILE, SHARED_DIR, Project, name_problems
from polybot.prompts import PromptLibrary
from polybot.protect import Protection
from polybot.reliability import ProviderPool
from polybot.runtime import Runtime


@dataclass
class Refresh:
    """What one refresh changed."""

    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # broken now, last good version still served
    fixed: list[str] = field(default_factory=list)  # bots (or project files) whose errors cleared


class LiveBuild:
    """Runtimes of a project's bots from source; a failed bot keeps its last good runtime."""

    def __init__(self, root: Path, on_put: Callable[[Runtime], None] | None = None,
                 on_remove: Callable[[str], None] | None = None) -> None:
        self.root = root
        self.compiler = Compiler(root)
        self.library = PromptLibrary()  # the templates being served (the compiler has its own)
        self.pool = ProviderPool({})
        self.graph = Graph()  # which bots reach which shared partials, as last compiled
        self.runtimes: dict[str, Runtime] = {}
        self.protection: Protection | None = None  # the limits and cache of polybot.toml, for every bot
        self.pending: set[str] = set()  # bots whose inputs changed since they were last compiled
        self.failed: dict[str, list[Problem]] = {}  # bots whose last compile failed, and why
        self.project: Project | None = None
        self.digest: str | None = None  # of providers.toml + bots/_shared at the last good load
        self.broken: set[tuple[str, str]] = set()  # ("bot", name) or ("file", path) with errors last time
        self.on_put = on_put or (lambda runtime: None)
        self.on_remove = on_remove or (lambda name: None)
        self._shared_of: dict[str, dict[str, str]] = {}  # bot -> the shared sources its runtime renders with
        self._result = Refresh()  # what the loads and compiles since the last `finish` changed
        self._skipped = False  # the last load stopped at a project problem before marking bots

    def refresh(self, changed: set[Path] | None = None) -> Refresh:
        """Read what changed, compile every bot whose inputs changed, swap it in; what changed."""
        self.load(changed)
        self.settle()
        return self.finish()

    # --- the steps dev runs one by one ---------------------------------------------------------

    def load(self, changed: set[Path] | None = None) -> None:
        """Read the project (with `changed`, only what those paths touch) and mark the bots to compile."""
        result = self._result
        project = self.compiler.load(changed if self.project is not None else None)
        self.project = project
        invalid = {p.path.removeprefix("bots/") for p in name_problems([b.folder for b in project.bots])}
        present = {b.name for b in project.bots if b.name not in invalid}
        for name in sorted(set(self.runtimes) - present):
            del self.runtimes[name]
            self.library.remove(name)
            self._shared_of.pop(name, None)
            self.graph.drop(name)
            self.on_remove(name)
            result.removed.append(name)
        for name in set(self.failed) - present:
            del self.failed[name]
        self.pending &= present
        if project.problems:
            self._skipped = True
            return  # a broken providers.toml changes nothing: keep serving what we have
        if project.digest != self.digest:
            self.library.set_files(SHARED_DIR, project.shared)
            self.pool.update(project.providers)
            self.digest = project.digest
            if self.protection is None or self.protection.settings != project.settings:
                # polybot.toml changed: every bot's inputs did too, so each is compiled onto the new one
                self.protection = Protection(project.settings, os.environ)
        # Which bots the change can touch, by the graph of their last compiles (None: any of them);
        # after a load that stopped at a project problem, edits it skipped may be anywhere.
        touched = None if changed is None or self._skipped else \
            self.graph.affected(self.root, changed, present)
        self._skipped = False
        for bot in project.bots:
            if bot.name not in present or (touched is not None and bot.name not in touched and
                                           bot.name not in self.failed and bot.name in self.runtimes):
                continue
            runtime = self.runtimes.get(bot.name)
            if bot.name in self.failed or runtime is None or runtime.spec.hash != self.compiler.inputs(project, bot):
                self.pending.add(bot.name)

    def ensure(self, name: str) -> None:
        """Compile `name` now if it is pending (a request for it is waiting)."""
        if name in self.pending:
            self._compile(name)

    def settle(self, budget: float | None = None) -> bool:
        """Compile pending bots, for about `budget` seconds (None: all of them); whether any are left."""
        deadline = None if budget is None else time.perf_counter() + budget
        for name in sorted(self.pending):
            if deadline is not None and time.perf_counter() > deadline:
                return True
            self._compile(name)
        return bool(self.pending)

    def finish(self) -> Refresh:
        """What changed since the last `finish`, with every current problem (located), and what they fixed."""
        result, self._result = self._result, Refresh()
        project = self.project
        if project is not None:
            bad_names = name_problems([b.folder for b in project.bots])
            result.problems = [*project.problems, *bad_names, *(p for name in sorted(self.failed)
                                                                 for p in self.failed[name])]
            if project.problems:
                result.kept = sorted(set(result.kept) | set(self.runtimes))
        now = {_owner(p) for p in result.problems}
        if ("file", "providers.toml") in now:
            # Bots were not compiled this time: what was broken stays broken until we know better.
            now |= {owner for owner in self.broken if owner[0] == "bot"}
        gone = {("bot", n) for n in result.removed}
        gone |= {o for o in self.broken if o[0] == "bot" and not (self.root / "bots" / o[1]).is_dir()}
        result.fixed = sorted(name for _, name in self.broken - now - gone)
        self.broken = now
        result.updated = sorted(set(result.updated))
        result.kept = sorted(set(result.kept) - set(result.updated))
        return result

    # --- one bot -------------------------------------------------------------------------------

    def _compile(self, name: str) -> None:
        self.pending.discard(name)
        project = self.project
        bot = project.bot(name) if project is not None else None
        if project is None or bot is None:
            return
        previous = self.runtimes.get(name)
        compiled = self.compiler.compile_bot(project, bot)
        if compiled.problems or compiled.spec is None:
            self.failed[name] = compiled.problems
            if previous is not None:
                self._result.kept.append(name)
                self._pin(name, previous)
            return
        self.failed.pop(name, None)
        shared = {n: self.compiler.library.sources[n] for n in self.compiler.library.reachable(name)
                  if n.startswith(f"{SHARED_DIR}/")}
        self.graph.link(name, shared)
        if previous is not None and compiled.spec is previous.spec:
            return  # unchanged
        self.library.set_files(name, compiled.spec.templates)
        self._shared_of[name] = shared
        runtime = Runtime(compiled.spec, self.library, self.pool, compiled.hooks, self.root,
                          protection=self.protection)
        self.runtimes[name] = runtime
        self.on_put(runtime)
        self._result.updated.append(name)

    def _pin(self, name: str, runtime: Runtime) -> None:
        """A kept bot renders with the shared partials it was compiled with, even after they changed:
        copies of the old ones go into its own folder, where its includes look first."""
        own = runtime.spec.templates
        old = {n.removeprefix(f"{SHARED_DIR}/"): src for n, src in self._shared_of.get(name, {}).items()
               if self.library.sources.get(n) is not src and self.library.sources.get(n) != src}
        self.library.set_files(name, {**{n: s for n, s in old.items() if n not in own and n != PROMPT_FILE}, **own})


def _owner(problem: Problem) -> tuple[str, str]:
    """The bot a problem belongs to, or else its project file (providers.toml, bots/_shared/...)."""
    parts = problem.path.split("/")
    if len(parts) > 1 and parts[0] == "bots" and not parts[1].startswith(("_", ".")):
        return ("bot", parts[1])
    return ("file", problem.path)
