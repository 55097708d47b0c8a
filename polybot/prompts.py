"""The sandboxed Jinja environment that renders every bot's system prompt.

One environment serves the whole project. Template names are `<Bot>/<file>` and `_shared/<file>`;
an include from a bot's template looks in the bot's folder first, then in `bots/_shared/`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import traceback
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from jinja2 import (
    BaseLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import LoopContext
from jinja2.sandbox import SandboxedEnvironment

import polybot.sandbox as sandbox
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


#: Limits on one render (see polybot/sandbox.py), re-exported for callers and docs.
MAX_RENDER_SECONDS = sandbox.MAX_RENDER_SECONDS
MAX_PROMPT_CHARS = sandbox.MAX_PROMPT_CHARS
MAX_LOOP_ITEMS = sandbox.MAX_LOOP_ITEMS
MAX_REPEAT = sandbox.MAX_REPEAT
MAX_EXPONENT = sandbox.MAX_EXPONENT
#: A render that has not returned by then is abandoned; its thread stops at its own deadline.
HARD_DEADLINE = MAX_RENDER_SECONDS + 0.25


class RenderTimeout(SecurityError):
    """A render did not finish in time; already phrased for the user."""


class _Environment(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, library: PromptLibrary) -> None:
        super().__init__(
            loader=None,
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            auto_reload=True,
            cache_size=-1,  # a fleet has more than jinja's default 400 templates; each compiles once
        )
        self.library = library
        self.budget = sandbox.budget
        self.filters = {name: sandbox.guard_filter(name, fn) for name, fn in self.filters.items()}
        self.filters.update(sandbox.FILTERS)
        self.globals["range"] = self._range
        self.globals["lipsum"] = sandbox.bounded_lipsum(self.globals["lipsum"])  # type: ignore[arg-type]

    def _range(self, *args: int) -> range:
        items = range(*args)
        self.budget.range_left -= len(items)
        if self.budget.range_left < 0:
            raise SecurityError(f"template loops over more than {MAX_LOOP_ITEMS} range() items")
        return items

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        # Every loop, `~` and output of the compiled template passes through sandbox's counters.
        bounded = sandbox.Bound().visit(source)
        bounded.set_environment(self)
        return super()._generate(bounded, name, filename, defer_init)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self.budget.step()
        sandbox.check_binop(operator, left, right)
        return sandbox.account(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self.budget.step()
        if isinstance(__obj, LoopContext) and args:  # `loop(children)` in a recursive for
            args = (sandbox.counted(args[0]), *args[1:])
        target = getattr(__obj, "__wrapped__", __obj)  # str.format arrives wrapped by the sandbox
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str | bytes | list | dict | set):
            args = sandbox.check_method(owner, getattr(target, "__name__", ""), args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(owner, list | dict | set) and len(owner) > sandbox.MAX_ITEMS:
            raise SecurityError(f"the template grows a collection past {sandbox.MAX_ITEMS} items")
        return sandbox.account(result)

    def join_path(self, template: str, parent: str) -> str:
        folder = parent.split("/", 1)[0]
        own = f"{folder}/{template}"
        return own if own in self.library.sources else f"{SHARED_DIR}/{template}"


@dataclass(frozen=True, slots=True)
class Ref:
    """One include, import or extends in a template: the names it tries, in order (None: not literal)."""

    line: int
    names: tuple[str, ...] | None
    ignore_missing: bool


@dataclass(slots=True)
class Parsed:
    """What the static checks need from one template source, found in its one parse."""

    source: str
    error: tuple[int, str] | None = None  # (line, message) of a syntax error
    refs: list[Ref] = field(default_factory=list)
    loads: list[tuple[str, int]] = field(default_factory=list)  # names read and not bound, first use each
    tree: nodes.Template | None = None  # kept for the one compile that follows, then dropped


class PromptLibrary:
    """Every template of the project, swappable per bot (for `dev`), each parsed once per change and
    compiled on first use."""

    def __init__(self) -> None:
        self.sources: dict[str, str] = {}
        self.folders: dict[str, list[str]] = {}  # folder -> the names of its templates
        self.parsed: dict[str, Parsed] = {}
        self.parses = 0  # how many times a source was parsed (tests and the bench read it)
        self.env = _Environment(self)
        self.env.loader = _MappingLoader(self)

    def set_files(self, folder: str, files: Mapping[str, str]) -> None:
        """Replace the templates of `folder` (a bot name or `_shared`); an unchanged source is kept as is."""
        names = [f"{folder}/{file}" for file in files]
        for name in set(self.folders.get(folder, ())) - set(names):
            self.sources.pop(name, None)
            self.parsed.pop(name, None)
        for name, source in zip(names, files.values(), strict=True):
            if self.sources.get(name) != source:
                self.sources[name] = source
        if names:
            self.folders[folder] = names
        else:
            self.folders.pop(folder, None)

    def remove(self, folder: str) -> None:
        for name in self.folders.pop(folder, ()):
            self.sources.pop(name, None)
            self.parsed.pop(name, None)

    def parse(self, name: str) -> Parsed:
        """The static facts of template `name` (its current source), parsing it only when it changed."""
        source = self.sources.get(name, "")
        found = self.parsed.get(name)
        if found is not None and (found.source is source or found.source == source):
            return found
        self.parses += 1
        found = Parsed(source)
        try:
            tree = self.env.parse(source, name, rel_path(name))
        except TemplateSyntaxError as exc:
            found.error = (exc.lineno, exc.message or "")
        else:
            (found.refs, found.loads), found.tree = _facts(tree), tree
        self.parsed[name] = found
        return found

    def tree(self, name: str, source: str) -> nodes.Template | str:
        """For compiling `name`: the tree its last parse kept for `source` (once), else the source."""
        found = self.parsed.get(name)
        if found is not None and found.source is source and found.tree is not None:
            tree, found.tree = found.tree, None
            return tree
        return source

    def render(self, bot: str, context: Mapping[str, Any]) -> str:
        """Render `bot`'s system prompt with `context`, within the time, size and work limits.

        Blocking (up to MAX_RENDER_SECONDS): on an event loop, call it through `render_off_loop`.
        """
        budget = self.env.budget
        budget.start()
        try:
            template = self.env.get_template(f"{bot}/{PROMPT_FILE}")
            parts: list[str] = []
            size = 0
            for part in template.generate(context):
                parts.append(part)
                size += len(part)
                if size > MAX_PROMPT_CHARS:
                    raise SecurityError(f"the rendered prompt is longer than {MAX_PROMPT_CHARS} characters")
            return "".join(parts)
        finally:
            budget.stop()

    # --- build-time checks -------------------------------------------------------------------

    def check(self, bot: str, known: frozenset[str]) -> list[Problem]:
        """Syntax errors, unknown includes and undefined names, statically, with lines."""
        problems: list[Problem] = []
        for name in self._reachable(bot, problems):
            if name not in self.sources:
                continue
            parsed = self.parse(name)
            if parsed.error is not None:
                problems.append(Problem(rel_path(name), parsed.error[0], f"template syntax error: {parsed.error[1]}"))
                continue
            for var, line in parsed.loads:
                if var not in known and var not in self.env.globals:
                    problems.append(Problem(rel_path(name), line,
                                            f"undefined variable {var!r}: the context has "
                                            f"{', '.join(sorted(known))}; add it to [vars] and use "
                                            f"vars.{var}, or return it from context() in hooks.py"))
        return problems

    def reachable(self, bot: str) -> list[str]:
        """Names of the templates `bot`'s prompt uses, through include, import and extends, itself first."""
        return [name for name in self._reachable(bot, []) if name in self.sources]

    def own_templates(self, bot: str) -> dict[str, str]:
        """`bot`'s own templates that its prompt uses, by file name (what the manifest keeps)."""
        prefix = f"{bot}/"
        return {n.removeprefix(prefix): self.sources[n] for n in sorted(self.reachable(bot)) if n.startswith(prefix)}

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
            for ref in self.parse(name).refs:
                if ref.names is None:
                    # Only the templates a build can see being used are shipped in the manifest.
                    problems.append(Problem(rel_path(name), ref.line,
                                            "template names must be literal strings, e.g. {% include "
                                            "\"part.j2\" %}: the build ships only the templates it sees used"))
                    continue
                found = [self.env.join_path(t, name) for t in ref.names]
                todo += [r for r in found if r in self.sources]
                if not any(r in self.sources for r in found) and not ref.ignore_missing:
                    problems.append(Problem(rel_path(name), ref.line,
                                            f"template {ref.names[0]!r} not found in "
                                            f"bots/{name.split('/')[0]}/ or bots/{SHARED_DIR}/"))


