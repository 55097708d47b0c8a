"""OpenAI chat completions, and every endpoint that speaks that protocol (kind = "openai")."""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import AsyncIterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from polybot.providers import sse
from polybot.providers.base import (
    ChatRequest,
    Chunk,
    Message,
    Provider,
    ProviderError,
    Refused,
    Thinking,
    Usage,
    cause_name,
    parse_retry_after,
    require_key,
    sdk_timeout,
    status_error,
    without_images,
)
from polybot.providers.models import model_info
from polybot.providers.tool_deltas import ToolCallDeltas
from polybot.tls import tls_context

if TYPE_CHECKING:
    import openai

#: Sent as the API key to endpoints that take none (e.g. ollama); the SDK refuses an empty key.
NO_KEY = "unused"

#: Options reasoning models (o-series, gpt-5) reject.
SAMPLING = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs",
            "logit_bias")


class OpenAIOptions(BaseModel):
    """`params` for kind = "openai": the Chat Completions options, and common extensions of
    OpenAI-compatible servers (vLLM, Together, OpenRouter, DeepSeek, Mistral)."""

    model_config = ConfigDict(extra="forbid")

    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: dict[str, Any] | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None
    service_tier: str | None = None
    user: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    max_completion_tokens: int | None = None
    parallel_tool_calls: bool | None = None
    # OpenAI-compatible servers
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    reasoning: dict[str, Any] | None = None  # OpenRouter
    provider: dict[str, Any] | None = None  # OpenRouter routing
    safe_prompt: bool | None = None  # Mistral
    #: Anything else, sent in the JSON body unchecked.
    extra_body: dict[str, Any] | None = None


