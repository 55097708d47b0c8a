"""Retries, failover, replace_response, timeouts and the reply log line (SPEC §4).

The adapter here is an outside one, registered through `polybot.register_kind` the way a plugin
would be; the thing under test is polybot's reliability layer, which is not faked. The same
behaviour through the real SDKs is covered in tests/providers/ and tests/e2e/.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import fastapi_poe as fp
import pytest

from polybot import ChatRequest, Provider, ProviderError, Usage, register_kind
from polybot.config import ProviderConfig
from polybot.providers.base import Message
from polybot.reliability import ProviderPool, Step, stream_chain


@dataclass
class Script:
    """What the scripted provider does per call: a list of chunks, or an exception / 'hang'."""

    calls: list[object] = field(default_factory=list)
    seen: int = 0
    closed: int = 0


SCRIPTS: dict[str, Script] = {}


class Scripted(Provider):
    async def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[str]:
        script = SCRIPTS[self.name]
        plan = script.calls[min(script.seen, len(script.calls) - 1)]
        script.seen += 1
        try:
            for item in plan if isinstance(plan, list) else [plan]:
                if item == "hang":
                    await asyncio.sleep(60)
                elif isinstance(item, Exception):
                    raise item
                else:
                    yield str(item)
            usage.input_tokens, usage.output_tokens = 5, 3
        finally:
            script.closed += 1


@pytest.fixture(autouse=True, scope="module")
def scripted_kind() -> Iterator[None]:
    register_kind("scripted", Scripted)
    yield
    from polybot import providers

    del providers._KINDS["scripted"]  # keep the registry as other test modules expect it


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real schedule (doubling, jittered, capped), at a tenth of the pace."""
    monkeypatch.setattr("polybot.reliability.BACKOFF_BASE", 0.05)


def pool(**scripts: list[object]) -> ProviderPool:
    configs = {}
    for name, calls in scripts.items():
        SCRIPTS[name] = Script(calls)
        configs[name] = ProviderConfig(kind="scripted", timeout=0.5, max_retries=2)  # type: ignore[arg-type]
    return ProviderPool(configs)


def chain(*names: str) -> list[Step]:
    return [Step(n, ChatRequest(model=f"m-{n}", system="s", messages=(Message("user", "hi"),))) for n in names]


async def run(p: ProviderPool, *names: str) -> list[fp.PartialResponse | fp.ErrorResponse]:
    return [e async for e in stream_chain("Bot", chain(*names), p)]


def text(events: list[fp.PartialResponse | fp.ErrorResponse]) -> str:
    out = ""
    for e in events:
        if isinstance(e, fp.ErrorResponse):
            continue
        out = e.text if e.is_replace_response else out + e.text
    return out


def transient(retry_after: float | None = None) -> ProviderError:
    return ProviderError("p is unavailable (HTTP 503)", retryable=True, retry_after=retry_after, status=503)


async def test_retries_before_first_token_honouring_retry_after() -> None:
    p = pool(a=[transient(retry_after=0.3), ["whole", " reply"]])
    started = time.monotonic()
    events = await run(p, "a")
    assert text(events) == "whole reply"
    assert not any(isinstance(e, fp.ErrorResponse) for e in events)
    assert SCRIPTS["a"].seen == 2
    assert time.monotonic() - started >= 0.3


async def test_retry_after_beyond_the_cap_fails_over_at_once() -> None:
    p = pool(a=[transient(retry_after=3600)], b=[["from b"]])
    started = time.monotonic()
    assert text(await run(p, "a", "b")) == "from b"
    assert SCRIPTS["a"].seen == 1
    assert time.monotonic() - started < 1


async def test_exhausted_retries_fail_over_to_the_fallback() -> None:
    p = pool(a=[transient()], b=[["fallback", " answer"]])
    events = await run(p, "a", "b")
    assert text(events) == "fallback answer"
    assert SCRIPTS["a"].seen == 3  # 1 + max_retries


