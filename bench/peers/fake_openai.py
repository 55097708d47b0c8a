"""A fake OpenAI chat-completions endpoint for benchmarks: streams CHUNKS chunks, DELAY ms apart.

Run: python fake_openai.py PORT CHUNKS DELAY_MS
"""

from __future__ import annotations

import asyncio
import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route


def make(chunks: int, delay_ms: float) -> Starlette:
    head = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}

    async def events() -> object:
        for i in range(chunks):
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            data = {**head, "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]}
            yield f"data: {json.dumps(data)}\n\n".encode()
        done = {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode()

    async def completions(request: Request) -> StreamingResponse:
        await request.body()
        return StreamingResponse(events(), media_type="text/event-stream")  # type: ignore[arg-type]

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


if __name__ == "__main__":
    port, chunks, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    uvicorn.run(make(chunks, delay), host="127.0.0.1", port=port, log_level="warning", backlog=4096)
