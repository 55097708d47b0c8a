"""Google Gemini (kind = "gemini"), through the official google-genai SDK's async client."""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import AsyncIterator
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

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
from polybot.providers.media import MediaError, fetch
from polybot.tls import tls_context

if TYPE_CHECKING:
    import httpx
    from google import genai

#: finishReason values that mean the model (or its safety system) declined.
REFUSED = frozenset({"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
                     "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"})


class GeminiOptions(BaseModel):
    """`params` for kind = "gemini" (GenerateContentConfig fields, snake_case)."""

    model_config = ConfigDict(extra="forbid")

    top_p: float | None = None
    top_k: float | None = None
    candidate_count: int | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    response_mime_type: str | None = None
    response_schema: dict[str, Any] | None = None
    thinking_config: dict[str, Any] | None = None  # { thinking_budget = 1024, include_thoughts = true }
    safety_settings: list[dict[str, Any]] | None = None
    #: Anything else, set on GenerateContentConfig unchecked.
    extra_body: dict[str, Any] | None = None


class GeminiProvider(Provider):
    """Streams from `client.aio.models.generate_content_stream`; one client per provider."""

    Options = GeminiOptions
    _client: genai.Client | None = None
    _http: httpx.AsyncClient

    def _get_client(self) -> genai.Client:
        if self._client is None:
            import httpx
            from google import genai
            from google.genai import types

            c = self.config
            # Our own httpx client: the SDK would otherwise switch to aiohttp whenever that happens
            # to be installed, changing timeouts and error types under us.
            self._http = httpx.AsyncClient(timeout=sdk_timeout(c, httpx.Timeout), verify=tls_context())
            options = types.HttpOptions(
                base_url=c.api_base,
                api_version=c.api_version,
                headers=c.request_headers() or None,
                timeout=int(c.timeout * 1000),
                retry_options=types.HttpRetryOptions(attempts=1),  # polybot retries and fails over itself
                httpx_async_client=self._http,
                # Given both clients and a context for its websockets, the SDK makes no TLS context
                # of its own (it would make three); polybot never calls it synchronously.
                httpx_client=httpx.Client(verify=tls_context()),
                async_client_args={"ssl": tls_context()},
            )
            self._client = genai.Client(api_key=require_key(self.name, c, os.environ), http_options=options)
        return self._client

    async def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[Chunk]:
        """Yield thought and text parts; map finishReason and prompt blocks onto outcomes."""
        errors, types = _sdk()
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
        params = dict(request.params)
        params.update(params.pop("extra_body", None) or {})
        config.update(params)
        if request.tools:
            config["tools"] = [types.Tool(function_declarations=[
                types.FunctionDeclaration(name=t.name, description=t.description,
                                          parameters_json_schema=dict(t.parameters))
                for t in request.tools])]
        messages = list(request.messages) if self.vision(request.model) else without_images(request.messages,
                                                                                              request.model)
        finish: str | None = None
        calls: list[ToolCall] = []
        model_parts: list[Any] = []  # sent back as they came on a tool round (thought signatures)
        try:
            contents = await _contents(types, merge_turns(messages), self.name)
            stream = await client.aio.models.generate_content_stream(
                model=request.model, contents=contents, config=types.GenerateContentConfig(**config))
            async for chunk in stream:
                if chunk.usage_metadata is not None:
                    _fill_usage(usage, chunk.usage_metadata)
                feedback = chunk.prompt_feedback
                if feedback is not None and feedback.block_reason is not None:
                    reason = _name(feedback.block_reason)
                    message = feedback.block_reason_message or ""
                    usage.finish_reason = reason
                    raise Refused(self.name, f"the prompt was blocked ({reason}){': ' + message if message else ''}")
                for candidate in chunk.candidates or ():
                    for part in (candidate.content.parts if candidate.content else None) or ():
                        if part.function_call is not None and part.function_call.name:
                            call = part.function_call
                            calls.append(ToolCall(call.id or f"call_{len(calls)}", call.name or "",
                                                  json.dumps(call.args or {})))
                            model_parts.append(part)
                            continue
                        if request.tools:
                            model_parts.append(part)
                        if part.text and part.thought:
                            yield Thinking(part.text)
                        elif part.text:
                            yield part.text
                    if candidate.finish_reason is not None:
                        finish = _name(candidate.finish_reason)
        except ProviderError:
            raise
        except errors.APIError as exc:
            headers = getattr(exc.response, "headers", None) or {}
            error = status_error(self.name, exc.code, (exc.message or "")[:200], key_env=self.config.api_key_env,
                                 model=request.model, retry_after=parse_retry_after(headers.get("retry-after")))
            if exc.code == 400 and "token count" in (exc.message or "").lower():
                error.error_type = "user_message_too_long"
            raise error from None
        except ValueError:  # an event that is not JSON (pydantic errors are ValueErrors too)
            raise ProviderError(f"{self.name} sent a malformed stream", retryable=True) from None
        except Exception as exc:  # noqa: BLE001 - transport errors of the SDK's HTTP library, timeouts
            raise ProviderError(f"{self.name} connection failed: {cause_name(exc)}", retryable=True) from None
        usage.finish_reason = finish
        if finish is None:
            raise ProviderError(f"{self.name} ended the stream before finishing the reply", retryable=True)
        if finish in REFUSED:
            raise Refused(self.name, f"the reply was stopped for {finish}")
        if finish == "MAX_TOKENS":
            usage.outcome = "truncated"
        elif calls or finish in ("MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL"):
            usage.outcome = "tool_call"
            usage.calls = calls
            usage.tool_calls = [c.name for c in calls]
            text = "".join(p.text for p in model_parts if p.text and not p.thought)
            usage.turn = Message("assistant", text, tool_calls=tuple(calls), state=model_parts, state_of=self.name)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aio.aclose()
            await self._http.aclose()
            self._client = None


