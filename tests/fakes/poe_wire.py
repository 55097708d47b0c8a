"""A fake target Poe bot, served by fastapi_poe itself: the real Poe protocol on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import fastapi_poe as fp

from tests.fakes.server import serve_in_thread

TARGET_KEY = "t" * 32


@dataclass
class PoeScript:
    chunks: list[str] = field(default_factory=lambda: ["Poe", " says", " hi"])
    error: str | None = None  # text of an error event
    allow_retry: bool = True
    hang: bool = False
    #: Events sent after the chunks: files, `json` data, replace_response (as fastapi_poe sends them).
    extra: list[object] = field(default_factory=list)


class TargetBot(fp.PoeBot):
    def __init__(self, name: str) -> None:
        super().__init__(path=f"/{name}", access_key=TARGET_KEY, bot_name=None)
        self.script = PoeScript()
        self.received: list[fp.QueryRequest] = []

    async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[fp.PartialResponse]:
        self.received.append(request)
        if self.script.hang:
            await asyncio.sleep(30)
        for chunk in self.script.chunks:
            yield fp.PartialResponse(text=chunk)
        for event in self.script.extra:
            yield event  # type: ignore[misc]
        if self.script.error is not None:
            yield fp.ErrorResponse(text=self.script.error, allow_retry=self.script.allow_retry)


@dataclass
class RunningPoe:
    base_url: str  # ends with "/", as fastapi_poe's client builds f"{base_url}{bot_name}"
    bot: TargetBot


@contextmanager
def running_poe_bot(name: str = "TargetBot") -> Iterator[RunningPoe]:
    bot = TargetBot(name)
    with serve_in_thread(fp.make_app(bot)) as url:
        yield RunningPoe(url + "/", bot)
