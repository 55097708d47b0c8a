"""polybot: a folder of plain files -> a fleet of Poe server bots backed by any LLM provider."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
