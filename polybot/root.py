"""Where the project is: the nearest folder, from here upwards, holding `bots/` or `providers.toml`."""

from __future__ import annotations

import os
from pathlib import Path

from polybot.errors import PolybotError

#: What makes a folder a polybot project (either is enough).
MARKERS = ("bots", "providers.toml")


def is_project(folder: Path) -> bool:
    return (folder / "bots").is_dir() or (folder / "providers.toml").is_file()


def find_root(start: Path | None = None) -> Path | None:
    """The nearest project folder at or above `start` (default: the current directory)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if is_project(folder):
            return folder
    return None


def project_root(given: Path | None, start: Path | None = None, *, source: str = "--project ") -> Path:
    """`--project DIR` (or POLYBOT_PROJECT) checked, or the discovered project; a PolybotError
    saying what to do otherwise."""
    if given is not None:
        folder = (start or Path.cwd()) / given if not given.is_absolute() else given
        folder = folder.resolve()
        if not folder.is_dir():
            raise PolybotError([f"{source}{given}: no such folder; pass the folder that holds bots/ "
                                "or providers.toml"])
        if not is_project(folder):
            raise PolybotError([f"{source}{given}: not a polybot project (it has neither bots/ nor "
                                "providers.toml); `polybot init` makes one"])
        return folder
    env = os.environ.get("POLYBOT_PROJECT")
    if env:
        return project_root(Path(env), start, source="POLYBOT_PROJECT=")
    found = find_root(start)
    if found is None:
        raise PolybotError(["not inside a polybot project (no bots/ or providers.toml here or in any parent "
                            "folder): cd into one, pass --project DIR, or make one with `polybot init`"])
    return found
