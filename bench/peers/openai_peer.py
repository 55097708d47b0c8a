"""The peer for streaming benchmarks: one fastapi_poe bot streaming from AsyncOpenAI, by hand.

`--sync` is the seed-style design instead: a synchronous OpenAI client inside the async handler,
which blocks the event loop while it waits for the provider.

Run: python openai_peer.py PORT PROVIDER_BASE_URL [--sync]
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterable

import fastapi_poe as fp
import openai
import uvicorn


class Peer(fp.PoeBot):
    def __init__(self, base_url: str, sync: bool) -> None:
        super().__init__(path="/Stream", access_key=None, bot_name=None)
        self.client = openai.AsyncOpenAI(api_key="k", base_url=base_url, max_retries=0)
        self.sync_client = openai.OpenAI(api_key="k", base_url=base_url, max_retries=0)
        self.sync = sync

    async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[fp.PartialResponse]:
        messages = [{"role": "system", "content": "You are a helpful assistant."}] + [
            {"role": "assistant" if m.role == "bot" else "user", "content": m.content} for m in request.query]
        if self.sync:
            for chunk in self.sync_client.chat.completions.create(model="m", messages=messages, stream=True):  # type: ignore[arg-type]
                if chunk.choices and chunk.choices[0].delta.content:
                    yield fp.PartialResponse(text=chunk.choices[0].delta.content)
            return
        stream = await self.client.chat.completions.create(model="m", messages=messages, stream=True)  # type: ignore[arg-type]
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield fp.PartialResponse(text=chunk.choices[0].delta.content)


if __name__ == "__main__":
    port, base = int(sys.argv[1]), sys.argv[2]
    app = fp.make_app(Peer(base, "--sync" in sys.argv), allow_without_key=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", backlog=4096)
