"""A fake Gemini endpoint speaking the real streamGenerateContent SSE wire format."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from tests.fakes.wire import FakeProvider, Reply, sse

STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED",
          500: "INTERNAL", 503: "UNAVAILABLE"}


class FakeGemini(FakeProvider):
    paths = ("/{version}/models/{rest:path}",)

    def error_body(self, status: int) -> Any:
        return {"error": {"code": status, "message": f"fake error {status}", "status": STATUS.get(status, "UNKNOWN")}}

    def chunk_event(self, text: str, request: Request) -> bytes:
        return sse({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}],
                    "modelVersion": "fake"})

    def end_events(self, reply: Reply, request: Request) -> list[bytes]:
        usage = {"promptTokenCount": reply.usage[0], "candidatesTokenCount": reply.usage[1],
                 "totalTokenCount": sum(reply.usage)}
        return [sse({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": "STOP",
                                     "index": 0}], "usageMetadata": usage, "modelVersion": "fake"})]
