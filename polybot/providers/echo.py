"""The offline provider: replies deterministically with what it received. No key, no network."""

from __future__ import annotations

from collections.abc import AsyncIterator

from polybot.providers.base import ChatRequest, Provider, Usage


class EchoProvider(Provider):
    """Echoes the last user message, so a fresh clone answers with no API keys.

    With `params = { echo = "full" }` it echoes the whole request instead (system prompt and
    every turn): handy for seeing exactly what a provider would receive.
    """

    async def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[str]:
        if request.params.get("echo") == "full":
            parts = [f"[system]\n{request.system}"] + [f"[{m.role}]\n{m.text}" for m in request.messages]
            text = "\n\n".join(parts)
        else:
            text = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
        words = text.split(" ")
        usage.input_tokens = sum(len(m.text.split()) for m in request.messages) + len(request.system.split())
        usage.output_tokens = len(words)
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word
