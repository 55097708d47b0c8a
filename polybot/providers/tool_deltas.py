"""Tool calls assembled from the `tool_calls` deltas of a Chat Completions stream.

OpenAI sends each call's `index` and `id` in its first delta and the JSON arguments in pieces
after it. Compatible servers differ, and the shape of each delta decides, not the server's name:
`index` may be missing (a single call, or every call whole in one delta: older Ollama, some
proxies), `id` may be missing (vLLM) or a number, and `arguments` may arrive whole.
"""

from __future__ import annotations

import json
from typing import Any

from polybot.providers.base import ToolCall


class ToolCallDeltas:
    """Each call as [id, name, arguments], in the order the calls started."""

    __slots__ = ("_by_index", "_calls")

    def __init__(self) -> None:
        self._calls: list[list[str]] = []
        self._by_index: dict[int, list[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, delta: Any) -> None:
        """One element of a delta's `tool_calls`; TypeError when it is not a call's shape."""
        if not isinstance(delta, dict):
            raise TypeError(f"a tool call delta must be an object, got {type(delta).__name__}")
        function = delta.get("function") or {}
        if not isinstance(function, dict):
            raise TypeError(f"a tool call's function must be an object, got {type(function).__name__}")
        raw_id = delta.get("id")
        ident = "" if raw_id is None else str(raw_id)
        name = function.get("name")
        name = name if isinstance(name, str) else ""
        index = delta.get("index")
        if isinstance(index, int) and not isinstance(index, bool):
            entry = self._by_index.get(index)
            if entry is None:
                entry = self._by_index[index] = ["", "", ""]
                self._calls.append(entry)
        else:
            last = self._calls[-1] if self._calls else None
            # Without an index, a delta starts a new call when it carries another call's id, or a
            # name while the last call already has one (and is not named by the same id).
            if (last is None or (ident and ident != last[0])
                    or (name and last[1] and not (ident and ident == last[0]))):
                last = ["", "", ""]
                self._calls.append(last)
            entry = last
        if ident:
            entry[0] = ident
        if name:
            entry[1] = name
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            entry[2] += arguments
        elif arguments is not None:  # an object instead of its JSON text
            entry[2] += json.dumps(arguments)

    def complete(self) -> bool:
        """Every call has a name and arguments that are whole JSON (or none at all)."""
        for _, name, arguments in self._calls:
            if not name:
                return False
            if arguments.strip():
                try:
                    json.loads(arguments)
                except ValueError:
                    return False
        return True

    def tool_calls(self) -> list[ToolCall]:
        """The calls, each with an id (`call_<n>` where the server sent none)."""
        return [ToolCall(ident or f"call_{n}", name, arguments)
                for n, (ident, name, arguments) in enumerate(self._calls)]
