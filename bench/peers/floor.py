"""The floor for streaming benchmarks: a minimal pass-through of the same protocol, by hand.

Starlette plus httpx plus json: it reads the provider's SSE and writes Poe's SSE frames, with no
SDK chunk models, no pydantic, no sse-starlette, no access key, no timeouts, no failover. Nothing
a real bot could ship; the least work one Python process does to relay these streams.

Run: python floor.py PORT PROVIDER_BASE_URL
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def make(base_url: str) -> Starlette:
    client = httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=2000,
                                                                max_keepalive_connections=2000))

    async def relay(messages: list[dict[str, str]]) -> AsyncIterator[bytes]:
        yield b'event: meta\r\ndata: {"content_type": "text/markdown", "refetch_settings": false, ' \
              b'"linkify": true, "suggested_replies": false}\r\n\r\n'
        body = {"model": "m", "messages": messages, "stream": True}
        async with client.stream("POST", f"{base_url}/chat/completions", json=body,
                                 headers={"Authorization": "Bearer k"}) as r:
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                for choice in json.loads(line[6:])["choices"]:
                    text = choice["delta"].get("content")
                    if text:
                        yield b"event: text\r\ndata: " + json.dumps({"text": text}).encode() + b"\r\n\r\n"
        yield b"event: done\r\ndata: {}\r\n\r\n"

    async def poe(request: Request) -> Response:
        query = (await request.json())["query"]
        messages = [{"role": "system", "content": "You are a helpful assistant."}] + [
            {"role": "assistant" if m["role"] == "bot" else "user", "content": m["content"]} for m in query]
        return StreamingResponse(relay(messages), media_type="text/event-stream")

    return Starlette(routes=[Route("/Stream", poe, methods=["POST"])])


if __name__ == "__main__":
    port, base = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(make(base), host="127.0.0.1", port=port, log_level="warning", backlog=4096)
