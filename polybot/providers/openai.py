"""OpenAI chat completions, and every endpoint that speaks that protocol (kind = "openai")."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
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


class OpenAIProvider(Provider):
    """Streams from `AsyncOpenAI`; one client per provider, created on first use."""

    _client: openai.AsyncOpenAI | None = None

    def _get_client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            key = require_key(self.name, self.config, os.environ) or "unused"  # e.g. ollama: no key
            c = self.config
            self._client = openai.AsyncOpenAI(
                api_key=key,
                base_url=c.api_base,
                default_headers=c.headers or None,
                default_query={"api-version": c.api_version} if c.api_version else None,
                max_retries=0,  # polybot retries (and fails over) itself
                timeout=openai.Timeout(c.timeout, connect=min(10.0, c.timeout)),
            )
        return self._client

    async def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[str]:
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
        # Pass-through params travel in the JSON body as-is, whatever keywords this SDK version has.
        try:
            stream = await client.chat.completions.create(**body, extra_body=dict(request.params) or None)
            async with stream:
                async for chunk in stream:
                    if chunk.usage is not None:
                        usage.input_tokens = chunk.usage.prompt_tokens
                        usage.output_tokens = chunk.usage.completion_tokens
                    for choice in chunk.choices:
                        if choice.delta and choice.delta.content:
                            yield choice.delta.content
        except openai.APIStatusError as exc:
            raise status_error(self.name, exc.status_code, _detail(exc), key_env=self.config.api_key_env,
                               model=request.model,
                               retry_after=parse_retry_after(exc.response.headers.get("retry-after"))) from None
        except openai.APITimeoutError:
            raise ProviderError(f"{self.name} timed out", retryable=True) from None
        except openai.APIConnectionError as exc:
            raise ProviderError(f"{self.name} connection failed: {cause_name(exc)}", retryable=True) from None
        except Exception as exc:  # noqa: BLE001 - the SDK's HTTP library raises its own transport errors
            # A stream cut mid-way, or an event that is not JSON.
            what = "sent a malformed stream" if _is_decode(exc) else f"connection failed: {cause_name(exc)}"
            raise ProviderError(f"{self.name} {what}", retryable=True) from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


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


def _detail(exc: openai.APIStatusError) -> str:
    """The provider's own error message (it never echoes the key), shortened."""
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or (body.get("error") or {}).get("message")
        if isinstance(message, str):
            return message[:200]
    return ""



def _is_decode(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ValueError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
