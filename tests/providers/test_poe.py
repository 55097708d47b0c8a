"""The poe adapter calling another bot over the real Poe protocol (fastapi_poe on both ends)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import fastapi_poe as fp
import pytest

from polybot.config import ProviderConfig
from polybot.providers.base import (
    ChatRequest,
    Chunk,
    DataOut,
    FileOut,
    Image,
    Message,
    Origin,
    ProviderError,
    Replace,
    Usage,
)
from polybot.providers.poe import PoeProvider
from tests.fakes.poe_wire import TARGET_KEY, RunningPoe, running_poe_bot


@pytest.fixture
def target() -> Iterator[RunningPoe]:
    with running_poe_bot() as t:
        yield t


@pytest.fixture
async def make(target: RunningPoe) -> AsyncIterator[list[PoeProvider]]:
    made: list[PoeProvider] = []
    yield made
    for p in made:
        await p.aclose()


def provider(made: list[PoeProvider], target: RunningPoe, timeout: float = 5) -> PoeProvider:
    made.append(PoeProvider("poe", ProviderConfig(kind="poe", api_base=target.base_url, timeout=timeout)))
    return made[-1]


def chat(key: str | None = TARGET_KEY) -> ChatRequest:
    return ChatRequest(model="TargetBot", system="Be brief.", temperature=0.4,
                       messages=(Message("user", "hi"), Message("assistant", "hello"),
                                 Message("user", "see", (Image("https://x/cat.png", "image/png"),))),
                       origin=Origin("u-42", "c-42", "m-42", "meta-42", access_key=key,
                                     access_key_env="POE_ACCESS_KEY_CALLER"))


async def collect(p: PoeProvider, req: ChatRequest) -> list[Chunk]:
    return [c async for c in p.stream(req, Usage())]


async def test_streams_and_maps_the_conversation(make: list[PoeProvider], target: RunningPoe) -> None:
    assert await collect(provider(make, target), chat()) == ["Poe", " says", " hi"]
    got = target.bot.received[-1]
    assert [(m.role, m.content) for m in got.query] == [("system", "Be brief."), ("user", "hi"), ("bot", "hello"),
                                                        ("user", "see")]
    assert got.query[-1].attachments[0].url == "https://x/cat.png"
    assert got.temperature == 0.4
    # The called bot sees the conversation being answered, not a placeholder identity.
    assert (got.user_id, got.conversation_id, got.message_id, got.metadata) == ("u-42", "c-42", "m-42", "meta-42")


async def test_files_json_and_replace_response_are_relayed(make: list[PoeProvider], target: RunningPoe) -> None:
    from sse_starlette import ServerSentEvent

    target.bot.script.extra = [
        fp.PartialResponse(text="", attachment=fp.Attachment(url="https://cdn/x.png", content_type="image/png",
                                                             name="x.png")),
        ServerSentEvent(data='{"k": 1}', event="json"),
        fp.PartialResponse(text="Final answer", is_replace_response=True),
    ]
    got = await collect(provider(make, target), chat())
    assert got == ["Poe", " says", " hi", FileOut("https://cdn/x.png", "image/png", "x.png"), DataOut({"k": 1}),
                   Replace("Final answer")]


async def test_wrong_key_is_a_configuration_error(make: list[PoeProvider], target: RunningPoe) -> None:
    with pytest.raises(ProviderError) as info:
        await collect(provider(make, target), chat(key="w" * 32))
    assert not info.value.retryable
    assert "check POE_ACCESS_KEY_CALLER" in info.value.message
    assert "w" * 32 not in info.value.message


async def test_missing_key_names_the_variable(make: list[PoeProvider], target: RunningPoe) -> None:
    with pytest.raises(ProviderError) as info:
        await collect(provider(make, target), chat(key=None))
    assert info.value.message.startswith("POE_ACCESS_KEY_CALLER is not set")
    assert target.bot.received == []


@pytest.mark.parametrize("allow_retry", [True, False])
async def test_error_events_keep_their_retry_flag(make: list[PoeProvider], target: RunningPoe,
                                                  allow_retry: bool) -> None:
    target.bot.script.chunks = []
    target.bot.script.error = "target is sad"
    target.bot.script.allow_retry = allow_retry
    with pytest.raises(ProviderError) as info:
        await collect(provider(make, target), chat())
    assert info.value.retryable is allow_retry
    assert "target is sad" in info.value.message


async def test_hang_is_bounded(make: list[PoeProvider], target: RunningPoe) -> None:
    target.bot.script.hang = True
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await collect(provider(make, target, timeout=0.5), chat())
    assert info.value.retryable
    assert time.monotonic() - started < 3
