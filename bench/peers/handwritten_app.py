"""The peer for serve benchmarks: N fastapi_poe bots written by hand, as a careful engineer would.

Each bot has its own system prompt and streams from the async SDK of its provider (round-robin
over OpenAI, Anthropic and Gemini). Run: python handwritten_app.py N PORT
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterable

import anthropic
import fastapi_poe as fp
import openai
import uvicorn
from google import genai

PROVIDERS = ("openai", "anthropic", "gemini")


class HandBot(fp.PoeBot):
    def __init__(self, name: str, provider: str, prompt: str, clients: dict[str, object]) -> None:
        super().__init__(path=f"/{name}", access_key=None, bot_name=None)
        self.provider = provider
        self.prompt = prompt
        self.clients = clients

    async def get_response(self, request: fp.QueryRequest) -> AsyncIterable[fp.PartialResponse]:
        client = self.clients["openai"]
        assert isinstance(client, openai.AsyncOpenAI)
        messages = [{"role": "system", "content": self.prompt}] + [
            {"role": "assistant" if m.role == "bot" else "user", "content": m.content} for m in request.query]
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True)  # type: ignore[arg-type]
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield fp.PartialResponse(text=chunk.choices[0].delta.content)

    async def get_settings(self, setting: fp.SettingsRequest) -> fp.SettingsResponse:
        return fp.SettingsResponse(introduction_message=f"Hi from {self.path[1:]}")


def make(n: int) -> object:
    clients: dict[str, object] = {
        "openai": openai.AsyncOpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1"),
        "anthropic": anthropic.AsyncAnthropic(api_key="unused", base_url="http://127.0.0.1:9"),
        "gemini": genai.Client(api_key="unused"),
    }
    bots = [HandBot(f"Bot{i:04d}", PROVIDERS[i % 3], f"You are Bot{i:04d}, a helpful assistant.", clients)
            for i in range(n)]
    return fp.make_app(bots, allow_without_key=True)


if __name__ == "__main__":
    n, port = int(sys.argv[1]), int(sys.argv[2])
    uvicorn.run(make(n), host="127.0.0.1", port=port, log_level="warning")  # type: ignore[arg-type]
