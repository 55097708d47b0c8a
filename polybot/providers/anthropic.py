"""Anthropic Messages API (kind = "anthropic"), through the official async SDK."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
from anthropic.types import (
    ImageBlockParam,
    MessageContentParam,
    MessageParam,
    RawContentBlockDeltaEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    TextBlockParam,
    TextDelta,
)

from polybot.config import ProviderConfig
from polybot.providers.base import (
    ChatRequest,
    Message,
    Provider,
    ProviderError,
    Usage,
    cause_name,
    parse_retry_after,
    require_key,
    status_error,
)

#: Anthropic requires max_tokens; used when the bot sets none.
DEFAULT_MAX_TOKENS = 1024

#: Sent as the API key to endpoints that take none (a keyless proxy). Passing no key at all would
#: make the SDK look for credentials of its own (ANTHROPIC_API_KEY, profiles on disk).
NO_KEY = "unused"


class AnthropicProvider(Provider):
    """Streams from `AsyncAnthropic`; one client per provider, created on first use."""

    requires_alternation = True

    def __init__(self, name: str, config: ProviderConfig) -> None:
        super().__init__(name, config)
        self._client: anthropic.AsyncAnthropic | None = None
        self._key: str | None = None

    def _get_client(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            c = self.config
            self._key = require_key(self.name, c, os.environ)
            headers = c.request_headers()
            if c.api_version:
                headers["anthropic-version"] = c.api_version
            self._client = anthropic.AsyncAnthropic(
                api_key=self._key or NO_KEY,
                base_url=c.api_base,
                default_headers=headers or None,
                max_retries=0,  # polybot retries (and fails over) itself
                timeout=anthropic.Timeout(c.timeout, connect=min(10.0, c.timeout)),
            )
        return self._client

    async def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[str]:
        """Yield the reply's text deltas; fill `usage` from message_start and message_delta."""
        client = self._get_client()
        # temperature and params travel in the JSON body: this SDK's create() has no `temperature`
        # keyword, and extra_body is merged over the body last, so params may override anything.
        extra: dict[str, Any] = {}
        if request.temperature is not None:
            extra["temperature"] = request.temperature
        extra.update(request.params)
        try:
            stream = await client.messages.create(
                model=request.model,
                messages=[_message(m) for m in request.messages],
                max_tokens=request.max_tokens or DEFAULT_MAX_TOKENS,
                system=request.system or anthropic.omit,
                stop_sequences=list(request.stop) if request.stop else anthropic.omit,
                stream=True,
                extra_body=extra or None,
            )
        except anthropic.APIStatusError as exc:
            raise status_error(self.name, exc.status_code, self._detail(exc), key_env=self.config.api_key_env,
                               model=request.model,
                               retry_after=parse_retry_after(exc.response.headers.get("retry-after"))) from None
        except anthropic.APITimeoutError:
            raise ProviderError(f"{self.name} timed out", retryable=True) from None
        except anthropic.APIConnectionError as exc:
            raise ProviderError(f"{self.name} connection failed: {cause_name(exc)}", retryable=True) from None

        finished = False
        try:
            async with stream:
                async for event in stream:
                    if isinstance(event, RawContentBlockDeltaEvent):
                        if isinstance(event.delta, TextDelta) and event.delta.text:
                            yield event.delta.text
                    elif isinstance(event, RawMessageStartEvent):
                        usage.input_tokens = event.message.usage.input_tokens
                    elif isinstance(event, RawMessageDeltaEvent):
                        usage.output_tokens = event.usage.output_tokens
                    elif isinstance(event, RawMessageStopEvent):
                        finished = True
        except anthropic.APIStatusError as exc:
            # Once the 200 stream is open, this is an `error` event in it (e.g. overloaded_error).
            raise ProviderError(f"{self.name} failed mid-stream: {self._detail(exc) or 'error event'}",
                                retryable=True) from None
        except (httpx2.TimeoutException, anthropic.APITimeoutError):
            raise ProviderError(f"{self.name} timed out", retryable=True) from None
        except (httpx2.TransportError, anthropic.APIConnectionError) as exc:
            # The SDK wraps transport errors only while sending; mid-stream they arrive raw.
            name = cause_name(exc) if isinstance(exc, anthropic.APIConnectionError) else type(exc).__name__
            raise ProviderError(f"{self.name} connection failed: {name}", retryable=True) from None
        except (ValueError, AttributeError):
            # Not JSON (ValueError), or JSON lacking the fields its event type has (the SDK builds
            # events without validating them, so a missing field surfaces on access).
            raise ProviderError(f"{self.name} sent a malformed stream", retryable=True) from None
        if not finished:
            # The SDK ends quietly when the body ends early and skips events it cannot name:
            # never pass on a cut reply as a whole one.
            raise ProviderError(f"{self.name} ended the stream before finishing the reply", retryable=True)

    async def aclose(self) -> None:
        """Close the SDK client; the next `stream()` creates a new one."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _detail(self, exc: anthropic.APIStatusError) -> str:
        """The provider's own error message, shortened and with the key masked if echoed."""
        body: object = exc.body
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        if not isinstance(message, str):
            return ""
        if self._key:
            message = message.replace(self._key, "***")
        return message[:200]


def _message(m: Message) -> MessageParam:
    content: MessageContentParam = m.text
    if m.images:
        blocks: list[ImageBlockParam | TextBlockParam] = [
            {"type": "image", "source": {"type": "url", "url": img.url}} for img in m.images
        ]
        if m.text:  # the API rejects empty text blocks
            blocks.append({"type": "text", "text": m.text})
        content = blocks
    if m.role == "user":
        return {"role": "user", "content": content}
    return {"role": "assistant", "content": content}
