"""`polybot list [bots|providers]`: what the project defines, with key status (never a value)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from polybot.check import report_problems
from polybot.env import load_env
from polybot.listing import bot_rows, provider_rows, table


@dataclass(frozen=True, slots=True)
class Options:
    project: Path
    what: Literal["bots", "providers"] = "bots"


def run(options: Options) -> int:
    root: Path = options.project
    load_env(root)
    providers, problems = report_problems(root)
    rows = (bot_rows(root, providers, os.environ) if options.what == "bots"
            else provider_rows(root, providers, os.environ))
    print(table(rows))
    return 1 if problems else 0
