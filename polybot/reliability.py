"""From a chain of (provider, request) to Poe events: retries, timeouts, failover, one log line.

The guarantees (SPEC §4): transient failures are retried before the first token with backoff that
honours Retry-After, then the next `[[fallback]]` is tried; after text was sent a failover replaces
the partial reply (`replace_response`) or the reply ends in an error event with allow_retry=true;
configuration failures end with allow_retry=false and the message says what to fix. Nothing hangs:
first token, idle gap and whole reply are each bounded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass

import fastapi_poe as fp

from polybot.config import ProviderConfig
from polybot.providers import create_provider
from polybot.providers.base import ChatRequest, Provider, ProviderError, Usage

log = logging.getLogger("polybot.reply")

#: Backoff: BASE * 2**attempt seconds, jittered, at most CAP; a Retry-After beyond MAX_WAIT fails over.
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
MAX_WAIT = 30.0
#: First token and idle gaps are bounded by min(timeout, GAP_CAP).
GAP_CAP = 30.0

Event = fp.PartialResponse | fp.ErrorResponse


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


async def stream_chain(bot: str, chain: Sequence[Step], pool: ProviderPool) -> AsyncIterator[Event]:
    """Stream one whole reply from the first step that succeeds."""
    started = time.monotonic()
    attempts = 0
    sent = False  # text has reached the user
    failures: list[_Failure] = []
    usage = Usage()
    first_token: float | None = None
    outcome = "error"
    used = chain[0]
    try:
        for step in chain:
            used = step
            try:
                provider = pool.get(step.provider)
            except Exception as exc:  # noqa: BLE001 - e.g. an SDK that failed to import
                failures.append(_Failure(f"provider {step.provider!r} is unavailable: "
                                         f"{type(exc).__name__}", retryable=False))
                continue
            config = provider.config
            for attempt in range(config.max_retries + 1):
                attempts += 1
                usage = Usage()
                replacing = sent  # a failover after text was sent replaces the partial reply
                this_attempt_sent = False
                try:
                    # aclosing: a client that disconnects closes the provider stream at once.
                    async with aclosing(_bounded(provider.stream(step.request, usage), config)) as chunks:
                        async for chunk in chunks:
                            if first_token is None:
                                first_token = time.monotonic() - started
                            yield fp.PartialResponse(text=chunk, is_replace_response=replacing)
                            replacing = False
                            sent = this_attempt_sent = True
                    outcome = "ok"
                    return
                except ProviderError as exc:
                    failure = _Failure(exc.message, exc.retryable)
                    retry_after = exc.retry_after
                except TimeoutError as exc:
                    failure = _Failure(f"{step.provider} {exc.args[0] if exc.args else 'timed out'}", True)
                    retry_after = None
                except Exception as exc:  # noqa: BLE001 - an adapter bug must not reach Poe raw
                    log.warning("provider %s raised %s", step.provider, type(exc).__name__)
                    failure = _Failure(f"{step.provider} failed unexpectedly ({type(exc).__name__})", True)
                    retry_after = None
                failures.append(failure)
                # Retrying a provider that already sent text in this attempt would repeat it: fail
                # over instead. One that failed before its first chunk may retry: that chunk will
                # replace whatever the user has seen.
                if this_attempt_sent or not failure.retryable or attempt == config.max_retries:
                    break
                wait = _backoff(attempt, retry_after)
                if wait is None:
                    break
                await asyncio.sleep(wait)
        yield _final_error(failures, sent)
    finally:
        record = {
            "event": "reply", "bot": bot, "provider": used.provider, "model": used.request.model,
            "attempts": attempts, "fallback": used is not chain[0], "outcome": outcome,
            "ttft_ms": None if first_token is None else round(first_token * 1000),
            "duration_ms": round((time.monotonic() - started) * 1000),
            "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
        }
        # `reply` carries the fields for formatters (dev's readable line); the message is the JSON line.
        log.info("%s", json.dumps(record), extra={"reply": record})


async def _bounded(stream: AsyncIterator[str], config: ProviderConfig) -> AsyncGenerator[str, None]:
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
    retryable = sent or any(f.retryable for f in failures)
    prefix = "The reply was cut off: " if sent else ""
    text = prefix + "; ".join(messages) if messages else "No provider could answer."
    return fp.ErrorResponse(text=text, allow_retry=retryable)
