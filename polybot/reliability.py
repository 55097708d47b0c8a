"""From a chain of (provider, request) to Poe events: retries, timeouts, failover, one log line.

The guarantees of SPEC §4: transient failures are retried before the first token with backoff that
honours Retry-After, then the next `[[fallback]]` is tried; after text was sent a failover replaces
the partial reply (`replace_response`) or the reply ends in an error event with allow_retry=true;
configuration failures end with allow_retry=false and the message says what to fix; no stream
hangs: first token, idle gap and whole reply are each bounded (providers.toml `timeout`, SPEC §1).
The outcomes a reply ends with (truncated, refused, tool_call) and the log line that records them
are SPEC §6.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, get_args

import fastapi_poe as fp
from fastapi_poe.types import ErrorType

from polybot.config import ProviderConfig
from polybot.providers import create_provider
from polybot.providers.base import (
    ChatRequest,
    Chunk,
    DataOut,
    FileOut,
    Message,
    Provider,
    ProviderError,
    Refused,
    Replace,
    Thinking,
    ToolCall,
    Usage,
)
from polybot.tools import ToolBox

log = logging.getLogger("polybot.reply")

#: Backoff: BASE * 2**attempt seconds, jittered, at most CAP; a Retry-After beyond MAX_WAIT fails over.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
MAX_WAIT = 30.0
#: First token and idle gaps are bounded by min(timeout, GAP_CAP).
GAP_CAP = 30.0

#: A relayed `json` event travels as a PartialResponse with `data` and no text (bot.py sends it).
Event = fp.PartialResponse | fp.ErrorResponse

#: fastapi_poe's ErrorType values.
POE_ERROR_TYPES = frozenset(get_args(ErrorType))

#: Message text (the user's last message, the reply): never in the record or its JSON line; it
#: travels beside it (`emit_reply(content=...)`) to the reply store, which keeps it only where
#: `[logs] content` allows.
CONTENT_KEYS = frozenset({"prompt", "response"})

#: Shown after a reply the provider cut at its token limit (SPEC §6 `truncated`).
TRUNCATED_NOTICE = "\n\n_(This reply was cut short: it reached the model's output limit.)_"


class ProviderPool:
    """One adapter instance (and SDK client) per provider, created on first use and reused."""

    def __init__(self, configs: dict[str, ProviderConfig]) -> None:
        self.configs = dict(configs)
        self._providers: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        provider = self._providers.get(name)
        if provider is None or provider.config != self.configs[name]:
            provider = self._providers[name] = create_provider(name, self.configs[name])
        return provider

    def update(self, configs: dict[str, ProviderConfig]) -> None:
        """Adopt new provider definitions (dev reload); changed ones get a new client on next use."""
        self.configs = dict(configs)

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()
        self._providers.clear()


@dataclass(frozen=True, slots=True)
class Step:
    """One link of the failover chain."""

    provider: str
    request: ChatRequest


@dataclass(slots=True)
class _Failure:
    message: str
    retryable: bool
    refused: bool = False
    error_type: str | None = None
    status: int | None = None
    retry_after: float | None = None


class _Quote:
    """Streams reasoning as a Markdown blockquote: every line starts with `>`."""

    def __init__(self) -> None:
        self.open = False  # inside the quote
        self.at_line_start = True

    def thinking(self, text: str) -> str:
        out = []
        for piece in text.splitlines(keepends=True):
            if self.at_line_start:
                out.append("> ")
            out.append(piece)
            self.at_line_start = piece.endswith("\n")
        self.open = True
        return "".join(out)

    def close(self) -> str:
        """Text that ends the quote before the answer starts."""
        if not self.open:
            return ""
        self.open = False
        self.at_line_start = True
        return "\n\n"


@dataclass(slots=True)
class ReplyInfo:
    """How a reply went, for callers that report it in their own protocol (the OpenAI endpoint)."""

    outcome: str = "error"  # ok | truncated | refused | tool_call | error | limited (polybot/limits.py)
    usage: Usage = field(default_factory=Usage)
    provider: str = ""
    model: str = ""
    tool_rounds: int = 0
    #: Of the last failure (a reply that ended in an error): the provider's HTTP status, Retry-After.
    status: int | None = None
    retry_after: float | None = None
    #: Of a reply polybot refused itself (a limit): the OpenAI error code to answer with.
    code: str | None = None
    #: What the reply log line says (for the playground's trace): every provider call made, whether
    #: a fallback answered, time to first token and to the end, and why each failed call failed.
    attempts: int = 0
    fallback: bool = False
    ttft_ms: int | None = None
    duration_ms: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Tools:
    """The tools of one reply: the bot's own (run here) and the caller's (returned to it)."""

    box: ToolBox | None = None
    remote: frozenset[str] = frozenset()
    max_rounds: int = 5


class ToolActivity(fp.PartialResponse):
    """A tool call and its result, for the playground and `polybot chat` (never sent to Poe)."""

    tool: str = ""
    arguments: str = ""
    result: str = ""
    ok: bool = True


async def stream_chain(bot: str, chain: Sequence[Step], pool: ProviderPool, *,
                       show_thinking: bool = False, info: ReplyInfo | None = None,
                       tools: Tools | None = None,
                       fields: Mapping[str, Any] | None = None) -> AsyncGenerator[Event, None]:
    """Stream one whole reply from the first step that succeeds; `info` is filled in at the end.
    `fields` (what the caller knows: user, conversation and message ids, the prompt) go into the
    reply's record.

    With `tools`, a reply that ends in tool calls runs them and asks the same provider again, up
    to `max_rounds` times. Tool rounds already done are kept across retries and failover: a call
    that happened is never made twice.
    """
    started = time.monotonic()
    attempts = 0
    rounds = 0
    done: list[Message] = []  # tool rounds so far: assistant turns with calls, and their results
    sent = False  # text has reached the user
    stale = False  # ...and a failure since means the next text replaces it
    failures: list[_Failure] = []
    usage = Usage()
    first_token: float | None = None
    outcome = "error"
    used = chain[0]
    # For the reply store and the trace: each provider call and tool call, and the text the user saw.
    provider_calls: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    text: list[str] = []
    try:
        for step in chain:
            used = step
            try:
                provider = pool.get(step.provider)
            except Exception as exc:  # noqa: BLE001 - e.g. an SDK that failed to import
                failures.append(_Failure(f"provider {step.provider!r} is unavailable: "
                                         f"{type(exc).__name__}", retryable=False))
                provider_calls.append(_ended(_call(step, started), started, None, "error", failures[-1].message))
                stale = sent
                continue
            config = provider.config
            attempt = 0
            while True:  # attempts, and tool rounds, on this step
                attempts += 1
                usage = Usage()
                call = _call(step, started)
                provider_calls.append(call)
                replacing = stale  # a retry or failover after text was sent replaces the partial reply
                this_attempt_sent = False
                quote = _Quote()
                request = step.request
                if done:
                    request = replace(request, messages=request.messages + tuple(done))
                try:
                    # aclosing: a client that disconnects closes the provider stream at once.
                    async with aclosing(_bounded(provider.stream(request, usage), config)) as chunks:
                        async for chunk in chunks:
                            event = _event(chunk, quote, show_thinking, replacing)
                            if event is None:
                                continue
                            if first_token is None:
                                first_token = time.monotonic() - started
                            yield event
                            if isinstance(event, fp.PartialResponse) and event.text:
                                replacing = stale = False
                                sent = this_attempt_sent = True
                                if event.is_replace_response:
                                    text.clear()
                                text.append(event.text)
                    _ended(call, started, usage, usage.outcome)
                    if usage.outcome == "tool_call":
                        calls = usage.calls or [ToolCall("", n, "") for n in usage.tool_calls]
                        remote = [c for c in calls if c.name in (tools.remote if tools else ())]
                        box = tools.box if tools is not None else None
                        if remote:
                            outcome = "tool_call"  # the caller supplied these tools: it runs them
                            tool_calls += [{"name": c.name, "remote": True} for c in remote]
                            # Poe's protocol for tool calls: `json` events shaped as chat-completion chunks
                            # (what fastapi_poe's client aggregates into ToolCallDefinitions).
                            deltas = [{"index": i, "id": c.id, "type": "function",
                                       "function": {"name": c.name, "arguments": c.arguments}}
                                      for i, c in enumerate(remote)]
                            yield fp.PartialResponse(text="", data={"choices": [
                                {"index": 0, "delta": {"tool_calls": deltas}, "finish_reason": None}]})
                            yield fp.PartialResponse(text="", data={"choices": [
                                {"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
                            return
                        if box is None or not box.tools:
                            outcome = "tool_call"
                            names = ", ".join(repr(c.name) for c in calls) or "a tool"
                            yield fp.ErrorResponse(text=f"The model asked to call {names}, but {bot} declares "
                                                   "no tools; add `tools` to its bot.toml or change the prompt",
                                                   allow_retry=False)
                            return
                        if rounds >= (tools.max_rounds if tools else 0):
                            outcome = "tool_call"
                            yield fp.ErrorResponse(text=f"{bot} stopped after {rounds} rounds of tool calls "
                                                   "(max_tool_rounds in bot.toml) without an answer",
                                                   allow_retry=True)
                            return
                        ran = _ms(time.monotonic() - started)
                        results = await box.run(calls)
                        tool_calls += [{"name": r.call.name, "ok": r.ok, "start_ms": ran,
                                        "ms": _ms(time.monotonic() - started) - ran} for r in results]
                        for result in results:
                            yield ToolActivity(text="", tool=result.call.name, arguments=result.call.arguments,
                                               result=result.content, ok=result.ok)
                            for file in result.files:
                                event = _event(file, quote, show_thinking, False)
                                if event is not None:
                                    yield event
                        turn = usage.turn or Message("assistant", "", tool_calls=tuple(calls))
                        done.append(turn)
                        done.extend(Message("tool", r.content, name=r.call.name, tool_call_id=r.call.id)
                                    for r in results)
                        rounds += 1
                        if quote.open and show_thinking:
                            yield fp.PartialResponse(text=quote.close())
                        attempt = 0
                        continue  # the next round, on the same provider
                    outcome = usage.outcome
                    if outcome == "truncated":
                        yield fp.PartialResponse(text=TRUNCATED_NOTICE)
                    return
                except Refused as exc:
                    failure = _Failure(exc.message, False, refused=True)
                    retry_after = None
                except ProviderError as exc:
                    failure = _Failure(exc.message, exc.retryable, error_type=exc.error_type, status=exc.status,
                                       retry_after=exc.retry_after)
                    retry_after = exc.retry_after
                except TimeoutError as exc:
                    failure = _Failure(f"{step.provider} {exc.args[0] if exc.args else 'timed out'}", True)
                    retry_after = None
                except Exception as exc:  # noqa: BLE001 - an adapter bug must not reach Poe raw
                    log.warning("provider %s raised %s", step.provider, type(exc).__name__)
                    failure = _Failure(f"{step.provider} failed unexpectedly ({type(exc).__name__})", True)
                    retry_after = None
                failures.append(failure)
                _ended(call, started, usage, "error", failure.message)
                stale = sent
                # Retrying a provider that already sent text in this attempt would repeat it: fail
                # over instead. One that failed before its first chunk may retry: that chunk will
                # replace whatever the user has seen.
                if this_attempt_sent or not failure.retryable or attempt >= config.max_retries:
                    break
                wait = _backoff(attempt, retry_after)
                if wait is None:
                    break
                attempt += 1
                await asyncio.sleep(wait)
        if failures and all(f.refused for f in failures):
            outcome = "refused"
        yield _final_error(failures, sent)
    finally:
        for call in provider_calls:
            if "ms" not in call:  # the client went away mid-call
                _ended(call, started, usage, "cancelled")
        record = {
            "event": "reply", "bot": bot, "provider": used.provider, "model": used.request.model,
            "attempts": attempts, "fallback": used is not chain[0], "outcome": outcome, "tool_rounds": rounds,
            "ttft_ms": None if first_token is None else round(first_token * 1000),
            "duration_ms": round((time.monotonic() - started) * 1000),
            "finish_reason": usage.finish_reason,
            "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "reasoning_tokens": usage.reasoning_tokens, "cached_tokens": usage.cached_tokens,
            "calls": provider_calls, "tool_calls": tool_calls, "ts": time.time(),
            **{k: v for k, v in (fields or {}).items() if k not in CONTENT_KEYS},
        }
        if info is not None:
            info.outcome, info.usage, info.provider, info.model = outcome, usage, used.provider, used.request.model
            info.tool_rounds = rounds
            info.attempts, info.fallback = attempts, used is not chain[0]
            info.ttft_ms = None if first_token is None else round(first_token * 1000)
            info.duration_ms = round((time.monotonic() - started) * 1000)
            info.failures = [f.message for f in failures]
            if failures:
                info.status, info.retry_after = failures[-1].status, failures[-1].retry_after
        emit_reply(record, content={"prompt": (fields or {}).get("prompt"), "response": "".join(text)})


def emit_reply(record: Mapping[str, Any], content: Mapping[str, str | None] | None = None) -> None:
    """Log one reply's record on `polybot.reply`: every reply, whatever answered it, goes through here.
    `reply` carries the fields for formatters (dev's readable line) and the reply store; the message
    is the JSON line. `content` (CONTENT_KEYS) goes to the reply store only, never into the line."""
    log.info("%s", json.dumps(record), extra={"reply": record, "reply_content": content or {}})


def emit_report(event: str, bot: str, report: fp.ReportFeedbackRequest | fp.ReportReactionRequest) -> None:
    """Log one of Poe's reports on a reply (`feedback`: like / dislike, `reaction`) on `polybot.reply`,
    where the reply store joins it to the reply by message id."""
    value = report.feedback_type if isinstance(report, fp.ReportFeedbackRequest) else report.reaction
    record = {"event": event, "ts": time.time(), "bot": bot, "value": value, "user_id": report.user_id,
              "conversation_id": report.conversation_id, "message_id": report.message_id}
    log.info("%s", json.dumps(record), extra={"reply": record})


def _call(step: Step, started: float) -> dict[str, Any]:
    """One provider call's entry in the record, opened now (ended by `_ended`)."""
    return {"provider": step.provider, "model": step.request.model, "start_ms": _ms(time.monotonic() - started)}


def _ended(call: dict[str, Any], started: float, usage: Usage | None, outcome: str,
           error: str | None = None) -> dict[str, Any]:
    call["ms"] = _ms(time.monotonic() - started) - call["start_ms"]
    call["outcome"] = outcome
    if error is not None:
        call["error"] = error
    if usage is not None:
        call.update(finish_reason=usage.finish_reason, input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens)
    return call


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _event(chunk: Chunk, quote: _Quote, show_thinking: bool, replacing: bool) -> Event | None:
    """The Poe event for one chunk of a provider stream (None: nothing to send)."""
    if isinstance(chunk, str):
        text = quote.close() + chunk
        return fp.PartialResponse(text=text, is_replace_response=replacing)
    if isinstance(chunk, Thinking):
        if not show_thinking or not chunk.text:
            return None
        return fp.PartialResponse(text=quote.thinking(chunk.text), is_replace_response=replacing)
    if isinstance(chunk, Replace):
        return fp.PartialResponse(text=chunk.text, is_replace_response=True)
    if isinstance(chunk, FileOut):
        return fp.PartialResponse(text="", attachment=fp.Attachment(
            url=chunk.url, content_type=chunk.content_type, name=chunk.name, inline_ref=chunk.inline_ref))
    if isinstance(chunk, DataOut):
        return fp.PartialResponse(text="", data=dict(chunk.data))
    return None


async def _bounded(stream: AsyncIterator[Chunk], config: ProviderConfig) -> AsyncGenerator[Chunk, None]:
    """Bound the first token, every idle gap and the whole reply; always close the stream."""
    gap = min(config.timeout, GAP_CAP)
    deadline = time.monotonic() + config.timeout
    iterator = aiter(stream)
    first = True
    try:
        while True:
            limit = min(gap, deadline - time.monotonic())
            try:
                async with asyncio.timeout(max(limit, 0)):
                    chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"did not finish within {config.timeout:g}s") from None
                what = "sent no first token" if first else "stalled mid-reply"
                raise TimeoutError(f"{what} for {gap:g}s") from None
            first = False
            if chunk:
                yield chunk
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:  # noqa: BLE001 - closing a broken stream may fail again
                pass


def _backoff(attempt: int, retry_after: float | None) -> float | None:
    """Seconds before the next try; None when the provider asks for longer than MAX_WAIT."""
    if retry_after is not None and retry_after > MAX_WAIT:
        return None
    wait = min(BACKOFF_CAP, BACKOFF_BASE * 2.0**attempt) * random.uniform(0.5, 1.0)
    return max(wait, retry_after or 0.0)


def _final_error(failures: list[_Failure], sent: bool) -> fp.ErrorResponse:
    messages = list(dict.fromkeys(f.message for f in failures))
    refused = bool(failures) and all(f.refused for f in failures)
    retryable = not refused and (sent or any(f.retryable for f in failures))
    prefix = "The reply was cut off: " if sent else ""
    text = prefix + "; ".join(messages) if messages else "No provider could answer."
    error_type = next((f.error_type for f in reversed(failures) if f.error_type in POE_ERROR_TYPES), None)
    return fp.ErrorResponse(text=text, allow_retry=retryable, error_type=error_type)  # type: ignore[arg-type]
