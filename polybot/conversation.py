"""Poe's conversation (a QueryRequest) -> provider-neutral messages and the template context."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import fastapi_poe as fp

from polybot.providers.base import Image, Message


def query_request(messages: Sequence[fp.ProtocolMessage], *, user_id: str, conversation_id: str,
                  message_id: str | None = None, **fields: Any) -> fp.QueryRequest:
    """The Poe query of `messages`, in the protocol version fastapi_poe speaks: how every query
    polybot makes itself (chat, tests, playground, the OpenAI endpoint, the poe adapter) is built.
    `message_id` defaults to a fresh one; other QueryRequest fields (temperature, tools, ...) pass
    through."""
    import fastapi_poe as fp
    from fastapi_poe.client import PROTOCOL_VERSION

    return fp.QueryRequest(version=PROTOCOL_VERSION, type="query", query=list(messages), user_id=user_id,
                           conversation_id=conversation_id, message_id=message_id or uuid.uuid4().hex, **fields)


def sample_request(text: str = "Hello!") -> fp.QueryRequest:
    """A minimal query, used at build time to call hooks and render the sample prompt."""
    import fastapi_poe as fp

    return query_request([fp.ProtocolMessage(role="user", content=text)], user_id="sample-user",
                         conversation_id="sample-conversation", message_id="sample-message")


def poe_system_text(query: Sequence[fp.ProtocolMessage]) -> str:
    """Poe's own system messages, appended to the rendered system prompt."""
    return "\n\n".join(m.content for m in query if m.role == "system" and m.content.strip())


#: Image types every vision API takes; anything else (SVG, HEIC, ...) is described, not sent.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def to_messages(query: Sequence[fp.ProtocolMessage], bot_name: str = "") -> list[Message]:
    """User and bot turns as provider-neutral messages, in order, nothing merged.

    Parsed text attachments become text, images are kept (adapters turn them into vision input or
    a placeholder), Poe's description of an image is kept as text, and attachments no model here
    can read (audio, video, SVG, ...) become a short placeholder naming them. Empty turns are
    dropped. Turns from other senders (other bots in a multi-bot chat) keep their names.
    """
    out: list[Message] = []
    for m in query:
        if m.role not in ("user", "bot"):
            continue
        text = m.content
        pictures: list[Image] = []
        for att in m.attachments:
            if att.content_type in IMAGE_TYPES:
                pictures.append(Image(att.url, att.content_type, att.name))
                if att.parsed_content:
                    text += f"\n\n<image name={att.name!r} description>\n{att.parsed_content}\n</image>"
            elif att.parsed_content:
                text += f"\n\n<attachment name={att.name!r}>\n{att.parsed_content}\n</attachment>"
            else:
                kind = att.content_type.split("/")[0] if "/" in att.content_type else "file"
                text += (f"\n\n[attachment {att.name!r} ({att.content_type}) not sent: "
                         f"the model cannot read this {kind if kind in ('audio', 'video') else 'file type'}]")
        text = text.strip("\n") if not m.content else text
        if not text.strip() and not pictures:
            continue
        role: Literal["user", "assistant"] = "assistant" if m.role == "bot" else "user"
        out.append(Message(role, text, tuple(pictures), _sender_name(m, bot_name)))
    return out


def _sender_name(m: fp.ProtocolMessage, bot_name: str) -> str | None:
    name = m.sender.name if m.sender is not None else None
    if not name or (m.role == "bot" and name.lower() == bot_name.lower()):
        return None
    return name


def template_context(request: fp.QueryRequest, params: dict[str, Any]) -> dict[str, Any]:
    """The per-request part of a prompt's context (the bot adds `bot`, `vars` and hook values)."""
    return {
        "now": datetime.now(UTC),
        "user_id": request.user_id,
        "conversation_id": request.conversation_id,
        "language_code": request.language_code,
        "users": [{"id": u.id, "name": u.name} for u in request.users],
        "messages": [
            {"role": "assistant" if m.role == "bot" else m.role, "content": m.content,
             "sender": m.sender.name if m.sender is not None else None}
            for m in request.query
        ],
        "params": params,
    }


def last_user_text(request: fp.QueryRequest) -> str:
    return next((m.content for m in reversed(request.query) if m.role == "user"), "")
