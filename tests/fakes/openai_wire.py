"""A fake OpenAI chat-completions endpoint speaking the real streaming wire format (SSE)."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.requests import Request

from tests.fakes.wire import FakeProvider, Reply, sse


class FakeOpenAI(FakeProvider):
    paths = ("/v1/chat/completions", "/chat/completions")

    def _head(self, request: Request) -> dict[str, Any]:
        body = self.requests[-1].json or {}
        return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.get("model", "fake")}

    def error_body(self, status: int) -> Any:
        kinds = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
        return {"error": {"message": f"fake error {status}", "type": "error", "code": kinds.get(status)}}

    def chunk_event(self, text: str, request: Request) -> bytes:
        delta = {"role": "assistant", "content": text}
        return sse({**self._head(request), "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})

    def end_events(self, reply: Reply, request: Request) -> list[bytes]:
        events = [sse({**self._head(request), "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})]
        body = self.requests[-1].json or {}
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": reply.usage[0], "completion_tokens": reply.usage[1],
                     "total_tokens": sum(reply.usage)}
            events.append(sse({**self._head(request), "choices": [], "usage": usage}))
        events.append(b"data: [DONE]\n\n")
        return events


def loads_sse(raw: bytes) -> list[Any]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: {")]
