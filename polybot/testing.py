"""Test bots with pytest: build the project, ask a bot, look at the reply and its events.

```python
from polybot.testing import load_project

def test_echo_repeats() -> None:
    project = load_project()            # the project around the current folder; or pass its path
    reply = project.ask("Echo", "hello")
    assert reply.ok and reply.text == "hello"
```

`load_project` compiles every bot the way `polybot build` does (a problem fails the test with
every located error), and `ask` sends one message through the same code path as a Poe query,
so hooks, templates, fallbacks and error events behave exactly as they do when served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastapi_poe as fp

from polybot.conversation import query_request
from polybot.manifest import Manifest
from polybot.runtime import Runtime, chosen_params

__all__ = ["Project", "Reply", "load_project"]


@dataclass(slots=True)
class Reply:
    """One reply: its text as the user sees it, and every event the bot sent."""

    text: str
    events: list[Any] = field(default_factory=list)

    @property
    def error(self) -> fp.ErrorResponse | None:
        """The error event that ended the reply, if any."""
        return next((e for e in self.events if isinstance(e, fp.ErrorResponse)), None)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def suggested_replies(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, fp.PartialResponse) and e.is_suggested_reply]


class Project:
    """A compiled project whose bots can be asked questions in tests."""

    def __init__(self, root: Path, manifest: Manifest, runtimes: Iterable[Runtime]) -> None:
        self.root = root
        self.manifest = manifest
        self.runtimes = {r.spec.name: r for r in runtimes}

    @property
    def bots(self) -> list[str]:
        """Every bot's name, sorted."""
        return sorted(self.runtimes)

    def runtime(self, bot: str) -> Runtime:
        try:
            return self.runtimes[bot]
        except KeyError:
            from polybot.errors import did_you_mean

            raise KeyError(f"no bot named {bot!r}{did_you_mean(bot, self.runtimes)}; "
                           f"this project has {', '.join(self.bots) or 'none'}") from None

    def ask(self, bot: str, message: str, *, history: Iterable[tuple[str, str]] = (),
            params: Mapping[str, Any] | None = None) -> Reply:
        """Send `message` (after `history`, pairs of ("user" | "bot", text)) and collect the reply."""
        return asyncio.run(self._ask_then_close(bot, message, history, params))

    async def ask_async(self, bot: str, message: str, *, history: Iterable[tuple[str, str]] = (),
                        params: Mapping[str, Any] | None = None) -> Reply:
        """`ask` for async tests (the provider clients stay open until `aclose`)."""
        runtime = self.runtime(bot)
        reply = Reply("")
        async for event in runtime.respond(query(message, history, params)):
            reply.events.append(event)
            if isinstance(event, fp.PartialResponse) and not event.is_suggested_reply:
                reply.text = event.text if event.is_replace_response else reply.text + event.text
        return reply

    def prompt(self, bot: str, message: str = "Hello", *, history: Iterable[tuple[str, str]] = (),
               params: Mapping[str, Any] | None = None) -> str:
        """The system prompt `bot` renders for this conversation (no provider call)."""
        runtime = self.runtime(bot)
        request = query(message, history, params)
        return runtime.render_prompt(request, chosen_params(runtime.spec, request))

    async def aclose(self) -> None:
        """Close the provider clients `ask_async` opened."""
        pools = {id(r.pool): r.pool for r in self.runtimes.values()}
        for pool in pools.values():
            await pool.aclose()

    async def _ask_then_close(self, bot: str, message: str, history: Iterable[tuple[str, str]],
                              params: Mapping[str, Any] | None) -> Reply:
        try:
            return await self.ask_async(bot, message, history=history, params=params)
        finally:
            await self.aclose()  # each `ask` runs on its own event loop


def query(message: str, history: Iterable[tuple[str, str]] = (),
          params: Mapping[str, Any] | None = None) -> fp.QueryRequest:
    """The Poe query a user's `message` after `history` makes."""
    turns = [fp.ProtocolMessage(role="bot" if role == "bot" else "user", content=text) for role, text in history]
    turns.append(fp.ProtocolMessage(role="user", content=message, parameters=dict(params or {})))
    return query_request(turns, user_id="polybot-test", conversation_id="polybot-test")


def load_project(root: str | Path | None = None) -> Project:
    """Compile the project at `root` (default: the one around the current folder), reading its
    `.env` like every command; raises PolybotError listing every located problem."""
    from polybot.compiler import Compiler
    from polybot.env import load_env
    from polybot.root import project_root
    from polybot.runtime import runtimes_from_manifest

    folder = project_root(Path(root) if root is not None else None)
    load_env(folder)
    manifest = Compiler(folder).manifest()
    return Project(folder, manifest, runtimes_from_manifest(manifest, folder))
