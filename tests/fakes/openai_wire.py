"""A fake OpenAI chat-completions endpoint speaking the real streaming wire format (SSE).

Shaped after api.openai.com: a first chunk carrying the role and empty content, one chunk per
text delta, a chunk with finish_reason "stop", a usage chunk with empty choices when the request
asked for `stream_options.include_usage` (earlier chunks then carry `"usage": null`), `[DONE]`.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tests.fakes.wire import FakeProvider, Reply, sse

_ids = itertools.count(1)

#: (type, code) of OpenAI's error bodies by status.
ERRORS: dict[int, tuple[str, str | None]] = {
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    529: ("server_error", "overloaded"),
}


class FakeOpenAI(FakeProvider):
    paths = ("/v1/chat/completions", "/chat/completions")

    def __init__(self, *replies: Reply, default: Reply | None = None) -> None:
        super().__init__(*replies, default=default)
        #: Each request's query parameters (e.g. Azure's api-version), parallel to `requests`.
        self.queries: list[dict[str, str]] = []

    async def _handle(self, request: Request) -> Response:
        # Per-request state, so concurrent streams never read each other's body.
        raw = await request.body()
        request.state.body = json.loads(raw) if raw else {}
        request.state.head = {"id": f"chatcmpl-fake{next(_ids)}", "object": "chat.completion.chunk",
                              "created": int(time.time()), "model": request.state.body.get("model", "fake"),
                              "system_fingerprint": "fp_fake"}
        self.queries.append(dict(request.query_params))  # the body is cached: no await until recorded
        return await super()._handle(request)

    def _chunk(self, request: Request, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        if _include_usage(request):
            extra.setdefault("usage", None)
        return sse({**request.state.head, "choices": choices, **extra})

    def error_body(self, status: int) -> Any:
        kind, code = ERRORS.get(status, ("invalid_request_error", None))
        model = (self.requests[-1].json or {}).get("model") if self.requests else None
        message = (f"The model `{model}` does not exist or you do not have access to it." if status == 404
                   else f"fake error {status}")
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def start_events(self, reply: Reply, request: Request) -> list[bytes]:
        delta = {"role": "assistant", "content": "", "refusal": None}
        return [self._chunk(request, [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}])]

    def chunk_event(self, text: str, request: Request) -> bytes:
        return self._chunk(request, [{"index": 0, "delta": {"content": text}, "logprobs": None,
                                      "finish_reason": None}])

    def end_events(self, reply: Reply, request: Request) -> list[bytes]:
        events = [self._chunk(request, [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}])]
        if _include_usage(request):
            usage = {"prompt_tokens": reply.usage[0], "completion_tokens": reply.usage[1],
                     "total_tokens": sum(reply.usage)}
            events.append(self._chunk(request, [], usage=usage))
        events.append(b"data: [DONE]\n\n")
        return events


def _include_usage(request: Request) -> bool:
    options = request.state.body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def loads_sse(raw: bytes) -> list[Any]:
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: {")]
