"""The sandboxed Jinja environment that renders every bot's system prompt.

One environment serves the whole project. Template names are `<Bot>/<file>` and `_shared/<file>`;
an include from a bot's template looks in the bot's folder first, then in `bots/_shared/`.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from jinja2 import BaseLoader, StrictUndefined, TemplateError, TemplateNotFound, TemplateSyntaxError, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from polybot.errors import Problem
from polybot.project import PROMPT_FILE, SHARED_DIR

#: Names every template may use without defining them.
CONTEXT_NAMES = frozenset(
    {"bot", "vars", "now", "user_id", "conversation_id", "language_code", "users", "messages", "params"}
)

#: The fixed context build/prompts/<Name>.md is rendered with, so diffs show only real changes.
SAMPLE_NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
SAMPLE_USER_ID = "sample-user"
SAMPLE_CONVERSATION_ID = "sample-conversation"
SAMPLE_MESSAGES = ({"role": "user", "content": "Hello!", "sender": None},)


#: Limits on one render, so a template cannot stall the event loop or exhaust memory.
MAX_RENDER_SECONDS = 1.0
MAX_PROMPT_CHARS = 1_000_000
MAX_LOOP_ITEMS = 100_000  # range() elements per render, all loops together
MAX_REPEAT = 100_000  # "x" * n and [..] * n
MAX_EXPONENT = 100


class _Budget(threading.local):
    range_left = MAX_LOOP_ITEMS


class _Environment(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, library: PromptLibrary) -> None:
        super().__init__(
            loader=None,
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            auto_reload=True,
        )
        self.library = library
        self.budget = _Budget()
        self.globals["range"] = self._range

    def _range(self, *args: int) -> range:
        items = range(*args)
        self.budget.range_left -= len(items)
        if self.budget.range_left < 0:
            raise SecurityError(f"template loops over more than {MAX_LOOP_ITEMS} range() items")
        return items

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right!r} is too large for a template")
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * n > MAX_REPEAT:
                    raise SecurityError(f"repeating a sequence {n} times is too large for a template")
        return super().call_binop(context, operator, left, right)

    def join_path(self, template: str, parent: str) -> str:
        folder = parent.split("/", 1)[0]
        own = f"{folder}/{template}"
        return own if own in self.library.sources else f"{SHARED_DIR}/{template}"


class PromptLibrary:
    """Every template of the project, swappable per bot (for `dev`), compiled on first use."""

    def __init__(self) -> None:
        self.sources: dict[str, str] = {}
        self.env = _Environment(self)
        self.env.loader = _MappingLoader(self.sources)

    def set_files(self, folder: str, files: Mapping[str, str]) -> None:
        """Replace the templates of `folder` (a bot name or `_shared`)."""
        self.remove(folder)
        for file, source in files.items():
            self.sources[f"{folder}/{file}"] = source

    def remove(self, folder: str) -> None:
        for name in [n for n in self.sources if n.startswith(folder + "/")]:
            del self.sources[name]

    def render(self, bot: str, context: Mapping[str, Any]) -> str:
        """Render `bot`'s system prompt with `context`, within the time, size and loop limits."""
        template = self.env.get_template(f"{bot}/{PROMPT_FILE}")
        self.env.budget.range_left = MAX_LOOP_ITEMS
        deadline = time.monotonic() + MAX_RENDER_SECONDS
        parts: list[str] = []
        size = 0
        for part in template.generate(context):
            parts.append(part)
            size += len(part)
            if size > MAX_PROMPT_CHARS:
                raise SecurityError(f"the rendered prompt is longer than {MAX_PROMPT_CHARS} characters")
            if time.monotonic() > deadline:
                raise SecurityError(f"rendering took longer than {MAX_RENDER_SECONDS:g}s")
        return "".join(parts)

    # --- build-time checks -------------------------------------------------------------------

    def check(self, bot: str, known: frozenset[str]) -> list[Problem]:
        """Syntax errors, unknown includes and undefined names, statically, with lines."""
        problems: list[Problem] = []
        for name in self._reachable(bot, problems):
            if name not in self.sources:
                continue
            try:
                tree = self.env.parse(self.sources[name], name, rel_path(name))
            except TemplateSyntaxError as exc:
                problems.append(Problem(rel_path(name), exc.lineno, f"template syntax error: {exc.message}"))
                continue
            declared = _declared_names(tree)
            for node in tree.find_all(nodes.Name):
                if node.ctx == "load" and node.name not in known and node.name not in declared \
                        and node.name not in self.env.globals:
                    problems.append(Problem(rel_path(name), node.lineno,
                                            f"undefined variable {node.name!r}: the context has "
                                            f"{', '.join(sorted(known))}; add it to [vars] and use "
                                            f"vars.{node.name}, or return it from context() in hooks.py"))
                    declared.add(node.name)  # report each name once per file
        return problems

    def _reachable(self, bot: str, problems: list[Problem]) -> Iterator[str]:
        """The bot's prompt and every template it includes, reporting includes that don't exist."""
        seen: set[str] = set()
        todo = [f"{bot}/{PROMPT_FILE}"]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            yield name
            try:
                tree = self.env.parse(self.sources.get(name, ""), name)
            except TemplateSyntaxError:
                continue
            for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
                target = getattr(node, "template", None)
                if not isinstance(target, nodes.Const) or not isinstance(target.value, str):
                    continue
                resolved = self.env.join_path(target.value, name)
                if resolved not in self.sources:
                    if getattr(node, "ignore_missing", False):
                        continue
                    problems.append(Problem(rel_path(name), node.lineno,
                                            f"template {target.value!r} not found in "
                                            f"bots/{name.split('/')[0]}/ or bots/{SHARED_DIR}/"))
                else:
                    todo.append(resolved)


