"""A fake Anthropic Messages endpoint speaking the real streaming wire format (SSE).

Shaped after api.anthropic.com: `message_start` (with usage.input_tokens), `content_block_start`,
`ping`, one `content_block_delta` (text_delta) per chunk, `content_block_stop`, `message_delta`
(stop_reason, usage.output_tokens), `message_stop`. Errors use Anthropic's bodies
({"type": "error", "error": {"type": ..., "message": ...}, "request_id": ...}). Like the real API it
answers 400 to a request without max_tokens or anthropic-version, and 401 to one without a key.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.fakes.wire import FakeProvider, Recorded, Reply, sse

_ids = itertools.count(1)

#: (error type, message) of Anthropic's error bodies by status.
ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    404: ("not_found_error", "model: {model}"),
    429: ("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}


class FakeAnthropic(FakeProvider):
    paths = ("/v1/messages",)

    async def _handle(self, request: Request) -> Response:
        # Per-request state, so concurrent streams never read each other's body.
        raw = await request.body()
        request.state.body = json.loads(raw) if raw else {}
        problem = _invalid(request)
        if problem is not None:
            self.requests.append(Recorded(request.url.path, dict(request.headers), request.state.body))
            return JSONResponse(_error(problem[0], problem[1]), status_code=problem[0])
        return await super()._handle(request)

    async def _events(self, reply: Reply, request: Request) -> AsyncIterator[bytes]:
        # Anthropic names every event and the SDK skips unnamed ones, so the base's unnamed garbage
        # would test nothing: name it, so that the SDK tries (and fails) to parse it.
        async for event in super()._events(reply, request):
            yield b"event: content_block_delta\n" + event if event.startswith(b"data: {this is not") else event

    def error_body(self, status: int) -> Any:
        model = (self.requests[-1].json or {}).get("model") if self.requests else None
        kind, message = ERRORS.get(status, ("api_error", f"fake error {status}"))
        return _error(status, message.format(model=model))

    def start_events(self, reply: Reply, request: Request) -> list[bytes]:
        message = {"id": f"msg_fake{next(_ids)}", "type": "message", "role": "assistant", "content": [],
                   "model": request.state.body.get("model", "fake"), "stop_reason": None,
                   "stop_sequence": None, "usage": {"input_tokens": reply.usage[0], "output_tokens": 1}}
        return [
            sse({"type": "message_start", "message": message}, "message_start"),
            sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start"),
            sse({"type": "ping"}, "ping"),
        ]

    def chunk_event(self, text: str, request: Request) -> bytes:
        return sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
                   "content_block_delta")

    def end_events(self, reply: Reply, request: Request) -> list[bytes]:
        return [
            sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                 "usage": {"output_tokens": reply.usage[1]}}, "message_delta"),
            sse({"type": "message_stop"}, "message_stop"),
        ]


def overloaded_event() -> bytes:
    """An `error` event inside a 200 stream, as Anthropic sends when overloaded mid-reply."""
    return sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")


def _error(status: int, message: str) -> dict[str, Any]:
    kind = ERRORS.get(status, ("api_error", ""))[0]
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": f"req_fake{next(_ids)}"}


def _invalid(request: Request) -> tuple[int, str] | None:
    """What the real API would refuse before streaming: (status, message), or None."""
    headers, body = request.headers, request.state.body
    if not (headers.get("x-api-key") or headers.get("authorization")):
        return 401, "x-api-key header is required"
    if not headers.get("anthropic-version"):
        return 400, "anthropic-version: header is required"
    for field in ("model", "messages", "max_tokens"):
        if field not in body:
            return 400, f"{field}: Field required"
    if any(m.get("role") not in ("user", "assistant") for m in body["messages"]):
        return 400, "messages: roles must be 'user' or 'assistant'"
    return None
