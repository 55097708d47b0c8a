"""A project's files on disk: its bot folders, their files, and the whole project as read once."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from polybot.config import ProjectSettings, ProviderConfig, load_providers, load_settings
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


@dataclass(slots=True)
class BotFiles:
    """One bot folder's files as read once, and the digest of every input its compile depends on."""

    folder: BotFolder
    toml: str | None  # None when bot.toml is missing or unreadable; `problems` says which
    templates: dict[str, str] = field(default_factory=dict)
    hooks: str | None = None  # the source of hooks.py, when there is one
    digest: str = ""  # of its own files; the compiler adds the project's base and the partials it reaches
    problems: list[Problem] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.folder.name


@dataclass(slots=True)
class Project:
    """The files of a project as read once: providers, shared partials and every bot folder's files."""

    root: Path
    providers: dict[str, ProviderConfig]
    problems: list[Problem]  # providers.toml, and links that lead outside the project
    shared: dict[str, str]  # bots/_shared/*.j2
    digest: str  # of providers.toml, polybot.toml and bots/_shared/
    bots: list[BotFiles]
    settings: ProjectSettings = field(default_factory=ProjectSettings)  # polybot.toml
    base: str = ""  # digest of providers.toml and polybot.toml, which every bot depends on

    def bot(self, name: str) -> BotFiles | None:
        return next((b for b in self.bots if b.name == name), None)


def read_project(root: Path) -> Project:
    """Read everything a compile depends on, once."""
    providers, settings, base, problems = _read_project_files(root)
    problems += outside_links(root, files=False)
    shared = read_templates(root / "bots" / SHARED_DIR, root)
    bots = [read_bot(folder, root) for folder in find_bots(root)]
    return Project(root, providers, problems, shared, shared_digest(base, shared), bots, settings, base)


def _read_project_files(root: Path) -> tuple[dict[str, ProviderConfig], ProjectSettings, str, list[Problem]]:
    """providers.toml and polybot.toml: what they hold, their digest, and their problems."""
    from polybot.providers import known_kinds  # each providers.toml `kind` must be a registered one

    providers, problems = load_providers(root, known_kinds())
    settings, settings_text, found = load_settings(root)
    problems += found + outside_links(root, [])
    providers_file = root / "providers.toml"
    base = digest(providers_file.read_text("utf-8") if providers_file.is_file() else "", settings_text)
    return providers, settings, base, problems


def shared_digest(base: str, shared: dict[str, str]) -> str:
    return digest(base, *(f"{k}\0{v}" for k, v in sorted(shared.items())))


def reread(project: Project, changed: set[Path]) -> Project:
    """`project` again after the files at `changed` (paths that changed, appeared or vanished) did:
    only the bot folders they are in are read again, bots/_shared if a path is in it, providers.toml
    and polybot.toml if they are among them. A path it cannot place reads the whole project again."""
    root = project.root
    bots_dir = root / "bots"
    folders: set[str] = set()
    files = False
    for path in changed:
        try:
            parts = path.relative_to(root).parts
        except ValueError:
            continue
        if len(parts) >= 2 and parts[0] == "bots":
            folders.add(parts[1])
        elif parts in (("providers.toml",), ("polybot.toml",)):
            files = True
        elif parts != (".env",):
            return read_project(root)  # bots/ itself, or something unknown
    providers, settings, base = project.providers, project.settings, project.base
    problems = [p for p in project.problems if _folder_of(p.path) not in folders and
                (not files or _folder_of(p.path) is not None)]
    if files:
        providers, settings, base, found = _read_project_files(root)
        problems += found
    shared = read_templates(bots_dir / SHARED_DIR, root) if SHARED_DIR in folders else project.shared
    problems += outside_links(root, sorted(folders), files=False)
    bot_folders = {f for f in folders if f[0] not in "_."}
    bots = [b for b in project.bots if b.name not in bot_folders]
    bots += [read_bot(BotFolder(f, bots_dir / f), root) for f in sorted(bot_folders) if (bots_dir / f).is_dir()]
    bots.sort(key=lambda b: b.name)
    return Project(root, providers, problems, shared, shared_digest(base, shared), bots, settings, base)


def _folder_of(rel: str) -> str | None:
    parts = rel.split("/")
    return parts[1] if len(parts) >= 2 and parts[0] == "bots" else None


def read_bot(folder: BotFolder, root: Path) -> BotFiles:
    """bot.toml, the templates and hooks.py of one bot folder (a missing bot.toml is its one problem)."""
    rel_toml = f"{folder.rel}/bot.toml"
    try:
        text = (folder.path / "bot.toml").read_text("utf-8")
    except FileNotFoundError:
        return BotFiles(folder, None, problems=[Problem(rel_toml, None, "missing: every bot folder needs a "
                                                        "bot.toml (create one with `polybot new NAME`)")])
    except (OSError, UnicodeDecodeError) as exc:
        return BotFiles(folder, None, problems=[Problem(rel_toml, None, f"cannot read: {exc.__class__.__name__}")])
    templates = read_templates(folder.path, root)
    hooks_path = folder.path / HOOKS_FILE
    hooks = hooks_path.read_text("utf-8") if hooks_path.is_file() else None
    inputs = digest(folder.name, text, hooks or "",
                    *(f"{k}\0{v}" for k, v in sorted(templates.items())))
    return BotFiles(folder, text, templates, hooks, inputs)


def digest(*parts: str) -> str:
    """A short content hash of `parts` (a bot's `hash` in the manifest)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0\1")
    return h.hexdigest()[:16]


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
    read: `outside_links` reports it. So is anything that is not a regular file. Linked folders
    are not descended into.
    """
    top = root if root is not None else folder.parent.parent
    root_r = top.resolve()
    # Only links can lead outside: a plain file is inside when its folder is.
    plain_inside = _plainly_under(folder, top) or inside(folder, root_r)
    found: dict[str, str] = {}
    todo = [(str(folder), "")]
    while todo:
        path, prefix = todo.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for entry in entries:
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                todo.append((entry.path, rel + "/"))
            elif entry.name.endswith(".j2") and entry.is_file() and \
                    (inside(Path(entry.path), root_r) if entry.is_symlink() else plain_inside):
                with open(entry.path, encoding="utf-8") as f:
                    found[rel] = f.read()
    return dict(sorted(found.items()))


def _plainly_under(folder: Path, root: Path) -> bool:
    """Whether `folder` is below `root` by name, with no link on the way (so inside it, unresolved)."""
    try:
        parts = folder.relative_to(root).parts
    except ValueError:
        return False
    path = root
    for part in parts:
        path = path / part
        if part == ".." or path.is_symlink():
            return False
    return True


def inside(path: Path, root: Path) -> bool:
    """Whether `path`, links followed, is within `root` (an already resolved folder)."""
    target = path.resolve()
    return target == root or root in target.parents


def outside_links(root: Path, folders: list[str] | None = None, *, files: bool = True) -> list[Problem]:
    """Links under bots/ (or only under `bots/<folder>` for each of `folders`), and with `files` a
    providers.toml or polybot.toml link, that lead outside the project: located problems.

    Whatever a build reads goes into build/, which is committed: a link to ~/.env or
    /proc/self/environ would put secrets there.
    """
    root_r = root.resolve()
    candidates = [root / "providers.toml", root / "polybot.toml"] if files else []
    bots = root / "bots"
    tops = [bots] if folders is None else [bots / f for f in folders]
    if folders is not None:
        candidates += tops
    for top in tops:
        if not top.is_dir() or (folders is not None and top.is_symlink()):
            continue
        for dirpath, dirnames, filenames in os.walk(top):  # never descends into linked folders
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
