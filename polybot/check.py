"""The project's own problems, located, that every command reports before its own."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

from polybot.config import ProviderConfig, load_providers
from polybot.errors import Problem, sorted_problems
from polybot.project import find_bots, name_problems


def project_problems(root: Path) -> tuple[dict[str, ProviderConfig], list[Problem]]:
    """Provider plugins, providers.toml and bot names: cheap checks every command can afford."""
    from polybot.providers import known_kinds, load_plugins

    plugins = [Problem(where, None, message) for where, message in load_plugins()]
    providers, problems = load_providers(root, known_kinds())
    return providers, plugins + problems + name_problems(find_bots(root))


def print_problems(problems: Iterable[Problem], out: TextIO | None = None) -> None:
    out = out or sys.stderr
    for problem in sorted_problems(problems):
        print(str(problem), file=out)


def report_problems(root: Path) -> tuple[dict[str, ProviderConfig], list[Problem]]:
    """`project_problems`, each printed on stderr as `path:line: message`."""
    providers, problems = project_problems(root)
    print_problems(problems)
    return providers, problems
