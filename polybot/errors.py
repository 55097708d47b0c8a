"""Located, user-facing problems: `path:line: message`, never a traceback."""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, order=True)
class Problem:
    """One thing wrong with the project, located in a file relative to the project root."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


class PolybotError(Exception):
    """A failure the user can fix; the CLI prints each problem on its own line and exits 1."""

    def __init__(self, problems: Iterable[Problem | str]) -> None:
        self.problems: list[Problem | str] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def sorted_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Each problem once, in the order every command reports them: by file, line, then message."""
    return sorted(set(problems), key=lambda p: (p.path, p.line or 0, p.message))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when a close match exists, else ''."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxlevel = 2
_short.maxlist = _short.maxdict = 4


def shown(value: object) -> str:
    """`value` as `!r` shows it, shortened, for a message (bounded however long or deep it is)."""
    return _short.repr(value)
