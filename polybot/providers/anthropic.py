"""Anthropic Messages API (kind = "anthropic"), through the official async SDK."""

from __future__ import annotations

import base64
import importlib
import json
import os
from collections.abc import AsyncIterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from polybot.config import ProviderConfig
from polybot.providers.base import (
    ChatRequest,
    Chunk,
    Message,
    Provider,
    ProviderError,
    Refused,
    Thinking,
    ToolCall,
    Usage,
    cause_name,
    merge_turns,
    parse_retry_after,
    require_key,
    sdk_timeout,
    status_error,
    without_images,
)
from polybot.providers.models import model_info
from polybot.tls import tls_context

if TYPE_CHECKING:
    import anthropic

#: max_tokens for a model the table does not know (Anthropic requires one).
DEFAULT_MAX_TOKENS = 4096

#: Sent as the API key to endpoints that take none (a keyless proxy). Passing no key at all would
#: make the SDK look for credentials of its own (ANTHROPIC_API_KEY, profiles on disk).
NO_KEY = "unused"

#: stop_reason -> outcome. "refusal" raises Refused; anything unknown counts as a whole reply.
TRUNCATED = frozenset({"max_tokens", "model_context_window_exceeded"})


class AnthropicOptions(BaseModel):
    """`params` for kind = "anthropic" (Messages API)."""

    model_config = ConfigDict(extra="forbid")

    top_p: float | None = None
    top_k: int | None = None
    thinking: dict[str, Any] | None = None  # {type = "enabled", budget_tokens = 2048}
    metadata: dict[str, Any] | None = None
    service_tier: str | None = None
    #: Anything else, sent in the JSON body unchecked.
    extra_body: dict[str, Any] | None = None


