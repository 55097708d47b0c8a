"""Anthropic Messages API (kind = "anthropic"), through the official async SDK."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anthropic

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


class AnthropicProvider(Provider):
    """Streams from `AsyncAnthropic`; one client per provider, created on first use."""

    requires_alternation = True
    _client: anthropic.AsyncAnthropic | None = None

    def _get_client(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            c = self.config
            headers = dict(c.headers)
            if c.api_version:
                headers["anthropic-version"] = c.api_version
            self._client = anthropic.AsyncAnthropic(
                api_key=require_key(self.name, c, os.environ),
                base_url=c.api_base,
                default_headers=headers or None,
                max_retries=0,  # polybot retries (and fails over) itself
                timeout=anthropic.Timeout(c.timeout, connect=min(10.0, c.timeout)),
            )
        return self._client

    async def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[str]:
        client = self._get_client()
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [_message(m) for m in request.messages],
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "stream": True,
        }
        if request.system:
            body["system"] = request.system
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        # Sampling options and pass-through params travel in the JSON body as-is: SDK versions
        # differ in which of them they accept as keywords (2.x dropped `temperature`).
        extra: dict[str, Any] = {}
        if request.temperature is not None:
            extra["temperature"] = request.temperature
        extra.update(request.params)
        try:
            stream = await client.messages.create(**body, extra_body=extra or None)
            finished = False
            async with stream:
                async for event in stream:
                    if event.type == "message_stop":
                        finished = True
                    elif event.type == "message_start":
                        usage.input_tokens = event.message.usage.input_tokens
                    elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                        if event.delta.text:
                            yield event.delta.text
                    elif event.type == "message_delta":
                        usage.output_tokens = event.usage.output_tokens
            if not finished:  # the SDK skips events it cannot parse: never pass on a cut reply
                raise ValueError("stream ended before message_stop")
        except anthropic.APIStatusError as exc:
            status = exc.status_code
            if status == 200:  # an `error` event inside the stream, e.g. overloaded_error
                raise ProviderError(f"{self.name} failed mid-stream: {_detail(exc)}", retryable=True) from None
            raise status_error(self.name, status, _detail(exc), key_env=self.config.api_key_env,
                               model=request.model,
                               retry_after=parse_retry_after(exc.response.headers.get("retry-after"))) from None
        except anthropic.APITimeoutError:
            raise ProviderError(f"{self.name} timed out", retryable=True) from None
        except anthropic.APIConnectionError as exc:
            raise ProviderError(f"{self.name} connection failed: {cause_name(exc)}", retryable=True) from None
        except ValueError:  # an event that is not JSON
            raise ProviderError(f"{self.name} sent a malformed stream", retryable=True) from None
        except Exception as exc:  # noqa: BLE001 - the SDK's HTTP library raises its own transport errors
            raise ProviderError(f"{self.name} connection failed: {cause_name(exc)}", retryable=True) from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _message(m: Message) -> dict[str, Any]:
    if not m.images:
        return {"role": m.role, "content": m.text}
    blocks: list[dict[str, Any]] = [{"type": "image", "source": {"type": "url", "url": img.url}} for img in m.images]
    blocks.append({"type": "text", "text": m.text})
    return {"role": m.role, "content": blocks}


def _detail(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, str):
            return message[:200]
    return ""

