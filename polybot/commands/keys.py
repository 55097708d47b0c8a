"""`polybot keys [list|set NAME]`: every variable the project needs, and whether each is set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from polybot.env import ENV_FILE, load_env, source
from polybot.keys import needed, set_key, status


@dataclass(frozen=True, slots=True)
class Options:
    project: Path
    action: Literal["list", "set"] = "list"
    name: str | None = None


def run(options: Options) -> int:
    from polybot.check import report_problems
    from polybot.listing import table

    root: Path = options.project
    load_env(root)
    if options.action == "set":
        set_key(root, options.name)
        return 0
    providers, problems = report_problems(root)
    variables = needed(root, providers)
    if not variables:
        print("this project needs no keys (add a bot with `polybot new NAME`)")
        return 1 if problems else 0
    rows = [["VARIABLE", "STATUS", "USED BY"]]
    rows += [[name, status(name), ", ".join(who)] for name, who in variables.items()]
    print(table(rows))
    missing = [name for name in variables if source(name) is None]
    if missing:
        print(f"\nset one with: polybot keys set {missing[0]}    (stored in {ENV_FILE}; never printed)")
    return 1 if problems else 0
