"""polybot: a folder of plain files -> a fleet of Poe server bots backed by any LLM provider.

The public API for hooks.py and outside adapters. Names resolve lazily so that `polybot --help`
and a hooks.py that imports one name don't pay for the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from polybot.version import __version__

__all__ = [
    "ChatRequest",
    "File",
    "Image",
    "Message",
    "PolybotError",
    "Problem",
    "Provider",
    "ProviderError",
    "Runtime",
    "Usage",
    "__version__",
    "register_kind",
]

_WHERE = {
    "ChatRequest": "polybot.providers.base",
    "File": "polybot.providers.base",
    "Image": "polybot.providers.base",
    "Message": "polybot.providers.base",
    "Provider": "polybot.providers.base",
    "ProviderError": "polybot.providers.base",
    "Usage": "polybot.providers.base",
    "register_kind": "polybot.providers",
    "PolybotError": "polybot.errors",
    "Problem": "polybot.errors",
    "Runtime": "polybot.runtime",
}

if TYPE_CHECKING:
    from polybot.errors import PolybotError, Problem
    from polybot.providers import register_kind
    from polybot.providers.base import ChatRequest, Image, Message, Provider, ProviderError, Usage
    from polybot.providers.base import FileOut as File
    from polybot.runtime import Runtime


_ALIASES = {"File": "FileOut"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), _ALIASES.get(name, name))
    raise AttributeError(f"module 'polybot' has no attribute {name!r}")
