"""Scripted provider streams for tool rounds: each request gets the next script, in the exact
event shapes of each provider's tool-calling stream (OpenAI tool_calls deltas, Anthropic tool_use
blocks with input_json_delta, Gemini functionCall parts).

Shapes follow the providers' API references: OpenAI "Function calling" streaming (a first chunk
with id, type and name and empty arguments, then argument fragments, then finish_reason
"tool_calls"); Anthropic "Streaming Messages" (content_block_start tool_use with empty input,
input_json_delta partial_json fragments, stop_reason "tool_use"); Gemini streamGenerateContent
(a functionCall part with args, finishReason "STOP").
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.wire import sse


@dataclass
class Call:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Turn:
    """One scripted reply: text, then tool calls (or an HTTP error status)."""

    text: str = ""
    calls: list[Call] = field(default_factory=list)
    status: int | None = None
    thinking: str = ""  # Anthropic thinking block (with a signature) / Gemini thought part


class ToolFake:
    """Serves all three protocols; records each request body."""

    def __init__(self, *turns: Turn) -> None:
        self.turns: deque[Turn] = deque(turns)
        self.bodies: list[dict[str, Any]] = []
        self.app = Starlette(routes=[
            Route("/v1/chat/completions", self._openai, methods=["POST"]),
            Route("/v1/messages", self._anthropic, methods=["POST"]),
            Route("/{version}/models/{rest:path}", self._gemini, methods=["POST"]),
        ])

    async def _next(self, request: Request) -> Turn:
        self.bodies.append(json.loads(await request.body()))
        return self.turns.popleft() if self.turns else Turn(text="(no more turns scripted)")

    async def _openai(self, request: Request) -> Response:
        turn = await self._next(request)
        if turn.status:
            return JSONResponse({"error": {"message": f"fake {turn.status}", "type": "server_error"}},
                                status_code=turn.status)
        return StreamingResponse(_stream(openai_events(turn)), media_type="text/event-stream")

    async def _anthropic(self, request: Request) -> Response:
        turn = await self._next(request)
        if turn.status:
            return JSONResponse({"type": "error", "error": {"type": "api_error", "message": "fake"}},
                                status_code=turn.status)
        return StreamingResponse(_stream(anthropic_events(turn)), media_type="text/event-stream")

    async def _gemini(self, request: Request) -> Response:
        turn = await self._next(request)
        if turn.status:
            return JSONResponse({"error": {"code": turn.status, "message": "fake", "status": "INTERNAL"}},
                                status_code=turn.status)
        return StreamingResponse(_stream(gemini_events(turn)), media_type="text/event-stream")


async def _stream(events: list[bytes]) -> AsyncIterator[bytes]:
    for event in events:
        yield event


def openai_events(turn: Turn) -> list[bytes]:
    head = {"id": "chatcmpl-tools", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
            "system_fingerprint": "fp_fake"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse({**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    events = [chunk({"role": "assistant", "content": None if turn.calls and not turn.text else "",
                     "refusal": None})]
    for word in _words(turn.text):
        events.append(chunk({"content": word}))
    for i, call in enumerate(turn.calls):
        args = json.dumps(call.arguments)
        events.append(chunk({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                             "function": {"name": call.name, "arguments": ""}}]}))
        for piece in (args[: len(args) // 2], args[len(args) // 2:]):
            events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    events.append(chunk({}, "tool_calls" if turn.calls else "stop"))
    events.append(sse({**head, "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 5,
                                                          "total_tokens": 25}}))
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_events(turn: Turn) -> list[bytes]:
    message = {"id": "msg_tools", "type": "message", "role": "assistant", "content": [], "model": "claude",
               "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 20, "output_tokens": 1}}
    events = [sse({"type": "message_start", "message": message}, "message_start")]
    index = 0
    if turn.thinking:
        events += [
            sse({"type": "content_block_start", "index": index,
                 "content_block": {"type": "thinking", "thinking": "", "signature": ""}}, "content_block_start"),
            sse({"type": "content_block_delta", "index": index,
                 "delta": {"type": "thinking_delta", "thinking": turn.thinking}}, "content_block_delta"),
            sse({"type": "content_block_delta", "index": index,
                 "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pk"}},
                "content_block_delta"),
            sse({"type": "content_block_stop", "index": index}, "content_block_stop"),
        ]
        index += 1
    if turn.text:
        events.append(sse({"type": "content_block_start", "index": index,
                           "content_block": {"type": "text", "text": ""}}, "content_block_start"))
        for word in _words(turn.text):
            events.append(sse({"type": "content_block_delta", "index": index,
                               "delta": {"type": "text_delta", "text": word}}, "content_block_delta"))
        events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        index += 1
    for call in turn.calls:
        args = json.dumps(call.arguments)
        events.append(sse({"type": "content_block_start", "index": index,
                           "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}},
                          "content_block_start"))
        for piece in ("", args[: len(args) // 2], args[len(args) // 2:]):
            events.append(sse({"type": "content_block_delta", "index": index,
                               "delta": {"type": "input_json_delta", "partial_json": piece}}, "content_block_delta"))
        events.append(sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
        index += 1
    events += [
        sse({"type": "message_delta", "delta": {"stop_reason": "tool_use" if turn.calls else "end_turn",
                                                "stop_sequence": None}, "usage": {"output_tokens": 15}},
            "message_delta"),
        sse({"type": "message_stop"}, "message_stop"),
    ]
    return events


def gemini_events(turn: Turn) -> list[bytes]:
    events = []
    if turn.thinking:
        events.append(sse({"candidates": [{"content": {"role": "model", "parts": [
            {"text": turn.thinking, "thought": True}]}, "index": 0}], "modelVersion": "gemini-2.5-flash"}))
    for word in _words(turn.text):
        events.append(sse({"candidates": [{"content": {"role": "model", "parts": [{"text": word}]}, "index": 0}],
                           "modelVersion": "gemini-2.5-flash"}))
    parts = [{"functionCall": {"name": c.name, "args": c.arguments},
              **({"thoughtSignature": "c2lnbmF0dXJl"} if i == 0 else {})} for i, c in enumerate(turn.calls)]
    usage = {"promptTokenCount": 20, "candidatesTokenCount": 5, "totalTokenCount": 25}
    last: dict[str, Any] = {"content": {"role": "model", "parts": parts or [{"text": ""}]}, "finishReason": "STOP",
                            "index": 0}
    events.append(sse({"candidates": [last], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash"}))
    return events


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)] if text else []