def _facts(tree: nodes.Template) -> tuple[list[Ref], list[tuple[str, int]]]:
    """One walk of `tree` (in source order): its includes, imports and extends, and each name it reads
    without binding it (set, for, macro, import targets and macro args), with the line of its first use."""
    refs: list[Ref] = []
    loads: list[tuple[str, int]] = []
    declared = {"loop", "caller", "varargs", "kwargs", "super", "self"}
    todo: list[nodes.Node] = [tree]
    while todo:
        node = todo.pop()
        todo.extend(reversed(list(node.iter_child_nodes())))
        if isinstance(node, nodes.Name):
            if node.ctx in ("store", "param"):
                declared.add(node.name)
            elif node.ctx == "load":
                loads.append((node.name, node.lineno))
        elif isinstance(node, nodes.Macro):
            declared.add(node.name)
        elif isinstance(node, nodes.Import):
            declared.add(node.target)
        elif isinstance(node, nodes.FromImport):
            declared.update(item[1] if isinstance(item, tuple) else item for item in node.names)
        if isinstance(node, nodes.Include | nodes.Import | nodes.FromImport | nodes.Extends):
            target = getattr(node, "template", None)
            # {% include ["a.j2", "b.j2"] %} tries each in turn
            names = target.items if isinstance(target, nodes.List | nodes.Tuple) else [target]
            literal = all(isinstance(t, nodes.Const) and isinstance(t.value, str) for t in names)
            refs.append(Ref(node.lineno, tuple(t.value for t in names) if literal else None,  # type: ignore[union-attr]
                            bool(getattr(node, "ignore_missing", False))))
    seen: set[str] = set()
    unbound = []
    for name, line in loads:  # a name bound anywhere in the file counts as bound, as before
        if name not in declared and name not in seen:
            seen.add(name)  # report each name once per file
            unbound.append((name, line))
    return refs, unbound


T = TypeVar("T")
_pool: ThreadPoolExecutor | None = None


async def render_off_loop(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` (a render) on a worker thread, so a slow template never stalls the event loop;
    RenderTimeout if it has not finished within HARD_DEADLINE (its thread stops at its own deadline).
    """
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="polybot-render")
    context = contextvars.copy_context()  # hooks' context() sees the caller's context variables
    future = asyncio.get_running_loop().run_in_executor(_pool, functools.partial(context.run, fn, *args))
    try:
        return await asyncio.wait_for(future, HARD_DEADLINE)
    except TimeoutError:
        raise RenderTimeout(f"template error: rendering took longer than {MAX_RENDER_SECONDS:g}s") from None


class _MappingLoader(BaseLoader):
    """A loader over the library's sources, compiling from the tree the checks parsed; `uptodate`
    notices when dev swaps a source."""

    def __init__(self, library: PromptLibrary) -> None:
        self.library = library

    def load(self, environment: Any, name: str, globals: Any = None) -> Any:
        sources = self.library.sources
        if name not in sources:
            raise TemplateNotFound(name)
        source = sources[name]
        code = environment.compile(self.library.tree(name, source), name, rel_path(name))

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

