"""The one async streaming interface every provider adapter implements.

Adapters are where SDK differences end: above them nothing branches on provider names. An adapter
turns a `ChatRequest` into a stream of text chunks and maps every SDK failure to `ProviderError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from polybot.config import ProviderConfig


@dataclass(frozen=True, slots=True)
class Image:
    """An image attachment to send as vision input."""

    url: str
    content_type: str


@dataclass(frozen=True, slots=True)
class Message:
    """One provider-bound turn. Poe's `bot` role arrives here as `assistant`."""

    role: Literal["user", "assistant"]
    text: str
    images: tuple[Image, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """Everything an adapter needs for one reply."""

    model: str
    system: str
    messages: tuple[Message, ...]
    temperature: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    #: The calling bot's own Poe access key and its variable's name (the `poe` kind uses them).
    poe_access_key: str | None = None
    poe_access_key_env: str | None = None


@dataclass(slots=True)
class Usage:
    """Token counts, filled in by adapters when the provider reports them."""

    input_tokens: int | None = None
    output_tokens: int | None = None


class ProviderError(Exception):
    """A failed provider call, with a message that is safe to show a user (never a key).

    `retryable` is true for transient failures (429, 5xx, timeouts, dropped connections): the
    caller retries before the first token and then fails over. False means configuration (missing
    key, 401/403, unknown model, bad request): retrying cannot help, the message says what to fix.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class Provider:
    """Base class of adapters. One instance per configured provider, reused across requests."""

    #: Merge consecutive same-role messages before calling (providers that demand alternation).
    requires_alternation: ClassVar[bool] = False
    #: Whether image attachments can be sent as vision input.
    supports_images: ClassVar[bool] = True

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.config = config

    def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[str]:
        """Yield the reply's text chunks; fill `usage` if reported; raise `ProviderError`."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release the SDK client (connection pools)."""


def status_error(name: str, status: int, detail: str, *, key_env: str | None, model: str,
                 retry_after: float | None = None) -> ProviderError:
    """Map an HTTP status from provider `name` to a `ProviderError` with an actionable message.

    `detail` must already be free of secrets (adapters pass the provider's error text, which
    never echoes the key, or nothing).
    """
    detail = f": {detail}" if detail else ""
    if status in (401, 403):
        hint = f"; check {key_env}" if key_env else ""
        return ProviderError(f"{name} rejected the API key (HTTP {status}){hint}", retryable=False,
                             status=status)
    if status == 404:
        return ProviderError(f"{name} does not know model {model!r} (HTTP 404){detail}; "
                             "fix `model` in bot.toml", retryable=False, status=status)
    if status in (408, 409, 425, 429) or status >= 500:
        return ProviderError(f"{name} is unavailable (HTTP {status}){detail}", retryable=True,
                             retry_after=retry_after, status=status)
    return ProviderError(f"{name} refused the request (HTTP {status}){detail}", retryable=False,
                         status=status)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form; HTTP dates are rare from APIs)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def cause_name(exc: BaseException) -> str:
    """The type name of the underlying failure (never its text, which could hold a URL or key)."""
    return type(exc.__cause__ or exc.__context__ or exc).__name__


def require_key(name: str, config: ProviderConfig, environ: Mapping[str, str]) -> str | None:
    """The API key from the environment; ProviderError naming the variable when it is unset."""
    if not config.api_key_env:
        return None
    key = environ.get(config.api_key_env, "")
    if not key:
        raise ProviderError(f"{config.api_key_env} is not set: export it (or add it to .env) "
                            f"to use provider {name!r}", retryable=False)
    return key
