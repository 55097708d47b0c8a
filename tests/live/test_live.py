"""Opt-in checks against the real providers: skipped (with the reason) unless the key is set.

Run them with e.g. `OPENAI_API_KEY=... python -m pytest -m live tests/live`. CI runs without keys.
"""

from __future__ import annotations

import os

import pytest

from polybot.config import builtin_presets
from polybot.providers import create_provider
from polybot.providers.base import ChatRequest, Message, Usage

CASES = [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY"), ("gemini", "GEMINI_API_KEY")]


@pytest.mark.live
@pytest.mark.parametrize("preset,variable", CASES)
async def test_real_provider_streams_a_reply(preset: str, variable: str) -> None:
    if not os.environ.get(variable):
        pytest.skip(f"{variable} is not set: live test of {preset} skipped")
    config = builtin_presets()[preset]
    provider = create_provider(preset, config)
    usage = Usage()
    try:
        chunks = [c async for c in provider.stream(ChatRequest(
            model=config.default_model or "", system="Answer with one word.",
            messages=(Message("user", "Say hello."),), max_tokens=20), usage)]
    finally:
        await provider.aclose()
    assert "".join(chunks).strip()
