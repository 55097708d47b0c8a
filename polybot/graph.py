"""The dependency graph of a project's sources -> compiled bots, and the stat pass over them.

Sources are bot folders' files, `bots/_shared/` partials, providers.toml, polybot.toml and .env.
A bot depends on its own folder, providers.toml and polybot.toml (every bot), and the partials its
prompt reaches (`PromptLibrary.reachable`, from each template's one parse); .env holds keys, which
no compile reads. `build` and `dev` both ask the graph which bots a change touches; `build` also
keeps each source's stat (size, mtime_ns) so a rebuild with nothing changed is a stat pass.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from polybot.project import SHARED_DIR

#: (size, mtime_ns); a folder is (-1, 0): only that it is there counts.
Stat = tuple[int, int]
#: Files whose mtime is this close to the scan may change again within the same mtime tick
#: (coarse filesystem clocks, FAT's 2 s): a stat taken then proves nothing, so it is not trusted.
RACY_NS = 2_000_000_000
#: What every bot depends on, besides its own folder and the partials it reaches.
PROJECT_FILES = ("providers.toml", "polybot.toml")
ENV_FILE = ".env"


def scan(root: Path) -> dict[str, Stat]:
    """The stat of every source a build reads: everything under bots/ (links followed, folders
    included, so a new empty bot folder counts) and the project files. Reads no content."""
    found: dict[str, Stat] = {}
    for name in PROJECT_FILES:
        try:
            st = os.stat(root / name)
        except OSError:
            continue
        found[name] = (st.st_size, st.st_mtime_ns)
    todo = [(root / "bots", "bots")]
    while todo:
        folder, rel = todo.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            path = f"{rel}/{entry.name}"
            try:
                if entry.is_dir():
                    found[path] = (-1, 0)
                    if not entry.is_symlink():  # the build never descends into linked folders
                        todo.append((Path(entry.path), path))
                else:
                    st = entry.stat()
                    found[path] = (st.st_size, st.st_mtime_ns)
            except OSError:
                found[path] = (-2, 0)  # there but unreadable: a build reports it
    return dict(sorted(found.items()))


def racy(stats: Mapping[str, Stat], scanned_ns: int) -> bool:
    """Whether any file's mtime is too close to the scan to trust its stat next time."""
    return any(mtime >= scanned_ns - RACY_NS for _, mtime in stats.values())


def environment() -> list[tuple[str, int]]:
    """The folders Python imports from, with their mtimes: installing or removing a distribution
    changes one, which is when constraints.txt (and provider kinds from plugins) may change."""
    seen = []
    for entry in sys.path:
        try:
            seen.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            continue
    return seen


@dataclass(slots=True)
class StatRecord:
    """What a build saw: each source's stat, each output's, the manifest's bytes and the environment.

    Kept beside the build in an ignored folder (it is machine-specific, never committed): the next
    build trusts it only when every stat matches and none was racy when taken."""

    sources: dict[str, Stat]
    outputs: dict[str, Stat]
    manifest_size: int
    environment: list[tuple[str, int]]
    version: str
    trusted: bool = True  # False when a source was racy at the scan

    def dumps(self) -> str:
        return json.dumps({"version": self.version, "trusted": self.trusted, "manifest_size": self.manifest_size,
                           "environment": self.environment, "sources": self.sources,
                           "outputs": self.outputs}, indent=0, sort_keys=True)

    @classmethod
    def load(cls, path: Path) -> StatRecord | None:
        try:
            data = json.loads(path.read_text("utf-8"))
            return cls({k: (v[0], v[1]) for k, v in data["sources"].items()},
                       {k: (v[0], v[1]) for k, v in data["outputs"].items()}, int(data["manifest_size"]),
                       [(e[0], e[1]) for e in data["environment"]], str(data["version"]), bool(data["trusted"]))
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            return None


def stat_files(folder: Path, names: Iterable[str]) -> dict[str, Stat] | None:
    """The stat of each file `names` in `folder`, or None if one is missing."""
    out: dict[str, Stat] = {}
    for name in names:
        try:
            st = os.stat(folder / name)
        except OSError:
            return None
        out[name] = (st.st_size, st.st_mtime_ns)
    return out


@dataclass(slots=True)
class Graph:
    """Sources -> bots: which bots each source is an input of, as of their last compile."""

    uses: dict[str, set[str]] = field(default_factory=dict)  # "bots/_shared/x.j2" -> bots reaching it
    reached: dict[str, set[str]] = field(default_factory=dict)  # bot -> the shared sources it reaches

    def link(self, bot: str, shared: Iterable[str]) -> None:
        """`bot` now reaches the shared templates `shared` (names like `_shared/x.j2`)."""
        paths = {f"bots/{name}" for name in shared}
        for path in self.reached.get(bot, set()) - paths:
            self.uses.get(path, set()).discard(bot)
        for path in paths:
            self.uses.setdefault(path, set()).add(bot)
        self.reached[bot] = paths

    def drop(self, bot: str) -> None:
        self.link(bot, ())
        self.reached.pop(bot, None)

    def affected(self, root: Path, changed: Iterable[Path], bots: Iterable[str]) -> set[str] | None:
        """The bots a change to `changed` touches: a bot folder's own files touch that bot, a partial the
        bots reaching it, .env none; None when every bot may be (providers.toml, polybot.toml, a
        partial that appeared or vanished, which can change what an include resolves to, or a path
        it cannot place). Only bots compiled since the graph last saw them are known to it."""
        names = set(bots)
        touched: set[str] = set()
        for path in changed:
            try:
                parts = path.relative_to(root).parts
            except ValueError:
                continue
            if parts == (ENV_FILE,):
                continue  # keys only: no compile reads it
            if len(parts) < 2 or parts[0] != "bots":
                return None  # providers.toml, polybot.toml, bots/ itself or a path it cannot place
            if parts[1] == SHARED_DIR:
                rel = "/".join(parts)
                if rel not in self.uses or not path.is_file():
                    return None  # new, removed, or not yet seen: resolution may change anywhere
                touched |= self.uses[rel] & names
            else:
                touched.add(parts[1])
        return touched

