"""Tools (SPEC §7): plain functions in a bot's hooks.py, described to the model and run for it.

The JSON schema of a tool comes from its type hints through pydantic (a model is built from the
signature), its description from the docstring. `ToolBox` runs the calls a model asks for, several
at once, each bounded by a timeout; a tool that raises returns its error to the model as the
result, and the failure is logged with hooks.py's file and line.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from polybot.config import plain_errors
from polybot.errors import Problem
from polybot.hookloader import hook_problem
from polybot.providers.base import FileOut, ToolCall, ToolSpec

log = logging.getLogger("polybot.tools")

#: Seconds one tool call may take before the model is told it timed out.
TOOL_TIMEOUT = 30.0
#: Longest result text sent back to the model.
MAX_RESULT_CHARS = 20_000


class ToolDefinitionError(Exception):
    """A function that cannot be a tool; the message says why."""


@dataclass(frozen=True, slots=True)
class Tool:
    """A bot's tool: what the model sees (`spec`) and what polybot calls."""

    spec: ToolSpec
    fn: Callable[..., Any]
    arguments: type[BaseModel]


def make_tool(fn: Callable[..., Any]) -> Tool:
    """A Tool from a plain function; ToolDefinitionError when a parameter has no JSON schema."""
    name = fn.__name__
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # noqa: BLE001 - an unresolvable annotation
        raise ToolDefinitionError(f"tool {name!r}: cannot read its type hints ({exc})") from None
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(f"tool {name!r}: *{param.name} cannot be described to a model; "
                                      "use named parameters")
        if param.name not in hints:
            raise ToolDefinitionError(f"tool {name!r}: parameter {param.name!r} has no type hint; "
                                      "add one (str, int, float, bool, list, dict, Literal, a pydantic model)")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (_described(hints[param.name]), default)
    try:
        model = create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        schema = model.model_json_schema()
    except Exception as exc:  # noqa: BLE001 - pydantic's "cannot generate a schema" and friends
        raise ToolDefinitionError(f"tool {name!r}: a type hint has no JSON schema ({type(exc).__name__}); "
                                  "use str, int, float, bool, list, dict, Literal, Optional or a pydantic "
                                  "model") from None
    schema.pop("title", None)
    description = inspect.cleandoc(fn.__doc__ or "") or name.replace("_", " ")
    return Tool(ToolSpec(name, description, schema), fn, model)


def _described(annotation: Any) -> Any:
    """`Annotated[T, "text"]` -> `Annotated[T, Field(description="text")]`, for the schema."""
    if typing.get_origin(annotation) is Annotated:
        base, *extras = typing.get_args(annotation)
        texts = [e for e in extras if isinstance(e, str)]
        others = [e for e in extras if not isinstance(e, str)]
        if texts:
            return Annotated[(base, *others, Field(description=" ".join(texts)))]
    return annotation


def load_tools(names: Sequence[str], module_attrs: Mapping[str, Any], rel_hooks: str,
               rel_toml: str, toml_line: int | None) -> tuple[dict[str, Tool], list[Problem]]:
    """The tools `names` from a hooks module's attributes, with located problems."""
    tools: dict[str, Tool] = {}
    problems: list[Problem] = []
    for name in names:
        fn = module_attrs.get(name)
        if not callable(fn):
            where = rel_hooks if module_attrs else f"{rel_toml.rsplit('/', 1)[0]}/hooks.py"
            problems.append(Problem(rel_toml, toml_line, f"tools: {name!r} is not a function in {where}; "
                                    f"define `def {name}(...)` there"))
            continue
        try:
            tools[name] = make_tool(fn)
        except ToolDefinitionError as exc:
            line = getattr(getattr(fn, "__code__", None), "co_firstlineno", None)
            problems.append(Problem(rel_hooks, line, str(exc)))
    return tools, problems


@dataclass(frozen=True, slots=True)
class ToolResult:
    call: ToolCall
    content: str
    ok: bool
    #: Files the tool attached to the reply (it returned FileOut values): sent to Poe as file events.
    files: tuple[FileOut, ...] = ()


class ToolBox:
    """A bot's tools, ready to run for the model."""

    def __init__(self, tools: Mapping[str, Tool], hooks_path: Path | None = None, rel_hooks: str = "",
                 timeout: float = TOOL_TIMEOUT) -> None:
        self.tools = dict(tools)
        self.hooks_path = hooks_path
        self.rel_hooks = rel_hooks
        self.timeout = timeout

    def specs(self) -> tuple[ToolSpec, ...]:
        return tuple(t.spec for t in self.tools.values())

    async def run(self, calls: Sequence[ToolCall]) -> list[ToolResult]:
        """Every call at once; results in the order of the calls."""
        return list(await asyncio.gather(*(self._one(call) for call in calls)))

    async def _one(self, call: ToolCall) -> ToolResult:
        tool = self.tools.get(call.name)
        if tool is None:
            return ToolResult(call, f"error: there is no tool named {call.name!r}; the tools are "
                              f"{', '.join(sorted(self.tools))}", False)
        try:
            raw = json.loads(call.arguments or "{}")
            arguments = tool.arguments.model_validate(raw)
        except (ValueError, ValidationError) as exc:
            return ToolResult(call, f"error: invalid arguments for {call.name}: {_short(exc)}", False)
        kwargs = {name: getattr(arguments, name) for name in type(arguments).model_fields}
        try:
            async with asyncio.timeout(self.timeout):
                if inspect.iscoroutinefunction(tool.fn):
                    value = await tool.fn(**kwargs)
                else:
                    value = await asyncio.to_thread(tool.fn, **kwargs)
        except TimeoutError:
            log.warning("%s: tool %s timed out after %gs", self.rel_hooks, call.name, self.timeout)
            return ToolResult(call, f"error: {call.name} timed out after {self.timeout:g}s", False)
        except Exception as exc:  # noqa: BLE001 - user code: its error goes back to the model
            where = hook_problem(exc, self.hooks_path or "", self.rel_hooks, f"tool {call.name} failed")
            log.warning("%s", where)
            return ToolResult(call, f"error: {type(exc).__name__}: {exc}", False)
        files = _files(value)
        if files:
            names = ", ".join(f.name for f in files)
            rest = [v for v in value if not isinstance(v, FileOut)] if isinstance(value, list) else []
            text = f"attached to the reply: {names}" + (f"; {_as_text(rest)}" if rest else "")
            return ToolResult(call, text, True, files)
        return ToolResult(call, _as_text(value), True)


def _files(value: Any) -> tuple[FileOut, ...]:
    if isinstance(value, FileOut):
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(v for v in value if isinstance(v, FileOut))
    return ()


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, BaseModel):
        text = value.model_dump_json()
    else:
        try:
            text = json.dumps(value, default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            text = str(value)
    return text if len(text) <= MAX_RESULT_CHARS else text[:MAX_RESULT_CHARS] + " [truncated]"


def _short(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{where}: {message}" for where, message in plain_errors(exc, "arguments"))
    return "not valid JSON"
