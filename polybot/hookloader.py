"""Loading a bot's hooks.py (trusted project code) and locating errors raised inside it."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from polybot.errors import PolybotError, Problem

HOOK_NAMES = ("context", "messages", "respond", "on_feedback", "on_reaction", "on_error")


@dataclass(frozen=True, slots=True)
class Hooks:
    """The optional functions a bot's hooks.py defines."""

    rel_path: str
    context: Callable[..., Any] | None = None
    messages: Callable[..., Any] | None = None
    respond: Callable[..., Any] | None = None
    #: Poe's reports about replies: fastapi_poe's ReportFeedbackRequest, ReportReactionRequest,
    #: ReportErrorRequest. Sync or async; their failures are logged, never raised to Poe.
    on_feedback: Callable[..., Any] | None = None
    on_reaction: Callable[..., Any] | None = None
    on_error: Callable[..., Any] | None = None
    #: Everything hooks.py defines at its top level (tools are looked up here by name).
    namespace: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def load_hooks(path: Path, rel_path: str, bot_name: str) -> Hooks:
    """Execute hooks.py as a fresh module; a failure becomes a located PolybotError."""
    module_name = f"polybot_hooks_{bot_name.replace('.', '_').replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PolybotError([Problem(rel_path, None, "cannot load hooks.py")])
    module = importlib.util.module_from_spec(spec)
    try:
        source = path.read_text("utf-8")
        code = compile(source, str(path), "exec")
        sys.modules[module_name] = module  # so dataclasses/pickling inside hooks work
        exec(code, module.__dict__)
    except SyntaxError as exc:
        raise PolybotError([Problem(rel_path, exc.lineno, f"syntax error in hooks.py: {exc.msg}")]) from None
    except Exception as exc:  # noqa: BLE001 - any import-time failure is the user's to fix
        raise PolybotError([hook_problem(exc, path, rel_path, "hooks.py failed to import")]) from None
    return _collect(module, rel_path)


def _collect(module: ModuleType, rel_path: str) -> Hooks:
    found = {name: getattr(module, name) for name in HOOK_NAMES if callable(getattr(module, name, None))}
    return Hooks(rel_path=rel_path, namespace=dict(vars(module)), **found)


def hook_problem(exc: BaseException, path: Path | str, rel_path: str, what: str) -> Problem:
    """A problem naming the deepest line of `path` in the exception's traceback."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == Path(path):
            line = frame.lineno
    return Problem(rel_path, line, f"{what}: {type(exc).__name__}: {exc}")
