"""A fake OpenAI chat-completions endpoint for benchmarks: streams CHUNKS chunks, DELAY ms apart.

Run: python fake_openai.py PORT CHUNKS DELAY_MS [FAULT_RATE]
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def make(chunks: int, delay_ms: float, fault_rate: float = 0.0, seed: int = 7) -> Starlette:
    """With `fault_rate`, that share of calls fails: a third 429, a third 500, a third drop mid-stream."""
    head = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    rng = random.Random(seed)

    async def events(drop_after: int | None) -> object:
        for i in range(chunks):
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            if drop_after is not None and i == drop_after:
                raise ConnectionResetError("fake drop")
            data = {**head, "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}]}
            yield f"data: {json.dumps(data)}\n\n".encode()
        done = {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode()

    async def completions(request: Request) -> Response:
        await request.body()
        drop_after = None
        if fault_rate and rng.random() < fault_rate:
            kind = rng.choice(("429", "500", "drop"))
            if kind != "drop":
                return JSONResponse({"error": {"message": kind}}, status_code=int(kind),
                                    headers={"retry-after": "0"})
            drop_after = max(1, chunks // 2)
        return StreamingResponse(events(drop_after), media_type="text/event-stream")  # type: ignore[arg-type]

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


if __name__ == "__main__":
    port, chunks, delay = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
    uvicorn.run(make(chunks, delay, rate), host="127.0.0.1", port=port, log_level="warning", backlog=4096)
