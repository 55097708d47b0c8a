"""Charging for replies (`[poe.pricing]`) through Poe's cost API, as fastapi_poe implements it.

Before the provider is called, the most a reply can cost is authorized (per-reply charge, the
prompt's tokens estimated from its length, the output limit); after it, the actual amount is
captured from the usage the adapter reports, never more than was authorized. A user without
enough funds gets an `insufficient_fund` error before any provider call. Outside Poe (dev, chat,
the OpenAI endpoint: no `bot_query_id`) nothing is charged.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from decimal import Decimal

import fastapi_poe as fp

from polybot.config import PoePricing
from polybot.providers.base import Usage

log = logging.getLogger("polybot")

#: Poe's bot API; POLYBOT_POE_BASE_URL (shared with `sync`) points it elsewhere (a proxy, a test's fake).
DEFAULT_BASE_URL = "https://api.poe.com/bot/"
#: Output tokens assumed for authorization when the bot sets no max_tokens.
DEFAULT_OUTPUT_CAP = 4096
MILLI_CENTS_PER_USD = 100_000


def milli_cents(usd: Decimal) -> int:
    """USD as Poe's unit (thousandths of a cent), rounded up: never charge less than priced."""
    return math.ceil(usd * MILLI_CENTS_PER_USD)


def most_tokens(prompt_chars: int, max_tokens: int | None) -> tuple[int, int]:
    """The most input and output tokens a reply can use: its prompt's tokens estimated generously
    from its length (~4 characters per token in English, counted as 3), and its output limit."""
    return prompt_chars // 3 + 1, max_tokens or DEFAULT_OUTPUT_CAP


def _usd(value: float | str | None) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


@dataclass(slots=True)
class Meter:
    """Authorize and capture one reply's cost."""

    pricing: PoePricing
    bot: fp.PoeBot
    authorized: int = 0

    def estimate(self, prompt_chars: int, max_tokens: int | None) -> int:
        p = self.pricing
        tokens_in, tokens_out = most_tokens(prompt_chars, max_tokens)
        usd = _usd(p.per_reply) + tokens_in * _usd(p.prompt) + tokens_out * _usd(p.completion)
        return milli_cents(usd)

    def actual(self, usage: Usage) -> int:
        p = self.pricing
        usd = _usd(p.per_reply) + (usage.input_tokens or 0) * _usd(p.prompt) + \
            (usage.output_tokens or 0) * _usd(p.completion)
        return min(milli_cents(usd), self.authorized)

    async def authorize(self, request: fp.QueryRequest, amount: int) -> fp.ErrorResponse | None:
        """None when authorized (or nothing to charge); else the error event to end the reply with."""
        if amount <= 0:
            return None
        try:
            await self.bot.authorize_cost(request, fp.CostItem(amount_usd_milli_cents=amount,
                                                               description="reply"), base_url=base_url())
        except fp.InsufficientFundError:
            return fp.ErrorResponse(text="Not enough Poe points for this reply.", allow_retry=False,
                                    error_type="insufficient_fund")
        except Exception as exc:  # noqa: BLE001 - Poe's cost API failing must not leak details
            log.warning("authorizing the cost of a reply of %s failed: %s", self.bot.path, type(exc).__name__)
            return fp.ErrorResponse(text="The bot could not authorize this reply's cost; try again.",
                                    allow_retry=True)
        self.authorized = amount
        return None

    async def capture(self, request: fp.QueryRequest, usage: Usage) -> None:
        amount = self.actual(usage)
        if amount <= 0:
            return
        try:
            await self.bot.capture_cost(request, fp.CostItem(amount_usd_milli_cents=amount, description="reply"),
                                        base_url=base_url())
        except Exception as exc:  # noqa: BLE001 - logged; the reply itself was delivered
            log.warning("capturing the cost of a reply of %s failed: %s", self.bot.path, type(exc).__name__)


def base_url() -> str:
    """The base fastapi_poe's cost calls take: they append `bot/cost/...` to it."""
    url = os.environ.get("POLYBOT_POE_BASE_URL") or DEFAULT_BASE_URL
    url = url if url.endswith("/") else url + "/"
    return url.removesuffix("bot/")


def charges(pricing: PoePricing | None) -> bool:
    """Whether a server bot with these prices charges per reply."""
    return pricing is not None and any(v not in (None, 0, "0") for v in
                                       (pricing.per_reply, pricing.prompt, pricing.completion))
