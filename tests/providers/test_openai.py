"""The OpenAI adapter driving the real `openai` SDK against a fake chat-completions server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.requests import Request

from polybot.providers.base import ChatRequest, Provider, ProviderError, Usage
from tests.fakes.openai_wire import FakeOpenAI
from tests.fakes.wire import Reply, running, sse
from tests.providers.conftest import KEY, KEY_ENV, Harness, Kind, chat, collect

KIND = "openai"


@asynccontextmanager
async def serving(fake: FakeOpenAI) -> AsyncIterator[Harness]:
    """Like the `h` fixture, for a FakeOpenAI variant."""
    with running(fake) as started:
        harness = Harness(Kind("openai", FakeOpenAI, "/v1"), started)
        try:
            yield harness
        finally:
            for p in harness.created:
                await p.aclose()


async def stream_until_error(p: Provider, req: ChatRequest | None = None) -> tuple[list[str], ProviderError]:
    got: list[str] = []
    with pytest.raises(ProviderError) as info:
        async for chunk in p.stream(req or chat(), Usage()):
            got.append(chunk)
    return got, info.value


def last_query(h: Harness) -> dict[str, str]:
    assert isinstance(h.fake, FakeOpenAI)
    return h.fake.queries[-1]


# --- streaming -----------------------------------------------------------------------------


async def test_streams_text_in_order_and_fills_usage(h: Harness) -> None:
    h.fake.push(Reply(chunks=["Hel", "lo", " there"], usage=(12, 3)))
    usage = Usage()
    # The fake's leading role chunk has empty content: it must not become a chunk.
    assert await collect(h.provider(), usage=usage) == ["Hel", "lo", " there"]
    assert (usage.input_tokens, usage.output_tokens) == (12, 3)


async def test_one_client_is_reused_until_closed(h: Harness) -> None:
    p = h.provider()
    await collect(p)
    client = p._client  # type: ignore[attr-defined]
    await collect(p)
    assert client is not None and p._client is client  # type: ignore[attr-defined]
    await p.aclose()
    assert p._client is None  # type: ignore[attr-defined]
    assert await collect(p) == ["Hello", " world"]
    assert p._client is not None and p._client is not client  # type: ignore[attr-defined]


async def test_consumer_stopping_early_leaves_the_client_usable(h: Harness) -> None:
    p = h.provider()
    h.fake.push(Reply(chunks=["a", "b", "c"], delay=0.05))
    stream = p.stream(chat(), Usage())
    assert await anext(stream) == "a"
    await stream.aclose()  # type: ignore[attr-defined]
    assert await collect(p) == ["Hello", " world"]


# --- what is sent --------------------------------------------------------------------------


async def test_request_mapping(h: Harness) -> None:
    p = h.provider(headers={"X-Team": "bots"})
    await collect(p, chat(temperature=0.3, max_tokens=50, stop=("END", "STOP"), params={"top_p": 0.9}))
    sent = h.fake.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json == {
        "model": "model-x",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": [{"type": "text", "text": "look"},
                                         {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.3,
        "max_tokens": 50,
        "stop": ["END", "STOP"],
        "top_p": 0.9,
    }
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["x-team"] == "bots"
    assert "api-key" not in sent.headers
    assert last_query(h) == {}


async def test_unset_options_are_not_sent(h: Harness) -> None:
    await collect(h.provider(), chat(system=""))
    body = h.fake.requests[-1].json
    assert sorted(body) == ["messages", "model", "stream", "stream_options"]
    assert body["messages"][0] == {"role": "user", "content": "hi"}


async def test_params_are_merged_last_and_may_override(h: Harness) -> None:
    usage = Usage()
    req = chat(temperature=0.3, params={"temperature": 1.5, "stream_options": {"include_usage": False},
                                        "seed": 7, "response_format": {"type": "text"}})
    assert await collect(h.provider(), req, usage) == ["Hello", " world"]
    body = h.fake.requests[-1].json
    assert (body["temperature"], body["stream_options"], body["seed"], body["response_format"]) == (
        1.5, {"include_usage": False}, 7, {"type": "text"})
    assert (usage.input_tokens, usage.output_tokens) == (None, None)  # no usage chunk was asked for


async def test_api_version_goes_in_the_query_with_an_api_key_header(h: Harness) -> None:
    await collect(h.provider(api_version="2024-06-01"))
    assert last_query(h) == {"api-version": "2024-06-01"}
    assert h.fake.requests[-1].headers["api-key"] == KEY


async def test_provider_without_key_env_needs_no_variable(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    assert await collect(h.provider(api_key_env=None)) == ["Hello", " world"]
    assert h.fake.requests[-1].headers["authorization"] == "Bearer unused"


async def test_missing_key_fails_before_any_request(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    p = h.provider()
    with pytest.raises(ProviderError) as info:
        await collect(p)
    assert info.value.message == (f"{KEY_ENV} is not set: run `polybot keys set {KEY_ENV}` (or export it) "
                                  "to use provider 'openai'")
    assert not info.value.retryable
    assert h.fake.requests == [] and p._client is None  # type: ignore[attr-defined]


# --- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("reply,message,retryable,retry_after", [
    (Reply(fault="429", retry_after=1.5), "openai is unavailable (HTTP 429): fake error 429", True, 1.5),
    (Reply(fault="500"), "openai is unavailable (HTTP 500): fake error 500", True, None),
    (Reply(fault="529", retry_after=2), "openai is unavailable (HTTP 529): fake error 529", True, 2.0),
    (Reply(fault="401"), f"openai rejected the API key (HTTP 401); check {KEY_ENV}", False, None),
    (Reply(fault="404"), "openai does not know model 'model-x' (HTTP 404): The model `model-x` does not exist "
                         "or you do not have access to it.; fix `model` in bot.toml", False, None),
], ids=["429", "500", "529", "401", "404"])
async def test_status_errors(h: Harness, reply: Reply, message: str, retryable: bool,
                             retry_after: float | None) -> None:
    h.fake.push(reply)
    _, err = await stream_until_error(h.provider())
    assert (err.message, err.retryable, err.retry_after, err.status) == (
        message, retryable, retry_after, int(reply.fault or 0))
    assert KEY not in err.message
    assert len(h.fake.requests) == 1  # the SDK's own retries are off: polybot retries itself


async def test_hang_before_first_byte_is_bounded(h: Harness) -> None:
    h.fake.push(Reply(fault="hang"))
    started = time.monotonic()
    got, err = await stream_until_error(h.provider(timeout=0.5))
    assert time.monotonic() - started < 2
    assert (got, err.message, err.retryable) == ([], "openai timed out", True)


async def test_stall_mid_stream_is_bounded(h: Harness) -> None:
    h.fake.push(Reply(chunks=["one", "two"], fault="stall", fault_after=1))
    started = time.monotonic()
    got, err = await stream_until_error(h.provider(timeout=0.5))
    assert time.monotonic() - started < 2
    assert (got, err.message, err.retryable) == (["one"], "openai timed out", True)


async def test_drop_mid_stream_after_first_chunk(h: Harness) -> None:
    h.fake.push(Reply(chunks=["one", "two", "three"], fault="drop", fault_after=1))
    got, err = await stream_until_error(h.provider())
    assert (got, err.message, err.retryable) == (["one"], "openai connection failed: RemoteProtocolError", True)


async def test_malformed_event(h: Harness) -> None:
    h.fake.push(Reply(chunks=["one", "two"], fault="malformed", fault_after=1))
    got, err = await stream_until_error(h.provider())
    assert (got, err.message, err.retryable) == (["one"], "openai sent a malformed stream", True)


class _ErrorEvent(FakeOpenAI):
    """Streams the text, then an {"error": ...} event instead of finishing (as proxies do)."""

    def end_events(self, reply: Reply, request: Request) -> list[bytes]:
        return [sse({"error": {"message": "upstream overloaded", "type": "server_error"}})]


class _CutShort(FakeOpenAI):
    """Streams the text, then closes the body cleanly: no finish_reason, no [DONE]."""

    def end_events(self, reply: Reply, request: Request) -> list[bytes]:
        return []


class _EchoesKey(FakeOpenAI):
    """An error body that quotes the caller's key back."""

    def error_body(self, status: int) -> Any:
        key = self.requests[-1].headers["authorization"].removeprefix("Bearer ")
        return {"error": {"message": f"Incorrect API key provided: {key}.", "type": "x", "code": None}}


