"""A fake OpenAI endpoint for the tool benchmark: asks for `get_time` once, then answers.

A conversation whose last message is a tool result gets a short text reply; one whose user text
contains "plain" gets the text reply at once (no tool round); any other gets a tool call.

Run: python fake_openai_tools.py PORT
"""

from __future__ import annotations

import json
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

HEAD = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}


def _sse(choices: list[object]) -> str:
    return f"data: {json.dumps({**HEAD, 'choices': choices})}\n\n"


TEXT = "".join(_sse([{"index": 0, "delta": {"content": w}, "finish_reason": None}])
               for w in ("It ", "is ", "noon.")) + _sse([{"index": 0, "delta": {}, "finish_reason": "stop"}]) + \
    "data: [DONE]\n\n"
CALL = _sse([{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                                     "function": {"name": "get_time", "arguments": ""}}]},
              "finish_reason": None}]) + \
    _sse([{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"zone\": \"UTC\"}"}}]},
           "finish_reason": None}]) + \
    _sse([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]) + "data: [DONE]\n\n"


async def completions(request: Request) -> Response:
    body = json.loads(await request.body())
    last = body["messages"][-1]
    text = TEXT if last["role"] == "tool" or "plain" in str(last.get("content")) else CALL
    return Response(text, media_type="text/event-stream")


app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", backlog=4096)
