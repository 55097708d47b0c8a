"""Provider adapters, registered by kind the same way an outside adapter would be."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from polybot.config import ProviderConfig
from polybot.providers.base import ChatRequest, Image, Message, Provider, ProviderError, Usage

__all__ = ["ChatRequest", "Image", "Message", "Provider", "ProviderError", "Usage", "create_provider",
           "known_kinds", "register_kind"]

ProviderFactory = Callable[[str, ProviderConfig], Provider]

# kind -> "module:Class"; imported on first use so a project pays only for the SDKs it uses.
_KINDS: dict[str, str | ProviderFactory] = {
    "openai": "polybot.providers.openai:OpenAIProvider",
    "anthropic": "polybot.providers.anthropic:AnthropicProvider",
    "gemini": "polybot.providers.gemini:GeminiProvider",
    "poe": "polybot.providers.poe:PoeProvider",
    "echo": "polybot.providers.echo:EchoProvider",
}


def register_kind(kind: str, factory: str | ProviderFactory) -> None:
    """Register an adapter for `kind`: a factory, or a lazy "module:Class" reference."""
    _KINDS[kind] = factory


def known_kinds() -> list[str]:
    """Every registered adapter kind, built-in or outside."""
    return sorted(_KINDS)


def create_provider(name: str, config: ProviderConfig) -> Provider:
    """Instantiate the adapter for `config.kind` (importing its SDK now, not before)."""
    factory = _KINDS[config.kind]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        _KINDS[config.kind] = factory
    return factory(name, config)
