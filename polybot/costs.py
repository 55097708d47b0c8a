"""What a reply cost in USD: `[limits.prices]` overrides, else the maintained `genai-prices` table.

The reply store records it, the spend caps count it. genai-prices takes ~0.35 s to import, so it is
imported on the first reply that needs a price, never at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache

from polybot.config import ModelPrice, ProviderConfig
from polybot.providers.base import Usage

log = logging.getLogger("polybot")

#: polybot's adapter kinds -> genai-prices provider ids (OpenAI-compatible ones match by api_base).
_PROVIDER_IDS = {"anthropic": "anthropic", "gemini": "google"}
_MILLION = Decimal(1_000_000)


def reply_cost(provider_name: str, provider: ProviderConfig, model: str, usage: Usage,
               prices: Mapping[str, ModelPrice] | None = None) -> Decimal | None:
    """The USD cost of one provider call's usage; None when no price is known (or no usage)."""
    if usage.input_tokens is None and usage.output_tokens is None:
        return None
    override = (prices or {}).get(f"{provider_name}/{model}")
    if override is not None:
        return _priced(override, usage)
    if provider.kind in ("echo", "poe"):
        return Decimal(0) if provider.kind == "echo" else None
    return _table_price(provider.kind, provider.api_base, model, usage.input_tokens or 0,
                        usage.output_tokens or 0, usage.cached_tokens or 0)


def _priced(price: ModelPrice, usage: Usage) -> Decimal:
    cached = usage.cached_tokens or 0
    fresh = max((usage.input_tokens or 0) - cached, 0)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    total = (Decimal(str(price.input)) * fresh + Decimal(str(cached_rate)) * cached
             + Decimal(str(price.output)) * (usage.output_tokens or 0))
    return total / _MILLION


@lru_cache(maxsize=4096)
def _table_price(kind: str, api_base: str | None, model: str, tokens_in: int, tokens_out: int,
                 cached: int) -> Decimal | None:
    from genai_prices import Usage as PriceUsage
    from genai_prices import calc_price

    provider_id = _PROVIDER_IDS.get(kind, "openai" if api_base in (None, "https://api.openai.com/v1") else None)
    usage = PriceUsage(input_tokens=tokens_in, output_tokens=tokens_out, cache_read_tokens=cached)
    try:
        if provider_id is not None:
            price = calc_price(usage, model, provider_id=provider_id)
        else:  # an OpenAI-compatible server: genai-prices knows the common ones by their URL
            price = calc_price(usage, model, provider_api_url=api_base)
    except LookupError:
        return None
    return Decimal(price.total_price)
