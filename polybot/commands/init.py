"""`polybot init [DIR]`: scaffold a new project."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from polybot.errors import PolybotError
from polybot.scaffold import ignore_env, project_files, shown


@dataclass(frozen=True, slots=True)
class Options:
    project: Path  # the current folder when --project is not given
    dir: Path | None = None


def run(options: Options) -> int:
    root: Path = (Path.cwd() / options.dir).resolve() if options.dir is not None else options.project
    for existing in ("providers.toml", "bots"):
        if (root / existing).exists():
            raise PolybotError([f"{root / existing} already exists: polybot init makes a new project; "
                                "pick an empty folder (polybot init DIR)"])
    files = project_files(root.name)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(text, "utf-8")
            print(f"created {rel}")
        elif rel == ".gitignore" and ignore_env(path):
            print(f"updated {rel} (added .env: it holds your keys)")
        else:
            print(f"kept {rel} (it was already there)")
    where = shown(root)
    cd = "" if root == Path.cwd().resolve() else f"cd {where} && "
    print(f"\nNext: {cd}polybot dev    (then, in another terminal: polybot chat Echo)")
    return 0
