"""What each known model can do, kept in one place: vision, reasoning rules, output limits.

Matched by the longest name prefix, after any routing prefix (`openai/gpt-4o` on OpenRouter,
`accounts/fireworks/models/...`). Unknown models get the conservative defaults; a provider's
`vision` flag in providers.toml overrides the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True, slots=True)
class ModelInfo:
    vision: bool = False
    #: OpenAI reasoning models: `max_completion_tokens`, and no temperature or other sampling options.
    reasoning: bool = False
    #: The most output tokens the model produces (Anthropic requires max_tokens: this is its default).
    max_output: int | None = None
    #: The highest temperature the API accepts.
    temperature_max: float = 2.0
    #: Rejects `temperature` and `top_p` in one request (newer Claude models).
    exclusive_sampling: bool = False


_CLAUDE = ModelInfo(vision=True, max_output=8192, temperature_max=1.0)

#: prefix -> what the model can do. Longest prefix wins.
TABLE: dict[str, ModelInfo] = {
    # OpenAI
    "gpt-4o": ModelInfo(vision=True, max_output=16384),
    "gpt-4o-mini": ModelInfo(vision=True, max_output=16384),
    "gpt-4.1": ModelInfo(vision=True, max_output=32768),
    "gpt-4-turbo": ModelInfo(vision=True, max_output=4096),
    "gpt-4": ModelInfo(max_output=8192),
    "gpt-3.5": ModelInfo(max_output=4096),
    "gpt-5": ModelInfo(vision=True, reasoning=True, max_output=128000),
    "gpt-5-chat": ModelInfo(vision=True, max_output=16384),
    "o1": ModelInfo(vision=True, reasoning=True, max_output=100000),
    "o1-mini": ModelInfo(reasoning=True, max_output=65536),
    "o3": ModelInfo(vision=True, reasoning=True, max_output=100000),
    "o3-mini": ModelInfo(reasoning=True, max_output=100000),
    "o4-mini": ModelInfo(vision=True, reasoning=True, max_output=100000),
    # Anthropic: temperature 0..1; Claude 4.5 and Opus 4.1 reject temperature with top_p.
    "claude-3-haiku": ModelInfo(vision=True, max_output=4096, temperature_max=1.0),
    "claude-3-5-haiku": _CLAUDE,
    "claude-3-5-sonnet": _CLAUDE,
    "claude-3-7-sonnet": ModelInfo(vision=True, max_output=64000, temperature_max=1.0),
    "claude-sonnet-4": ModelInfo(vision=True, max_output=64000, temperature_max=1.0),
    "claude-opus-4": ModelInfo(vision=True, max_output=32000, temperature_max=1.0),
    "claude-opus-4-1": ModelInfo(vision=True, max_output=32000, temperature_max=1.0, exclusive_sampling=True),
    "claude-opus-4-5": ModelInfo(vision=True, max_output=64000, temperature_max=1.0, exclusive_sampling=True),
    "claude-sonnet-4-5": ModelInfo(vision=True, max_output=64000, temperature_max=1.0, exclusive_sampling=True),
    "claude-haiku-4-5": ModelInfo(vision=True, max_output=64000, temperature_max=1.0, exclusive_sampling=True),
    "claude": ModelInfo(vision=True, max_output=4096, temperature_max=1.0),
    # Gemini: every current model reads images.
    "gemini": ModelInfo(vision=True, max_output=8192),
    "gemini-2.5": ModelInfo(vision=True, max_output=65536),
    # Open models behind OpenAI-compatible endpoints
    "deepseek-reasoner": ModelInfo(max_output=65536),
    "llama-3.2-11b-vision": ModelInfo(vision=True),
    "llama-3.2-90b-vision": ModelInfo(vision=True),
    "pixtral": ModelInfo(vision=True),
    "mistral-small": ModelInfo(vision=True),
    "llava": ModelInfo(vision=True),
}


@cache
def model_info(model: str) -> ModelInfo:
    """The table entry for `model` (longest matching prefix), or conservative defaults."""
    name = model.lower().rsplit("/", 1)[-1]
    best = ""
    for prefix in TABLE:
        if name.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return TABLE[best] if best else ModelInfo()
