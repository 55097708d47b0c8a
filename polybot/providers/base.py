"""The one async streaming interface every provider adapter implements.

Adapters are where SDK differences end: above them nothing branches on provider names. An adapter
turns a `ChatRequest` into a stream of text chunks and maps every SDK failure to `ProviderError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from polybot.config import ProviderConfig


@dataclass(frozen=True, slots=True)
class Image:
    """An image attachment to send as vision input (`data` when it was downloaded for the provider)."""

    url: str
    content_type: str
    name: str = ""
    #: The bytes, when they were downloaded for a provider that cannot fetch URLs.
    data: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call: its name, description and JSON schema of its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call the model asked for; `arguments` is the JSON text it wrote."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    """One provider-bound turn. Poe's `bot` role arrives here as `assistant`.

    `name` is the sender's display name when it is not the user or this bot (another bot in a
    multi-bot chat); adapters send it natively (OpenAI `name`) or as a prefix. An assistant turn
    may carry `tool_calls`; each result comes back as a `tool` turn with its `tool_call_id`.
    `state` is adapter-private and opaque: what the provider needs to see again on the next round
    (Anthropic thinking blocks with signatures, Gemini thought signatures). Only the adapter that
    set it reads it; `state_of` names that provider.
    """

    role: Literal["user", "assistant", "tool"]
    text: str
    images: tuple[Image, ...] = ()
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    state: Any = field(default=None, repr=False, compare=False)
    state_of: str | None = None


@dataclass(frozen=True, slots=True)
class Origin:
    """The incoming request a reply answers, for adapters that call onwards (the `poe` kind).

    `access_key` is the calling bot's own Poe access key; it never appears in a message or log.
    """

    user_id: str
    conversation_id: str
    message_id: str
    metadata: str = ""
    access_key: str | None = field(default=None, repr=False)
    access_key_env: str | None = None


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
    origin: Origin | None = None
    tools: tuple[ToolSpec, ...] = ()


# --- what a stream yields besides answer text (`str`) ----------------------------------------


@dataclass(frozen=True, slots=True)
class Thinking:
    """Reasoning text. Never shown mixed into the answer: hidden, or quoted first (`show_thinking`)."""

    text: str


@dataclass(frozen=True, slots=True)
class FileOut:
    """A file attached to the reply (a called Poe bot's `file` event, or a hook's)."""

    url: str
    content_type: str
    name: str
    inline_ref: str | None = None


@dataclass(frozen=True, slots=True)
class DataOut:
    """A Poe `json` event relayed from a called bot."""

    data: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Replace:
    """The reply so far is replaced by `text` (a called Poe bot's `replace_response`)."""

    text: str


Chunk = str | Thinking | FileOut | DataOut | Replace

#: How a reply ended (SPEC §6). "refused" is raised as `Refused`; the rest are set on `Usage`.
Outcome = Literal["ok", "truncated", "tool_call"]


@dataclass(slots=True)
class Usage:
    """Token counts and how the reply ended, filled in by adapters as the provider reports them."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    cached_tokens: int | None = None
    #: The provider's own finish reason, verbatim (e.g. "stop", "end_turn", "MAX_TOKENS").
    finish_reason: str | None = None
    outcome: Outcome = "ok"
    #: Names of the tools the model asked for (outcome "tool_call").
    tool_calls: list[str] = field(default_factory=list)
    #: The calls in full, and the assistant turn to send back with their results (outcome "tool_call").
    calls: list[ToolCall] = field(default_factory=list)
    turn: Message | None = None


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
        error_type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        #: A Poe ErrorResponse error_type that fits (e.g. "user_message_too_long").
        self.error_type = error_type


class Refused(ProviderError):
    """The model declined to answer (a refusal or a safety block): fail over, never retry."""

    def __init__(self, provider: str, detail: str = "") -> None:
        reason = f": {detail}" if detail else ""
        super().__init__(f"{provider} declined to answer{reason}", retryable=False)


class AnyOptions(BaseModel):
    """Options of an adapter that declares none: anything passes."""

    model_config = ConfigDict(extra="allow")


class Provider:
    """Base class of adapters. One instance per configured provider, reused across requests.

    Adapters import their SDK on first use, not at module import: the build reads `Options` and
    `rules` without paying for any SDK.
    """

    #: The `params` this adapter understands; `polybot build` checks bot.toml's `params` against it
    #: (`extra_body` is the escape hatch: passed through unchecked). extra="forbid" in adapters.
    Options: ClassVar[type[BaseModel]] = AnyOptions

    def __init__(self, name: str, config: ProviderConfig) -> None:
        self.name = name
        self.config = config

    @classmethod
    def rules(cls, model: str, temperature: float | None, max_tokens: int | None,
              params: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Build-time model rules: (bot.toml key, message) for each one the settings break."""
        return []

    def vision(self, model: str) -> bool:
        """Whether `model` takes images: the provider's `vision` flag, else the model table."""
        if self.config.vision is not None:
            return self.config.vision
        from polybot.providers.models import model_info

        return model_info(model).vision

    def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[Chunk]:
        """Yield the reply's chunks (answer text as `str`); fill `usage`; raise `ProviderError`.

        A refusal raises `Refused`; a reply cut at the token limit or ending in a tool call sets
        `usage.outcome`. The adapter prepares `request` itself: merging turns, model rules.
        """
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release the SDK client (connection pools)."""


#: Seconds to connect at most (a dead host fails fast, then over), within the provider's `timeout`.
CONNECT_TIMEOUT = 10.0

T = TypeVar("T")


def sdk_timeout(config: ProviderConfig, timeout_type: Callable[..., T]) -> T:
    """The SDK's timeout object (`httpx.Timeout`, `openai.Timeout`, ...) for `config`: the whole
    reply within `timeout`, connecting within CONNECT_TIMEOUT of it."""
    return timeout_type(config.timeout, connect=min(CONNECT_TIMEOUT, config.timeout))


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
        raise ProviderError(f"{config.api_key_env} is not set: run `polybot keys set {config.api_key_env}` "
                            f"(or export it) to use provider {name!r}", retryable=False)
    return key


# --- helpers adapters share ----------------------------------------------------------------


def named(m: Message) -> str:
    """The text with the sender's name as a prefix, for providers without a `name` field."""
    return f"[{m.name}]: {m.text}" if m.name and m.text else m.text


def merge_turns(messages: Sequence[Message], *, label: bool = True) -> list[Message]:
    """Strictly alternating turns starting with the user's (Anthropic, Gemini): consecutive
    same-role turns merge; leading assistant turns are dropped. `label` keeps senders' names as
    prefixes (the merged turn has no single sender)."""
    out: list[Message] = []
    for m in messages:
        if m.role == "tool" or m.tool_calls:
            out.append(m)  # tool rounds keep their shape; the adapter maps them
            continue
        text = named(m) if label else m.text
        if out and out[-1].role == m.role and not out[-1].tool_calls:
            prev = out[-1]
            joined = f"{prev.text}\n\n{text}" if prev.text and text else prev.text or text
            out[-1] = Message(m.role, joined, prev.images + m.images)
        else:
            out.append(Message(m.role, text, m.images, tool_calls=m.tool_calls, tool_call_id=m.tool_call_id,
                               state=m.state, state_of=m.state_of))
    while out and out[0].role == "assistant":
        out.pop(0)
    return out


def without_images(messages: Sequence[Message], model: str) -> list[Message]:
    """Images become a short placeholder naming them, for a model that cannot see."""
    out = []
    for m in messages:
        if not m.images:
            out.append(m)
            continue
        notes = "\n".join(f"[image {img.name or img.url.rsplit('/', 1)[-1]!r} not shown: "
                          f"model {model} does not take images]" for img in m.images)
        out.append(Message(m.role, f"{m.text}\n\n{notes}" if m.text else notes, (), m.name, m.tool_calls,
                           m.tool_call_id, m.state, m.state_of))
    return out
