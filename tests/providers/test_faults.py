"""Every SDK adapter against its fake wire protocol: streaming, usage, and each fault's outcome."""

from __future__ import annotations

import time

import pytest

from polybot.providers.base import ProviderError, Usage
from tests.fakes.wire import Reply
from tests.providers.conftest import KEY, KEY_ENV, Harness, chat, collect


async def test_streams_text_in_order_and_reports_usage(harness: Harness) -> None:
    harness.fake.push(Reply(chunks=["Hel", "lo", " there"], usage=(12, 3)))
    usage = Usage()
    assert await collect(harness.provider(), usage=usage) == ["Hel", "lo", " there"]
    assert (usage.input_tokens, usage.output_tokens) == (12, 3)
    assert harness.kind.key_sent(harness.fake.requests[-1].headers) == KEY


async def test_one_client_is_reused(harness: Harness) -> None:
    p = harness.provider()
    await collect(p)
    client = p._client  # type: ignore[attr-defined]
    await collect(p)
    assert client is not None and p._client is client  # type: ignore[attr-defined]


@pytest.mark.parametrize("fault,retryable", [("429", True), ("500", True), ("529", True), ("401", False),
                                             ("404", False)])
async def test_status_errors(harness: Harness, fault: str, retryable: bool) -> None:
    harness.fake.push(Reply(fault=fault, retry_after=1.5))  # type: ignore[arg-type]
    with pytest.raises(ProviderError) as info:
        await collect(harness.provider())
    err = info.value
    assert (err.retryable, err.status) == (retryable, int(fault))
    assert KEY not in err.message
    kind = harness.kind.kind
    if fault == "429":
        assert err.retry_after == 1.5
    if fault == "401":
        assert err.message == f"{kind} rejected the API key (HTTP 401); check {KEY_ENV}"
    if fault == "404":
        assert err.message.startswith(f"{kind} does not know model 'model-x' (HTTP 404)")


async def test_hang_before_first_byte_is_bounded(harness: Harness) -> None:
    harness.fake.push(Reply(chunks=["warm"]))
    assert await collect(harness.provider()) == ["warm"]  # the SDK's import (1 s or more) is not timed below
    harness.fake.push(Reply(fault="hang"))
    started = time.monotonic()
    with pytest.raises(ProviderError) as info:
        await collect(harness.provider(timeout=0.5))
    assert info.value.retryable
    assert time.monotonic() - started < 3


async def test_drop_mid_stream_after_first_chunk(harness: Harness) -> None:
    harness.fake.push(Reply(chunks=["one", "two", "three"], fault="drop", fault_after=1))
    got: list[str] = []
    with pytest.raises(ProviderError) as info:
        async for chunk in harness.provider().stream(chat(), Usage()):
            got.append(chunk)
    assert got == ["one"]
    assert info.value.retryable


async def test_malformed_event(harness: Harness) -> None:
    harness.fake.push(Reply(chunks=["one", "two"], fault="malformed", fault_after=1))
    with pytest.raises(ProviderError) as info:
        await collect(harness.provider())
    assert info.value.retryable
    assert KEY not in info.value.message


async def test_missing_key_fails_before_any_request(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ProviderError) as info:
        await collect(harness.provider())
    assert not info.value.retryable
    assert info.value.message.startswith(f"{KEY_ENV} is not set")
    assert harness.fake.requests == []