async def test_config_failure_is_not_retried_and_says_what_to_fix() -> None:
    p = pool(a=[ProviderError("OPENAI_API_KEY is not set: export it", retryable=False)])
    events = await run(p, "a")
    assert SCRIPTS["a"].seen == 1
    assert len(events) == 1 and isinstance(events[0], fp.ErrorResponse)
    assert events[0].text == "OPENAI_API_KEY is not set: export it"
    assert events[0].allow_retry is False


async def test_failure_after_text_fails_over_with_replace_response() -> None:
    p = pool(a=[["half of ", transient()]], b=[["a whole", " other reply"]])
    events = await run(p, "a", "b")
    assert [type(e).__name__ for e in events] == ["PartialResponse"] * 3
    assert events[1].is_replace_response is True  # type: ignore[union-attr]
    assert text(events) == "a whole other reply"
    assert SCRIPTS["a"].seen == 1  # never retried after text: it would repeat it


async def test_fallback_may_retry_before_its_first_token_after_text_was_sent() -> None:
    p = pool(a=[["half", transient()]], b=[transient(), ["whole", " reply"]])
    events = await run(p, "a", "b")
    assert text(events) == "whole reply"
    assert SCRIPTS["b"].seen == 2
    assert [e.is_replace_response for e in events] == [False, True, False]  # type: ignore[union-attr]


async def test_failure_after_text_without_fallback_ends_in_retryable_error() -> None:
    p = pool(a=[["half", transient()]])
    events = await run(p, "a")
    assert isinstance(events[-1], fp.ErrorResponse)
    assert events[-1].allow_retry is True
    assert events[-1].text.startswith("The reply was cut off: ")


async def test_hang_before_first_token_is_bounded_and_retried() -> None:
    p = pool(a=["hang", ["late but whole"]])
    started = time.monotonic()
    assert text(await run(p, "a")) == "late but whole"
    assert time.monotonic() - started < 2.5
    assert SCRIPTS["a"].closed == 2  # the hung stream was closed


async def test_stall_mid_stream_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("polybot.reliability.GAP_CAP", 0.2)
    p = pool(a=[["start", "hang"]])
    started = time.monotonic()
    events = await run(p, "a")
    assert time.monotonic() - started < 2
    assert isinstance(events[-1], fp.ErrorResponse)
    assert events[-1].text == "The reply was cut off: a stalled mid-reply for 0.2s"


async def test_whole_reply_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    p = pool(a=[["slow"] + ["hang"]])
    SCRIPTS["a"].calls = [["a", "b"] * 2 + ["hang"]]
    events = await run(p, "a")
    assert events[-1].text == "The reply was cut off: a did not finish within 0.5s"  # type: ignore[union-attr]


async def test_client_disconnect_closes_the_provider_stream() -> None:
    p = pool(a=[["one", "hang"]])
    gen = stream_chain("Bot", chain("a"), p)
    first = await anext(gen)
    assert first.text == "one"
    await gen.aclose()  # what the ASGI server does when Poe goes away
    assert SCRIPTS["a"].closed == 1


async def test_one_log_line_per_reply_without_content(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="polybot.reply")
    p = pool(a=[transient()], b=[["secret user content"]])
    await run(p, "a", "b")
    lines = [json.loads(r.message) for r in caplog.records if r.name == "polybot.reply"]
    assert len(lines) == 1
    line = lines[0]
    assert {k: line[k] for k in ("bot", "provider", "model", "attempts", "fallback", "outcome",
                                 "input_tokens", "output_tokens")} == {
        "bot": "Bot", "provider": "b", "model": "m-b", "attempts": 4, "fallback": True, "outcome": "ok",
        "input_tokens": 5, "output_tokens": 3}
    assert isinstance(line["ttft_ms"], int) and isinstance(line["duration_ms"], int)
    assert "secret user content" not in caplog.text


async def test_unexpected_adapter_exception_never_reaches_poe_raw() -> None:
    p = pool(a=[RuntimeError("internal detail sk-secret")])
    events = await run(p, "a")
    assert isinstance(events[-1], fp.ErrorResponse)
    assert "sk-secret" not in events[-1].text
    assert events[-1].text == "a failed unexpectedly (RuntimeError)"
