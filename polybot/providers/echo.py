"""The offline provider: replies deterministically with what it received. No key, no network."""

from __future__ import annotations

from collections.abc import AsyncIterator

from polybot.providers.base import ChatRequest, Provider, Usage


class EchoProvider(Provider):
    """Echoes the last user message, so a fresh clone answers with no API keys."""

    async def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[str]:
        last = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
        words = last.split(" ")
        usage.input_tokens = sum(len(m.text.split()) for m in request.messages)
        usage.output_tokens = len(words)
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word
