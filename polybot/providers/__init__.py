"""Provider adapters, registered by kind the same way an outside adapter would be."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from polybot.config import ProviderConfig
from polybot.providers.base import ChatRequest, Image, Message, Provider, ProviderError, Usage

__all__ = ["ChatRequest", "Image", "Message", "Provider", "ProviderError", "Usage", "adapter_class",
           "create_provider", "known_kinds", "load_plugins", "register_kind"]

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


#: The entry-point group outside adapter packages register their kinds in (see docs/providers.md).
ENTRY_POINT_GROUP = "polybot.providers"
_plugin_problems: list[tuple[str, str]] | None = None


def load_plugins() -> list[tuple[str, str]]:
    """Load every installed `polybot.providers` entry point, once; the problems as (plugin, message).

    An entry point named KIND that loads a `Provider` subclass registers it as KIND; one that loads
    any other callable is called with no arguments and registers its kinds with `register_kind`.
    """
    global _plugin_problems
    if _plugin_problems is None:
        from importlib.metadata import entry_points

        _plugin_problems = []
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            where = f"provider plugin {ep.name!r} ({ep.value}"
            where += f", from {ep.dist.name})" if ep.dist is not None else ")"
            try:
                loaded = ep.load()
                if isinstance(loaded, type) and issubclass(loaded, Provider):
                    register_kind(ep.name, loaded)
                elif callable(loaded):
                    loaded()
                else:
                    _plugin_problems.append((where, f"expected a Provider subclass or a function, "
                                                    f"but received {loaded!r}"))
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not stop polybot
                _plugin_problems.append((where, f"failed to load: {type(exc).__name__}: {exc}"))
    return list(_plugin_problems)


def known_kinds() -> list[str]:
    """Every registered adapter kind: built-in, from a plugin, or registered in code."""
    load_plugins()
    return sorted(_KINDS)


def _factory(kind: str) -> ProviderFactory:
    factory = _KINDS[kind]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        _KINDS[kind] = factory
    return factory


def adapter_class(kind: str) -> type[Provider] | None:
    """The adapter class of `kind` (its `Options` and `rules`), without importing any SDK.

    None for an unknown kind, or one registered as a plain factory function.
    """
    if kind not in _KINDS:
        return None
    factory = _factory(kind)
    return factory if isinstance(factory, type) and issubclass(factory, Provider) else None


def create_provider(name: str, config: ProviderConfig) -> Provider:
    """Instantiate the adapter for `config.kind` (its SDK is imported on first use)."""
    return _factory(config.kind)(name, config)
