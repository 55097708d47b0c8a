"""What the Anthropic adapter sends, and a mid-stream `error` event."""

from __future__ import annotations

import pytest

from polybot.providers.base import ProviderError
from tests.fakes.anthropic_wire import FakeAnthropic, overloaded_event
from tests.fakes.wire import Reply
from tests.providers.conftest import Harness, chat, collect

KIND = "anthropic"


async def test_request_mapping(h: Harness) -> None:
    p = h.provider(headers={"X-Team": "bots"}, api_version="2023-06-01")
    await collect(p, chat(temperature=0.3, stop=("END",), params={"top_k": 5}))
    sent = h.fake.requests[-1]
    assert sent.json["system"] == "Be brief."
    assert sent.json["messages"] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}},
                                     {"type": "text", "text": "look"}]},
    ]
    assert (sent.json["max_tokens"], sent.json["temperature"], sent.json["stop_sequences"], sent.json["top_k"]) == (
        4096, 0.3, ["END"], 5)  # 4096: the default for a model the table does not know
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["x-team"] == "bots"


async def test_error_event_mid_stream_is_retryable(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakeAnthropic, "end_events", lambda self, reply, request: [overloaded_event()])
    h.fake.push(Reply(chunks=["partial"]))
    got: list[str] = []
    with pytest.raises(ProviderError) as info:
        async for chunk in h.provider().stream(chat(), __import__("polybot").Usage()):
            got.append(chunk)
    assert got == ["partial"]
    assert info.value.retryable
    assert info.value.message == "anthropic failed mid-stream: Overloaded"
