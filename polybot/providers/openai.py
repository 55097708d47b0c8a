"""OpenAI chat completions, and every endpoint that speaks that protocol (kind = "openai")."""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator
from functools import cache
from typing import Any

import openai

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

#: Sent as the API key to endpoints that take none (e.g. ollama); the SDK refuses an empty key.
NO_KEY = "unused"


class OpenAIProvider(Provider):
    """Streams from `AsyncOpenAI`; one client per provider, created on first use."""

    _client: openai.AsyncOpenAI | None = None
    _key: str | None = None

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            c = self.config
            self._key = require_key(self.name, c, os.environ)
            headers = c.request_headers()
            if c.api_version and self._key and "api-key" not in {k.lower() for k in headers}:
                # api-version means an Azure-style endpoint, which takes API keys in `api-key`
                # (a bearer token there must be an Entra token).
                headers["api-key"] = self._key
            self._client = openai.AsyncOpenAI(
                api_key=self._key or NO_KEY,
                base_url=c.api_base,
                default_headers=headers or None,
                default_query={"api-version": c.api_version} if c.api_version else None,
                max_retries=0,  # polybot retries (and fails over) itself
                timeout=openai.Timeout(c.timeout, connect=min(10.0, c.timeout)),
            )
        return self._client

    async def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[str]:
        """Yield the reply's text deltas; fill `usage` from the final usage chunk."""
        client = self._get_client()
        body: dict[str, Any] = {
            "model": request.model,
            "messages": _messages(request),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.stop:
            body["stop"] = list(request.stop)
        # Params go through extra_body, which the SDK merges over the body last: any key passes
        # (create() rejects keywords it does not know) and may override the ones set above.
        try:
            stream = await client.chat.completions.create(**body, extra_body=dict(request.params) or None)
            finished = False
            async with stream:
                async for chunk in stream:
                    if chunk.usage is not None:
                        usage.input_tokens = chunk.usage.prompt_tokens
                        usage.output_tokens = chunk.usage.completion_tokens
                    # Compatible servers may send null choices or deltas (e.g. Azure filter chunks).
                    for choice in chunk.choices or ():
                        if choice.finish_reason:
                            finished = True
                        if choice.delta is not None and choice.delta.content:
                            yield choice.delta.content
            if not finished:
                # The SDK ends quietly when the body ends without [DONE]: never pass on a cut reply.
                raise ProviderError(f"{self.name} ended the stream before finishing the reply",
                                    retryable=True)
        except openai.APIStatusError as exc:
            raise status_error(self.name, exc.status_code, self._detail(exc), key_env=self.config.api_key_env,
                               model=request.model,
                               retry_after=parse_retry_after(exc.response.headers.get("retry-after"))) from None
        except openai.APITimeoutError:
            raise ProviderError(f"{self.name} timed out", retryable=True) from None
        except openai.APIConnectionError as exc:
            raise ProviderError(f"{self.name} connection failed: {cause_name(exc)}", retryable=True) from None
        except openai.APIError as exc:  # an {"error": ...} event inside a 200 stream
            raise ProviderError(f"{self.name} failed mid-stream: {self._detail(exc) or 'error event'}",
                                retryable=True) from None
        except ValueError:  # an event that is not JSON
            raise ProviderError(f"{self.name} sent a malformed stream", retryable=True) from None
        except _transport_errors() as exc:  # older SDKs let mid-stream transport errors through
            raise ProviderError(f"{self.name} connection failed: {type(exc).__name__}", retryable=True) from None

    async def aclose(self) -> None:
        """Close the SDK client; the next `stream()` creates a new one."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _detail(self, exc: openai.APIError) -> str:
        """The provider's own error message, shortened and with the key masked if echoed."""
        # The SDK unwraps {"error": ...}; what remains is a dict, or a bare string (e.g. ollama).
        message: object = exc.body
        if isinstance(message, dict):
            error = message.get("error")
            message = message.get("message") or (error.get("message") if isinstance(error, dict) else error)
        if not isinstance(message, str):
            return ""
        if self._key:
            message = message.replace(self._key, "***")
        return message[:200]


def _messages(request: ChatRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    out.extend(_message(m) for m in request.messages)
    return out


def _message(m: Message) -> dict[str, Any]:
    if not m.images:
        return {"role": m.role, "content": m.text}
    parts: list[dict[str, Any]] = [{"type": "text", "text": m.text}]
    parts += [{"type": "image_url", "image_url": {"url": img.url}} for img in m.images]
    return {"role": m.role, "content": parts}


@cache
def _transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP libraries' transport errors (SDK 1.x uses httpx, newer ones httpx2)."""
    found: list[type[Exception]] = []
    for module in ("httpx", "httpx2"):
        try:
            found.append(importlib.import_module(module).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)
