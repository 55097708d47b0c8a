"""Poe's conversation (a QueryRequest) -> provider-neutral messages and the template context."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import fastapi_poe as fp

from polybot.providers.base import Image, Message

PROTOCOL_VERSION = "1.2"


def sample_request(text: str = "Hello!") -> fp.QueryRequest:
    """A minimal query, used at build time to call hooks and render the sample prompt."""
    import fastapi_poe as fp

    return fp.QueryRequest(
        version=PROTOCOL_VERSION,
        type="query",
        query=[fp.ProtocolMessage(role="user", content=text)],
        user_id="sample-user",
        conversation_id="sample-conversation",
        message_id="sample-message",
    )


def poe_system_text(query: Sequence[fp.ProtocolMessage]) -> str:
    """Poe's own system messages, appended to the rendered system prompt."""
    return "\n\n".join(m.content for m in query if m.role == "system" and m.content.strip())


def to_messages(
    query: Sequence[fp.ProtocolMessage], *, images: bool, alternate: bool
) -> list[Message]:
    """User and bot turns as provider messages.

    Parsed text attachments become text, image attachments vision input (when `images`), empty
    turns are dropped, and with `alternate` consecutive same-role turns are merged and the
    conversation starts with a user turn (Anthropic, Gemini).
    """
    out: list[Message] = []
    for m in query:
        if m.role not in ("user", "bot"):
            continue
        text = m.content
        pictures: list[Image] = []
        for att in m.attachments:
            if images and att.content_type.startswith("image/"):
                pictures.append(Image(att.url, att.content_type))
            elif att.parsed_content:
                text += f"\n\n<attachment name={att.name!r}>\n{att.parsed_content}\n</attachment>"
        if not text.strip() and not pictures:
            continue
        role: Literal["user", "assistant"] = "assistant" if m.role == "bot" else "user"
        if alternate and out and out[-1].role == role:
            prev = out[-1]
            out[-1] = Message(role, f"{prev.text}\n\n{text}".strip(), prev.images + tuple(pictures))
        else:
            out.append(Message(role, text, tuple(pictures)))
    if alternate:
        while out and out[0].role == "assistant":
            out.pop(0)
    return out


def template_context(request: fp.QueryRequest, params: dict[str, Any]) -> dict[str, Any]:
    """The per-request part of a prompt's context (the bot adds `bot`, `vars` and hook values)."""
    return {
        "now": datetime.now(UTC),
        "user_id": request.user_id,
        "conversation_id": request.conversation_id,
        "messages": [
            {"role": "assistant" if m.role == "bot" else m.role, "content": m.content}
            for m in request.query
        ],
        "params": params,
    }


def last_user_text(request: fp.QueryRequest) -> str:
    return next((m.content for m in reversed(request.query) if m.role == "user"), "")
