"""Finding a project's bots and their files on disk."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from polybot.errors import Problem

#: Poe's rule for bot names: 4-20 letters, digits, '-', '_' or '.'.
NAME_RULE = re.compile(r"^[A-Za-z0-9_.-]{4,20}$")
PROMPT_FILE = "system.md.j2"
HOOKS_FILE = "hooks.py"
SHARED_DIR = "_shared"


@dataclass(frozen=True, slots=True)
class BotFolder:
    """A `bots/<Name>/` folder."""

    name: str
    path: Path

    @property
    def rel(self) -> str:
        return f"bots/{self.name}"


def find_bots(root: Path) -> list[BotFolder]:
    """Every bot folder, sorted by name; folders starting with `_` or `.` are not bots."""
    bots_dir = root / "bots"
    if not bots_dir.is_dir():
        return []
    return sorted(
        (BotFolder(p.name, p) for p in bots_dir.iterdir() if p.is_dir() and p.name[0] not in "_."),
        key=lambda b: b.name,
    )


def read_templates(folder: Path, root: Path | None = None) -> dict[str, str]:
    """Every `*.j2` file under `folder`, keyed by its path relative to it (posix), sorted.

    A link to a file outside the project `root` (default: the folder's `bots/..`) is skipped, never
    read: `outside_links` reports it. So is anything that is not a regular file.
    """
    root_r = (root if root is not None else folder.parent.parent).resolve()
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        prefix = os.path.relpath(dirpath, folder).replace(os.sep, "/")
        for name in sorted(filenames):
            if name.endswith(".j2"):
                path = Path(dirpath, name)
                if not inside(path, root_r) or not stat.S_ISREG(path.stat().st_mode):
                    continue
                rel = name if prefix == "." else f"{prefix}/{name}"
                with open(path, encoding="utf-8") as f:
                    found[rel] = f.read()
    return dict(sorted(found.items()))


def inside(path: Path, root: Path) -> bool:
    """Whether `path`, links followed, is within `root` (an already resolved folder)."""
    target = path.resolve()
    return target == root or root in target.parents


def outside_links(root: Path) -> list[Problem]:
    """Links under bots/, and a providers.toml link, that lead outside the project: located problems.

    Whatever a build reads goes into build/, which is committed: a link to ~/.env or
    /proc/self/environ would put secrets there.
    """
    root_r = root.resolve()
    candidates = [root / "providers.toml"]
    bots = root / "bots"
    if bots.is_dir():
        for dirpath, dirnames, filenames in os.walk(bots):  # never descends into linked folders
            dirnames.sort()
            candidates += [Path(dirpath, name) for name in sorted(dirnames + filenames)]
    problems = []
    for path in candidates:
        if path.is_symlink() and not inside(path, root_r):
            kind = "folder" if path.is_dir() else "file"
            problems.append(Problem(path.relative_to(root).as_posix(), None,
                                    f"is a link to a {kind} outside the project; polybot reads only files inside "
                                    f"it (what it reads goes into build/), so copy the {kind} in instead"))
    return problems


def name_problems(bots: list[BotFolder]) -> list[Problem]:
    """Invalid names, and names that collide case-insensitively."""
    problems = []
    seen: dict[str, str] = {}
    for bot in bots:
        if not NAME_RULE.match(bot.name):
            problems.append(Problem(bot.rel, None, f"invalid bot name {bot.name!r}: Poe bot names are "
                                    "4-20 characters of letters, digits, '-', '_' or '.'; rename the folder"))
        other = seen.setdefault(bot.name.lower(), bot.name)
        if other != bot.name:
            problems.append(Problem(bot.rel, None, f"duplicate bot name: {bot.name!r} and {other!r} differ "
                                    "only in case; Poe names are case-insensitive, rename one folder"))
    return problems