class OpenAIProvider(Provider):
    """Streams from `AsyncOpenAI`; one client per provider, created on first use."""

    Options = OpenAIOptions
    _client: openai.AsyncOpenAI | None = None
    _key: str | None = None

    @classmethod
    def rules(cls, model: str, temperature: float | None, max_tokens: int | None,
              params: Mapping[str, Any]) -> list[tuple[str, str]]:
        if not model_info(model).reasoning:
            return []
        found = [("temperature", f"temperature: {model} is a reasoning model and takes no temperature; "
                  "remove it")] if temperature is not None else []
        found += [(f"params.{k}", f"params.{k}: {model} is a reasoning model and rejects {k}; remove it")
                  for k in SAMPLING if k in params]
        return found

    def _get_client(self) -> openai.AsyncOpenAI:
        openai = _sdk()
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
                timeout=sdk_timeout(c, openai.Timeout),
                http_client=_http_client(openai),
            )
        return self._client

    async def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[Chunk]:
        """Yield reasoning and text deltas; map `finish_reason` and refusals onto outcomes."""
        openai = _sdk()
        client = self._get_client()
        body = self.body(request)
        # Everything but the model goes in extra_body, which the SDK sends as it is: its params
        # transform (walking TypedDict annotations over every message) costs more than the reply's
        # streaming. The JSON sent is the same; params still override what precedes them.
        extra = {k: v for k, v in body.items() if k not in ("model", "stream", "extra_body")}
        extra.update(body.get("extra_body") or {})
        refusal: list[str] = []
        text: list[str] = []
        calls = ToolCallDeltas()
        finish: str | None = None
        done = False
        try:
            # The SDK builds the request, authenticates and raises status errors; the body is read
            # raw, one JSON value per event instead of a pydantic model per chunk.
            async with client.chat.completions.with_streaming_response.create(
                    model=body["model"], messages=[], stream=True, extra_body=extra) as response:
                async for _, data in sse.events(response.http_response.aiter_bytes()):
                    if done:
                        continue  # read to the end, so the connection goes back to the pool
                    if data.startswith("[DONE]"):
                        done = True
                        continue
                    chunk = sse.loads(data)
                    if not isinstance(chunk, dict):
                        continue
                    if chunk.get("error") or chunk.get("object") == "error":
                        # {"error": ...} in a 200 stream (OpenAI, OpenRouter, Ollama); vLLM's own
                        # error object ({"object": "error", "message": ...}).
                        detail = self._detail_of(chunk) or "error event"
                        raise ProviderError(f"{self.name} failed mid-stream: {detail}", retryable=True)
                    reported = chunk.get("usage")
                    if reported is None and "x_groq" in chunk:  # Groq: usage under x_groq
                        reported = (chunk["x_groq"] or {}).get("usage")
                    if reported is not None:
                        _fill_usage(usage, reported)
                    # Compatible servers may send null choices or deltas (e.g. Azure filter chunks).
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("delta")
                        if delta is not None:
                            thinking = delta.get("reasoning_content") or delta.get("reasoning")
                            if thinking and isinstance(thinking, str):
                                yield Thinking(thinking)
                            content = delta.get("content")
                            if content and isinstance(content, str):
                                text.append(content)
                                yield content
                            if delta.get("refusal"):
                                refusal.append(str(delta["refusal"]))
                            for call in delta.get("tool_calls") or ():
                                calls.add(call)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
        except openai.APIStatusError as exc:
            if _prompt_filtered(exc):
                # Azure OpenAI answers a prompt its content filter flags with 400, code "content_filter".
                usage.finish_reason = "content_filter"
                raise Refused(self.name, "its content filter blocked the prompt") from None
            detail = self._detail(exc)
            error = status_error(self.name, exc.status_code, detail, key_env=self.config.api_key_env,
                                 model=request.model,
                                 retry_after=parse_retry_after(exc.response.headers.get("retry-after")))
            if _context_overflow(exc):
                error.error_type = "user_message_too_long"
            raise error from None
        except openai.APITimeoutError:
            raise ProviderError(f"{self.name} timed out", retryable=True) from None
        except openai.APIConnectionError as exc:
            raise ProviderError(f"{self.name} connection failed: {cause_name(exc)}", retryable=True) from None
        except _http_errors("TimeoutException"):  # mid-stream, from the raw body
            raise ProviderError(f"{self.name} timed out", retryable=True) from None
        except openai.APIError as exc:  # an {"error": ...} event inside a 200 stream
            raise ProviderError(f"{self.name} failed mid-stream: {self._detail(exc) or 'error event'}",
                                retryable=True) from None
        except (ValueError, AttributeError, TypeError):  # an event that is not JSON, or not a chunk's shape
            raise ProviderError(f"{self.name} sent a malformed stream", retryable=True) from None
        except _http_errors("TransportError") as exc:  # older SDKs let mid-stream transport errors through
            raise ProviderError(f"{self.name} connection failed: {type(exc).__name__}", retryable=True) from None
        usage.finish_reason = finish if isinstance(finish, str) else None
        if refusal:
            raise Refused(self.name, "".join(refusal)[:300])
        self._outcome(finish, done, calls, "".join(text), usage)

    def _outcome(self, finish: object, done: bool, calls: ToolCallDeltas, text: str, usage: Usage) -> None:
        """How the reply ended, from its finish reason; without one, from how the stream ended."""
        if not finish:
            if not done:
                # The SDK ends quietly when the body ends without [DONE]: never pass on a cut reply.
                raise ProviderError(f"{self.name} ended the stream before finishing the reply", retryable=True)
            # [DONE] ends the stream cleanly, though many compatible servers (OpenRouter, older
            # Ollama) never name a finish reason: it stopped, or it asked for the tools it named.
            if calls and not calls.complete():
                raise ProviderError(f"{self.name} ended the stream in the middle of a tool call", retryable=True)
            finish = "tool_calls" if calls else "stop"
        if finish == "error":  # OpenRouter: the model failed mid-reply (an error object, when sent, came first)
            raise ProviderError(f"{self.name} failed mid-stream: the reply ended in an error", retryable=True)
        if finish == "content_filter":
            raise Refused(self.name, "its content filter stopped the reply")
        if finish == "length":
            usage.outcome = "truncated"
        elif finish in ("tool_calls", "function_call") or (calls and finish == "stop"):
            usage.outcome = "tool_call"
            usage.calls = calls.tool_calls()
            usage.tool_calls = [c.name for c in usage.calls]
            usage.turn = Message("assistant", text, tool_calls=tuple(usage.calls))

    def body(self, request: ChatRequest) -> dict[str, Any]:
        """The chat.completions.create() arguments for `request`, with this model's rules applied."""
        info = model_info(request.model)
        messages = request.messages if self.vision(request.model) else without_images(request.messages,
                                                                                        request.model)
        body: dict[str, Any] = {
            "model": request.model,
            "messages": _messages(request.system, messages, reasoning=info.reasoning),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None and not info.reasoning:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_completion_tokens" if info.reasoning else "max_tokens"] = request.max_tokens
        if request.stop:
            body["stop"] = list(request.stop)
        if request.tools:
            body["tools"] = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                                               "parameters": dict(t.parameters)}}
                             for t in request.tools]
        # Params go through extra_body, which the SDK merges over the body last: any key passes
        # (create() rejects keywords it does not know) and may override the ones set above.
        params = dict(request.params)
        params.update(params.pop("extra_body", None) or {})
        if info.reasoning:
            for key in SAMPLING:
                params.pop(key, None)
        body["extra_body"] = params or None
        return body

    async def aclose(self) -> None:
        """Close the SDK client; the next `stream()` creates a new one."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _detail(self, exc: Any) -> str:
        """The provider's own error message, shortened and with the key masked if echoed."""
        return self._detail_of(exc.body)

    def _detail_of(self, body: object) -> str:
        # The SDK unwraps {"error": ...}; what remains is a dict, or a bare string (e.g. ollama).
        message: object = body
        if isinstance(message, dict):
            error = message.get("error")
            message = message.get("message") or (error.get("message") if isinstance(error, dict) else error)
        if not isinstance(message, str):
            return ""
        if self._key:
            message = message.replace(self._key, "***")
        return message[:200]