async def test_error_event_mid_stream() -> None:
    async with serving(_ErrorEvent()) as harness:
        got, err = await stream_until_error(harness.provider())
    assert (got, err.message, err.retryable) == (["Hello", " world"], "openai failed mid-stream: upstream overloaded",
                                                 True)


async def test_stream_cut_short_is_an_error_not_a_short_reply() -> None:
    async with serving(_CutShort()) as harness:
        got, err = await stream_until_error(harness.provider())
    assert (got, err.message, err.retryable) == (
        ["Hello", " world"], "openai ended the stream before finishing the reply", True)


async def test_a_key_quoted_in_an_error_body_is_masked() -> None:
    async with serving(_EchoesKey(Reply(fault="429"))) as harness:
        _, err = await stream_until_error(harness.provider())
    assert err.message == "openai is unavailable (HTTP 429): Incorrect API key provided: ***."


def test_a_configured_proxy_gets_httpx_own_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lean transport (issue #16) speaks to origins directly; with a proxy, httpx's transport
    (which honours HTTPS_PROXY and friends) is used instead."""
    from polybot.providers import openai as adapter
    from polybot.providers.pool import LeanTransport

    sdk = adapter._sdk()
    for name in adapter.PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("POLYBOT_HTTP_TRANSPORT", raising=False)
    assert isinstance(adapter._http_client(sdk)._transport, LeanTransport)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert not isinstance(adapter._http_client(sdk)._transport, LeanTransport)
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("POLYBOT_HTTP_TRANSPORT", "httpx")
    assert not isinstance(adapter._http_client(sdk)._transport, LeanTransport)
