"""The bots of a project served from source: each refresh asks the compiler for every bot (it
recompiles only what changed) and swaps in what compiled; a bot whose new version fails keeps its
last good runtime. Knows nothing of terminals or watching."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from polybot.compiler import Compiler
from polybot.errors import Problem
from polybot.project import SHARED_DIR, Project, name_problems
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
        self.runtimes: dict[str, Runtime] = {}
        self.protection: Protection | None = None  # the limits and cache of polybot.toml, for every bot
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
        project = self.compiler.load()
        bad_names = name_problems([b.folder for b in project.bots])
        result.problems += project.problems + bad_names
        invalid = {p.path.removeprefix("bots/") for p in bad_names}
        bots = [b for b in project.bots if b.name not in invalid]
        present = {b.name for b in bots}
        for name in sorted(set(self.runtimes) - present):
            del self.runtimes[name]
            self.library.remove(name)
            self.on_remove(name)
            result.removed.append(name)
        global_change = project.digest != self.digest
        if project.problems:
            # A broken providers.toml changes nothing: keep serving what we have.
            result.kept += [b.name for b in bots if b.name in self.runtimes]
            return result
        staged: list[Runtime] = []
        protection = self.protection
        if protection is None or protection.settings != project.settings:  # polybot.toml changed
            protection = Protection(project.settings, os.environ)
        for bot in bots:
            previous = self.runtimes.get(bot.name)
            compiled = self.compiler.compile_bot(project, bot)
            if compiled.spec is not None and previous is not None and compiled.spec is previous.spec:
                continue  # unchanged
            if compiled.problems or compiled.spec is None:
                result.problems += compiled.problems
                if previous is not None:
                    result.kept.append(bot.name)
                continue
            staged.append(Runtime(compiled.spec, self.library, self.pool, compiled.hooks, self.root,
                                  protection=protection))
        if global_change and result.kept:
            # providers.toml or bots/_shared changed and broke a served bot: those files are shared by
            # every bot, so keep serving all of them exactly as they were until the change is fixed.
            result.updated.clear()
            return result
        if global_change:
            self._adopt(project)
            self.protection = protection
        for runtime in staged:
            name = runtime.spec.name
            self.library.set_files(name, runtime.spec.templates)
            self.runtimes[name] = runtime
            self.on_put(runtime)
            result.updated.append(name)
        return result

    def _adopt(self, project: Project) -> None:
        self.library.set_files(SHARED_DIR, project.shared)
        self.pool.update(project.providers)
        self.digest = project.digest


def _owner(problem: Problem) -> tuple[str, str]:
    """The bot a problem belongs to, or else its project file (providers.toml, bots/_shared/...)."""
    parts = problem.path.split("/")
    if len(parts) > 1 and parts[0] == "bots" and not parts[1].startswith(("_", ".")):
        return ("bot", parts[1])
    return ("file", problem.path)