def _messages(system: str, messages: tuple[Message, ...] | list[Message], *,
              reasoning: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if system:
        # o-series and gpt-5 take the system prompt as a `developer` message.
        out.append({"role": "developer" if reasoning else "system", "content": system})
    out.extend(_message(m) for m in messages)
    return out


def _message(m: Message) -> dict[str, Any]:
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.text}
    out: dict[str, Any] = {"role": m.role, "content": m.text}
    if m.tool_calls:
        out["content"] = m.text or None
        out["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                             for c in m.tool_calls]
    if m.images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": m.text}] if m.text else []
        parts += [{"type": "image_url", "image_url": {"url": _image_url(img.url, img.content_type, img.data)}}
                  for img in m.images]
        out["content"] = parts
    if m.name and not m.tool_calls:
        out["name"] = _NAME_CHARS.sub("_", m.name)[:64]
    return out


#: OpenAI's rule for `name`: letters, digits, _ and -.
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


def _image_url(url: str, content_type: str, data: bytes | None) -> str:
    if data is None:
        return url
    import base64

    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def _fill_usage(usage: Usage, reported: Any) -> None:
    if not isinstance(reported, dict):
        return
    usage.input_tokens = reported.get("prompt_tokens")
    usage.output_tokens = reported.get("completion_tokens")
    completion = reported.get("completion_tokens_details")
    if isinstance(completion, dict) and completion.get("reasoning_tokens") is not None:
        usage.reasoning_tokens = completion["reasoning_tokens"]
    prompt = reported.get("prompt_tokens_details")
    if isinstance(prompt, dict) and prompt.get("cached_tokens") is not None:
        usage.cached_tokens = prompt["cached_tokens"]


def _prompt_filtered(exc: Any) -> bool:
    body = exc.body if isinstance(exc.body, dict) else {}
    return exc.status_code == 400 and body.get("code") == "content_filter"


def _context_overflow(exc: Any) -> bool:
    body = exc.body if isinstance(exc.body, dict) else {}
    return body.get("code") == "context_length_exceeded" or "maximum context length" in str(body.get("message"))


#: Environment variables httpx reads for proxies; the lean transport would not honour them.
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")


def _http_client(openai: Any) -> Any:
    """The SDK's client over polybot's lean transport (bench/README.md, issue #16), or over httpx's
    own when a proxy is configured or POLYBOT_HTTP_TRANSPORT=httpx asks for it."""
    if os.environ.get("POLYBOT_HTTP_TRANSPORT") == "httpx" or any(os.environ.get(v) for v in PROXY_VARIABLES):
        return openai.DefaultAsyncHttpxClient(verify=tls_context())
    from polybot.providers.pool import LeanTransport

    return openai.DefaultAsyncHttpxClient(transport=LeanTransport())


@cache
def _sdk() -> Any:
    """The openai SDK, imported on first use (the build reads this module without it)."""
    return importlib.import_module("openai")


@cache
def _http_errors(name: str) -> tuple[type[Exception], ...]:
    """One exception class of the HTTP libraries (SDK 1.x uses httpx, newer ones httpx2), from each
    that is installed: `TimeoutException` (raised while reading a streamed body), `TransportError`."""
    found: list[type[Exception]] = []
    for module in ("httpx", "httpx2"):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)
