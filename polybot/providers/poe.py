"""Other Poe bots (kind = "poe"), through fastapi_poe's client, with the calling bot's access key."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import fastapi_poe as fp
import httpx

from polybot.conversation import query_request
from polybot.providers.base import (
    ChatRequest,
    Chunk,
    DataOut,
    FileOut,
    Provider,
    ProviderError,
    Replace,
    Usage,
    sdk_timeout,
    status_error,
)
from polybot.tls import tls_context


class PoeProvider(Provider):
    """Calls `model` (a Poe bot's name) as a server bot dependency of the calling bot."""

    _session: httpx.AsyncClient | None = None

    def _get_session(self) -> httpx.AsyncClient:
        if self._session is None:
            c = self.config
            self._session = httpx.AsyncClient(timeout=sdk_timeout(c, httpx.Timeout),
                                              headers=c.request_headers() or None, verify=tls_context())
        return self._session

    def _key(self, request: ChatRequest) -> str:
        origin = request.origin
        if origin is not None and origin.access_key:
            return origin.access_key
        if self.config.api_key_env and os.environ.get(self.config.api_key_env):
            return os.environ[self.config.api_key_env]
        variable = (origin.access_key_env if origin else None) or self.config.api_key_env or \
            "the bot's access key variable"
        raise ProviderError(f"{variable} is not set: the poe provider calls other bots with the calling "
                            "bot's own Poe access key", retryable=False)

    async def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[Chunk]:
        """Relay the called bot's reply: text, `replace_response`, files and `json` events."""
        key = self._key(request)
        origin = request.origin
        query = query_request(
            ([fp.ProtocolMessage(role="system", content=request.system)] if request.system else []) + [
                fp.ProtocolMessage(role="bot" if m.role == "assistant" else "user", content=m.text,
                                   attachments=[fp.Attachment(url=i.url, content_type=i.content_type,
                                                              name=i.name or i.url.rsplit("/", 1)[-1] or "image")
                                                for i in m.images])
                for m in request.messages],
            # The same user, conversation and message as the request being answered, so the called
            # bot (and Poe's accounting) sees one conversation, not a stranger called "polybot".
            user_id=origin.user_id if origin else "polybot",
            conversation_id=origin.conversation_id if origin else "polybot",
            message_id=origin.message_id if origin else "polybot",
            metadata=origin.metadata if origin else "",
            temperature=request.temperature,
            stop_sequences=list(request.stop),
        )
        statuses: list[int] = []

        async def record(response: httpx.Response) -> None:
            statuses.append(response.status_code)

        session = self._get_session()
        session.event_hooks["response"] = [record]
        try:
            async for message in fp.stream_request(query, request.model, key, session=session, num_tries=1,
                                                   on_error=_quiet, base_url=self.config.api_base or
                                                   "https://api.poe.com/bot/"):
                if isinstance(message, fp.MetaResponse) or message.is_suggested_reply:
                    continue
                if message.attachment is not None:
                    a = message.attachment
                    yield FileOut(a.url, a.content_type, a.name, a.inline_ref)
                elif message.data is not None:
                    yield DataOut(message.data)
                elif message.is_replace_response:
                    yield Replace(message.text)
                elif message.text:
                    yield message.text
        except ProviderError:
            raise
        except fp.BotErrorNoRetry as exc:
            raise ProviderError(f"{self.name} bot {request.model!r} failed: {_error_text(exc)}",
                                retryable=False) from None
        except Exception as exc:  # noqa: BLE001 - BotError, transport errors, timeouts
            status = next((s for s in reversed(statuses) if s >= 400), None)
            if status is not None:
                key_env = (origin.access_key_env if origin else None) or self.config.api_key_env
                raise status_error(f"{self.name} bot {request.model!r}", status, "", key_env=key_env,
                                   model=request.model) from None
            detail = _error_text(exc) if isinstance(exc, fp.BotError) else type(exc).__name__
            raise ProviderError(f"{self.name} bot {request.model!r} failed: {detail}", retryable=True) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.aclose()
            self._session = None


def _quiet(exc: Exception, message: str) -> None:
    """fastapi_poe logs every failed try; polybot reports failures itself, once."""


def _error_text(exc: Exception) -> str:
    """The `text` of a Poe error event, or a short fallback (never the raw payload)."""
    import json

    raw = str(exc)
    try:
        data: Any = json.loads(raw)
    except ValueError:
        return raw[:200] if raw.startswith("Error communicating") else "error"
    text = data.get("text") if isinstance(data, dict) else None
    return str(text)[:200] if text else "error"