def _fill_usage(usage: Usage, meta: Any) -> None:
    usage.input_tokens = meta.prompt_token_count
    usage.output_tokens = meta.candidates_token_count
    usage.reasoning_tokens = meta.thoughts_token_count
    usage.cached_tokens = meta.cached_content_token_count


def _name(value: Any) -> str:
    """An SDK enum (or a string it did not know) as the wire name, e.g. "MAX_TOKENS"."""
    return str(getattr(value, "value", value))


async def _contents(types: Any, turns: list[Message], provider: str) -> list[Any]:
    """Merged turns as Contents: tool rounds become functionCall and functionResponse parts."""
    out: list[Any] = []
    for m in turns:
        if m.role == "tool":
            part = types.Part.from_function_response(name=m.name or "tool", response={"result": m.text})
            if part.function_response is not None and m.tool_call_id and not m.tool_call_id.startswith("call_"):
                part.function_response.id = m.tool_call_id
            if out and out[-1].role == "user" and all(p.function_response for p in out[-1].parts):
                out[-1].parts.append(part)
            else:
                out.append(types.Content(role="user", parts=[part]))
        elif m.tool_calls:
            if m.state_of == provider and isinstance(m.state, list):
                parts = list(m.state)  # our own turn, thought signatures and all
            else:
                parts = ([types.Part(text=m.text)] if m.text else []) + [
                    types.Part(function_call=types.FunctionCall(name=c.name, args=_arguments(c.arguments)))
                    for c in m.tool_calls]
            out.append(types.Content(role="model", parts=parts))
        else:
            out.append(await _content(types, m))
    return out


def _arguments(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def _content(types: Any, m: Message) -> Any:
    """One turn. Gemini cannot fetch arbitrary URLs: images are downloaded and sent inline."""
    parts = [types.Part(text=m.text)] if m.text else []
    for img in m.images:
        try:
            data = img.data if img.data is not None else await fetch(img.url)
        except MediaError as exc:
            parts.append(types.Part(text=f"[image {img.name or 'attachment'!r} not sent: {exc}]"))
            continue
        parts.append(types.Part.from_bytes(data=data, mime_type=img.content_type))
    return types.Content(role="model" if m.role == "assistant" else "user", parts=parts)


@cache
def _sdk() -> tuple[Any, Any]:
    """google.genai's errors and types, imported on first use."""
    return importlib.import_module("google.genai.errors"), importlib.import_module("google.genai.types")