class AnthropicProvider(Provider):
    """Streams from `AsyncAnthropic`; one client per provider, created on first use."""

    Options = AnthropicOptions

    def __init__(self, name: str, config: ProviderConfig) -> None:
        super().__init__(name, config)
        self._client: anthropic.AsyncAnthropic | None = None
        self._key: str | None = None

    @classmethod
    def rules(cls, model: str, temperature: float | None, max_tokens: int | None,
              params: Mapping[str, Any]) -> list[tuple[str, str]]:
        info = model_info(model)
        found = []
        if temperature is not None and temperature > info.temperature_max:
            found.append(("temperature", f"temperature: Anthropic models take 0 to {info.temperature_max:g}, "
                          f"got {temperature:g}"))
        if info.max_output is not None and max_tokens is not None and max_tokens > info.max_output:
            found.append(("max_tokens", f"max_tokens: {model} writes at most {info.max_output} tokens, "
                          f"got {max_tokens}"))
        if info.exclusive_sampling and temperature is not None and "top_p" in params:
            found.append(("params.top_p", f"params.top_p: {model} rejects temperature and top_p together; "
                          "keep one"))
        return found

    def _get_client(self) -> anthropic.AsyncAnthropic:
        anthropic = _sdk()
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
                timeout=sdk_timeout(c, anthropic.Timeout),
                http_client=anthropic.DefaultAsyncHttpxClient(verify=tls_context()),
            )
        return self._client

    def body(self, request: ChatRequest) -> tuple[dict[str, Any], dict[str, Any]]:
        """(create() keywords, extra_body) for `request`, with this model's rules applied."""
        info = model_info(request.model)
        messages = list(request.messages) if self.vision(request.model) else without_images(request.messages,
                                                                                              request.model)
        kwargs: dict[str, Any] = {
            "model": request.model,
            "messages": _messages(merge_turns(messages), self.name),
            "max_tokens": request.max_tokens or info.max_output or DEFAULT_MAX_TOKENS,
            "stream": True,
        }
        if request.system:
            kwargs["system"] = request.system
        if request.stop:
            kwargs["stop_sequences"] = list(request.stop)
        if request.tools:
            kwargs["tools"] = [{"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
                               for t in request.tools]
        # temperature and params travel in the JSON body: this SDK's create() has no `temperature`
        # keyword, and extra_body is merged over the body last, so params may override anything.
        extra: dict[str, Any] = {}
        if request.temperature is not None:
            extra["temperature"] = min(request.temperature, info.temperature_max)
        params = dict(request.params)
        params.update(params.pop("extra_body", None) or {})
        if info.exclusive_sampling and "temperature" in extra:
            params.pop("top_p", None)
        extra.update(params)
        return kwargs, extra

    async def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[Chunk]:
        """Yield thinking and text deltas; fill `usage`; map stop_reason onto an outcome."""
        anthropic = _sdk()
        client = self._get_client()
        kwargs, extra = self.body(request)
        try:
            stream = await client.messages.create(**kwargs, extra_body=extra or None)
        except anthropic.APIStatusError as exc:
            detail = self._detail(exc)
            error = status_error(self.name, exc.status_code, detail, key_env=self.config.api_key_env,
                                 model=request.model,
                                 retry_after=parse_retry_after(exc.response.headers.get("retry-after")))
            if exc.status_code in (400, 413) and ("prompt is too long" in detail or "exceed context limit" in detail):
                error.error_type = "user_message_too_long"
            raise error from None
        except anthropic.APITimeoutError:
            raise ProviderError(f"{self.name} timed out", retryable=True) from None
        except anthropic.APIConnectionError as exc:
            raise ProviderError(f"{self.name} connection failed: {cause_name(exc)}", retryable=True) from None

        finished = False
        stop_reason: str | None = None
        # The reply's content blocks, kept to send back on a tool round: thinking blocks must
        # return with their signatures, and tool_use blocks with their ids.
        blocks: dict[int, dict[str, Any]] = {}
        parts: dict[int, list[str]] = {}
        httpx = _http_lib()
        try:
            async with stream:
                async for event in stream:
                    kind = event.type
                    if kind == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta" and delta.text:
                            parts.setdefault(event.index, []).append(delta.text)
                            yield delta.text
                        elif delta.type == "thinking_delta" and delta.thinking:
                            parts.setdefault(event.index, []).append(delta.thinking)
                            yield Thinking(delta.thinking)
                        elif delta.type == "input_json_delta":
                            parts.setdefault(event.index, []).append(delta.partial_json)
                        elif delta.type == "signature_delta" and event.index in blocks:
                            blocks[event.index]["signature"] = delta.signature
                    elif kind == "content_block_start":
                        blocks[event.index] = event.content_block.model_dump(exclude_none=True)
                    elif kind == "message_start":
                        # The API reports usage here, but the documented thinking stream (and
                        # some compatible proxies) leave it out: counts are optional, text is not.
                        reported = getattr(event.message, "usage", None)
                        if reported is not None:
                            usage.input_tokens = reported.input_tokens
                            usage.cached_tokens = getattr(reported, "cache_read_input_tokens", None)
                    elif kind == "message_delta":
                        reported = getattr(event, "usage", None)
                        if reported is not None:
                            usage.output_tokens = reported.output_tokens
                        stop_reason = event.delta.stop_reason or stop_reason
                    elif kind == "message_stop":
                        finished = True
        except anthropic.APIStatusError as exc:
            # Once the 200 stream is open, this is an `error` event in it (e.g. overloaded_error).
            raise ProviderError(f"{self.name} failed mid-stream: {self._detail(exc) or 'error event'}",
                                retryable=True) from None
        except (httpx.TimeoutException, anthropic.APITimeoutError):
            raise ProviderError(f"{self.name} timed out", retryable=True) from None
        except (httpx.TransportError, anthropic.APIConnectionError) as exc:
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
        usage.finish_reason = stop_reason
        if stop_reason == "refusal":
            raise Refused(self.name, "the model stopped with stop_reason \"refusal\" (its safety "
                                     "policy); a fallback model may answer")
        if stop_reason in TRUNCATED:
            usage.outcome = "truncated"
        elif stop_reason == "tool_use":
            usage.outcome = "tool_call"
            content = [_finished(blocks[i], parts.get(i, [])) for i in sorted(blocks)]
            usage.calls = [ToolCall(b["id"], b["name"], json.dumps(b.get("input", {})))
                           for b in content if b.get("type") == "tool_use"]
            usage.tool_calls = [c.name for c in usage.calls]
            text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
            usage.turn = Message("assistant", text, tool_calls=tuple(usage.calls), state=content,
                                 state_of=self.name)

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


def _finished(block: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    """A streamed content block, whole again (as the API would return it unstreamed)."""
    block = dict(block)
    kind = block.get("type")
    if kind == "text":
        block["text"] = "".join(parts)
        block.pop("citations", None)
    elif kind == "thinking":
        block["thinking"] = "".join(parts)
    elif kind in ("tool_use", "server_tool_use"):
        raw = "".join(parts)
        try:
            block["input"] = json.loads(raw) if raw else {}
        except ValueError:
            block["input"] = {}
    return block


def _messages(turns: list[Message], provider: str) -> list[dict[str, Any]]:
    """Merged turns as MessageParams: tool rounds become tool_use and tool_result blocks."""
    out: list[dict[str, Any]] = []
    for m in turns:
        if m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.text}
            last = out[-1] if out else None
            if last is not None and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
            continue
        if m.tool_calls:
            if m.state_of == provider and isinstance(m.state, list):
                content = list(m.state)  # our own turn: thinking signatures and all
            else:
                content = ([{"type": "text", "text": m.text}] if m.text else []) + [
                    {"type": "tool_use", "id": c.id, "name": c.name, "input": _arguments(c.arguments)}
                    for c in m.tool_calls]
            out.append({"role": "assistant", "content": content})
            continue
        message = _message(m)
        last = out[-1] if out else None
        if last is not None and last["role"] == message["role"]:
            # A user turn right after tool results: one user message, text after the results.
            text = message["content"] if isinstance(message["content"], list) else (
                [{"type": "text", "text": message["content"]}] if message["content"] else [])
            last["content"] = (last["content"] if isinstance(last["content"], list) else
                               [{"type": "text", "text": last["content"]}]) + text
        else:
            out.append(message)
    return out


def _arguments(raw: str) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def _message(m: Message) -> dict[str, Any]:
    """One turn as a MessageParam; never an empty text block (the API answers 400 to one)."""
    if not m.images:
        return {"role": m.role, "content": m.text}
    blocks: list[dict[str, Any]] = [_image(img.url, img.content_type, img.data) for img in m.images]
    if m.text:
        blocks.append({"type": "text", "text": m.text})
    return {"role": m.role, "content": blocks}


def _image(url: str, content_type: str, data: bytes | None) -> dict[str, Any]:
    if data is not None:
        return {"type": "image", "source": {"type": "base64", "media_type": content_type,
                                            "data": base64.b64encode(data).decode()}}
    return {"type": "image", "source": {"type": "url", "url": url}}


@cache
def _sdk() -> Any:
    """The anthropic SDK, imported on first use (the build reads this module without it)."""
    return importlib.import_module("anthropic")


@cache
def _http_lib() -> Any:
    """The HTTP library under the SDK (httpx2 for anthropic 2.x, httpx before)."""
    try:
        return importlib.import_module("httpx2")
    except ImportError:
        return importlib.import_module("httpx")
