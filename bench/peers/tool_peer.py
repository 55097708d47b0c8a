"""The peer for the tool benchmark: a hand-written fastapi_poe bot running the tool loop with
AsyncOpenAI (what a careful engineer writes: accumulate tool_calls deltas, call, send results).

Run: python tool_peer.py PORT PROVIDER_BASE_URL
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterable
from typing import Any

import fastapi_poe as fp
import openai
import uvicorn

TOOLS = [{"type": "function", "function": {"name": "get_time", "description": "The time in a zone.",
                                           "parameters": {"type": "object", "properties": {
                                               "zone": {"type": "string"}}, "required": ["zone"]}}}]


def get_time(zone: str) -> str:
    return f"12:00 {zone}"


class Peer(fp.PoeBot):
    def __init__(self, base_url: str) -> None:
        super().__init__(path="/Tools", access_key=None, bot_name=None)
        self.client = openai.AsyncOpenAI(api_key="k", base_url=base_url, max_retries=0)

    async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[fp.PartialResponse]:
        messages: list[Any] = [{"role": "system", "content": "You tell the time."}] + [
            {"role": "assistant" if m.role == "bot" else "user", "content": m.content} for m in request.query]
        for _ in range(5):
            stream = await self.client.chat.completions.create(model="m", messages=messages, stream=True,
                                                               tools=TOOLS)  # type: ignore[arg-type]
            calls: dict[int, dict[str, str]] = {}
            async for chunk in stream:
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield fp.PartialResponse(text=choice.delta.content)
                    for call in choice.delta.tool_calls or ():
                        entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                        entry["id"] = call.id or entry["id"]
                        if call.function is not None:
                            entry["name"] = call.function.name or entry["name"]
                            entry["arguments"] += call.function.arguments or ""
            if not calls:
                return
            messages.append({"role": "assistant", "content": None, "tool_calls": [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in calls.values()]})
            for c in calls.values():
                messages.append({"role": "tool", "tool_call_id": c["id"],
                                 "content": get_time(**json.loads(c["arguments"]))})


if __name__ == "__main__":
    port, base = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(fp.make_app(Peer(base), allow_without_key=True), host="127.0.0.1", port=port, log_level="warning")
