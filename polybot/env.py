"""One keys story for every command: the environment, then the project's `.env` (the environment wins).

`load_env` may run again (the dev loop calls it when `.env` changes): values it took from `.env`
follow the file, values the environment had first are never touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from pathlib import Path

ENV_FILE = ".env"
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Variables this process took from a `.env` file, and the value it took.
_from_file: dict[str, str] = {}


def read_env_file(root: Path) -> dict[str, str]:
    """The variables `.env` in `root` defines (empty when there is no `.env`)."""
    path = root / ENV_FILE
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def load_env(root: Path, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Apply `root/.env` to the environment without overriding it; the names whose value changed."""
    environ = os.environ if environ is None else environ
    values = read_env_file(root)
    changed = []
    for name, value in values.items():
        if environ.get(name) and _from_file.get(name) != environ[name]:
            continue  # set by the environment: it wins
        if environ.get(name) != value:
            environ[name] = value
            changed.append(name)
        _from_file[name] = value
    for name in [n for n in _from_file if n not in values]:
        if environ.get(name) == _from_file.pop(name):
            del environ[name]
            changed.append(name)
    return sorted(changed)


def source(name: str, environ: MutableMapping[str, str] | None = None) -> str | None:
    """Where a variable's value comes from: "environment", ".env", or None when it is unset or empty."""
    environ = os.environ if environ is None else environ
    if not environ.get(name):
        return None
    return ENV_FILE if _from_file.get(name) == environ[name] else "environment"


def store(root: Path, name: str, value: str) -> Path:
    """Set `name` in `root/.env`, replacing an earlier line for it; a new file is created mode 0600."""
    path = root / ENV_FILE
    line = f"{name}={_quoted(value)}\n"
    text = path.read_text("utf-8") if path.is_file() else ""
    lines = text.splitlines(keepends=True)
    pattern = re.compile(rf"^\s*(export\s+)?{re.escape(name)}\s*=")
    for i, old in enumerate(lines):
        if pattern.match(old):
            lines[i] = line
            break
    else:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(line)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(lines))
    return path


def _quoted(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_\-.:/+=@,~]*", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
