"""A fake Anthropic Messages endpoint speaking the real streaming wire format (SSE)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from tests.fakes.wire import FakeProvider, Reply, sse


class FakeAnthropic(FakeProvider):
    paths = ("/v1/messages",)

    def error_body(self, status: int) -> Any:
        kinds = {401: "authentication_error", 404: "not_found_error", 429: "rate_limit_error",
                 529: "overloaded_error"}
        return {"type": "error", "error": {"type": kinds.get(status, "api_error"), "message": f"fake error {status}"}}

    def start_events(self, reply: Reply, request: Request) -> list[bytes]:
        body = self.requests[-1].json or {}
        message = {"id": "msg_fake", "type": "message", "role": "assistant", "content": [],
                   "model": body.get("model", "fake"), "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": reply.usage[0], "output_tokens": 1}}
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