def _declared_names(tree: nodes.Template) -> set[str]:
    """Names the template itself binds: set, for, macro, import targets and macro args."""
    names: set[str] = set()
    for node in tree.find_all(nodes.Name):
        if node.ctx in ("store", "param"):
            names.add(node.name)
    for macro in tree.find_all(nodes.Macro):
        names.add(macro.name)
    for imp in tree.find_all(nodes.Import):
        names.add(imp.target)
    for from_imp in tree.find_all(nodes.FromImport):
        for item in from_imp.names:
            names.add(item[1] if isinstance(item, tuple) else item)
    names.update({"loop", "caller", "varargs", "kwargs", "super", "self"})
    return names


class _MappingLoader(BaseLoader):
    """A loader over the library's dict; `uptodate` notices when dev swaps a source."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.sources = sources

    def load(self, environment: Any, name: str, globals: Any = None) -> Any:  # noqa: A002
        if name not in self.sources:
            raise TemplateNotFound(name)
        source = self.sources[name]
        code = environment.compile(source, name, rel_path(name))
        sources = self.sources

        def uptodate() -> bool:
            return sources.get(name) is source

        return environment.template_class.from_code(environment, code, globals, uptodate)


def rel_path(name: str) -> str:
    """`Bot/system.md.j2` -> `bots/Bot/system.md.j2` (what users see in errors)."""
    return f"bots/{name}"


def render_problem(exc: Exception, fallback_path: str) -> Problem:
    """Locate a render-time error in the template frame that raised it."""
    line = None
    path = fallback_path
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith("bots/"):
            path, line = frame.filename, frame.lineno
    if isinstance(exc, TemplateError):
        message = exc.message or str(exc)
        if isinstance(exc, UndefinedError):
            message = f"undefined variable: {message}"
        return Problem(path, line, f"template error: {message}")
    return Problem(path, line, f"template error: {type(exc).__name__}: {exc}")


def sample_context(bot: Mapping[str, Any], vars_: Mapping[str, Any], params: Mapping[str, Any],
                   extra: Mapping[str, Any]) -> dict[str, Any]:
    """The fixed context build/prompts/<Name>.md is rendered with."""
    return {
        **extra,
        "bot": dict(bot),
        "vars": dict(vars_),
        "now": SAMPLE_NOW,
        "user_id": SAMPLE_USER_ID,
        "conversation_id": SAMPLE_CONVERSATION_ID,
        "language_code": "en",
        "users": [],
        "messages": [dict(m) for m in SAMPLE_MESSAGES],
        "params": dict(params),
    }

