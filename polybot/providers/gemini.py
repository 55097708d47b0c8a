"""Google Gemini (kind = "gemini"), through the official google-genai SDK's async client."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
from google import genai
from google.genai import errors, types

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


class GeminiProvider(Provider):
    """Streams from `client.aio.models.generate_content_stream`; one client per provider."""

    requires_alternation = True
    _client: genai.Client | None = None
    _http: httpx.AsyncClient

    def _get_client(self) -> genai.Client:
        if self._client is None:
            c = self.config
            # Our own httpx client: the SDK would otherwise switch to aiohttp whenever that happens
            # to be installed, changing timeouts and error types under us.
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(c.timeout, connect=min(10.0, c.timeout)))
            options = types.HttpOptions(
                base_url=c.api_base,
                api_version=c.api_version,
                headers=c.request_headers() or None,
                timeout=int(c.timeout * 1000),
                retry_options=types.HttpRetryOptions(attempts=1),  # polybot retries and fails over itself
                httpx_async_client=self._http,
            )
            self._client = genai.Client(api_key=require_key(self.name, c, os.environ), http_options=options)
        return self._client

    async def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[str]:
        client = self._get_client()
        config: dict[str, Any] = {}
        if request.system:
            config["system_instruction"] = request.system
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.max_tokens is not None:
            config["max_output_tokens"] = request.max_tokens
        if request.stop:
            config["stop_sequences"] = list(request.stop)
        config.update(request.params)
        try:
            stream = await client.aio.models.generate_content_stream(
                model=request.model, contents=[_content(m) for m in request.messages],
                config=types.GenerateContentConfig(**config))
            async for chunk in stream:
                if chunk.usage_metadata is not None:
                    usage.input_tokens = chunk.usage_metadata.prompt_token_count
                    usage.output_tokens = chunk.usage_metadata.candidates_token_count
                for candidate in chunk.candidates or ():
                    for part in (candidate.content.parts if candidate.content else None) or ():
                        if part.text and not part.thought:
                            yield part.text
        except errors.APIError as exc:
            headers = getattr(exc.response, "headers", None) or {}
            raise status_error(self.name, exc.code, (exc.message or "")[:200], key_env=self.config.api_key_env,
                               model=request.model,
                               retry_after=parse_retry_after(headers.get("retry-after"))) from None
        except ValueError:  # an event that is not JSON (pydantic errors are ValueErrors too)
            raise ProviderError(f"{self.name} sent a malformed stream", retryable=True) from None
        except Exception as exc:  # noqa: BLE001 - transport errors of the SDK's HTTP library, timeouts
            raise ProviderError(f"{self.name} connection failed: {cause_name(exc)}", retryable=True) from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aio.aclose()
            await self._http.aclose()
            self._client = None


def _content(m: Message) -> types.Content:
    parts = [types.Part(text=m.text)] if m.text else []
    parts += [types.Part.from_uri(file_uri=img.url, mime_type=img.content_type) for img in m.images]
    return types.Content(role="model" if m.role == "assistant" else "user", parts=parts)
