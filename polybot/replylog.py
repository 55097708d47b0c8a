"""The reply log (SPEC §6): one record per reply on logger `polybot.reply`, printed by `dev` as one
readable line and by `serve` as one JSON object per line on stderr, kept in the reply store and,
with OTEL_EXPORTER_OTLP_* set, traced (`observe`, docs/logs.md)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:
    from polybot.config import ProjectSettings, ProviderConfig
    from polybot.store import ReplyStore

LOGGER = "polybot.reply"


def readable(reply: Mapping[str, Any]) -> str:
    """`Echo  echo/echo  first token 3 ms  total 5 ms  12 in / 4 out tokens  ok`."""
    parts = [str(reply.get("bot")), f"{reply.get('provider')}/{reply.get('model')}"]
    ttft = reply.get("ttft_ms")
    parts.append("no first token" if ttft is None else f"first token {_duration(ttft)}")
    parts.append(f"total {_duration(reply.get('duration_ms') or 0)}")
    tokens_in, tokens_out = reply.get("input_tokens"), reply.get("output_tokens")
    if tokens_in is not None or tokens_out is not None:
        counted = f"{_count(tokens_in)} in / {_count(tokens_out)} out tokens"
        extra = [f"{reply[k]} {label}" for k, label in (("reasoning_tokens", "reasoning"),
                                                          ("cached_tokens", "cached")) if reply.get(k)]
        parts.append(counted + (f" ({', '.join(extra)})" if extra else ""))
    outcome = str(reply.get("outcome"))
    attempts = reply.get("attempts") or 1
    if reply.get("fallback"):
        outcome += " (fallback)"
    if attempts > 1:
        outcome += f" after {attempts} attempts"
    if reply.get("finish_reason") and reply.get("outcome") != "ok":
        outcome += f" [{reply['finish_reason']}]"
    parts.append(outcome)
    return "  ".join(parts)


def _duration(ms: float) -> str:
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _count(n: Any) -> str:
    return "?" if n is None else str(n)


class _Formatter(logging.Formatter):
    def __init__(self, style: Literal["readable", "json"]) -> None:
        super().__init__()
        self.kind = style

    def format(self, record: logging.LogRecord) -> str:
        reply = getattr(record, "reply", None)
        if self.kind == "readable" and isinstance(reply, Mapping):
            if reply.get("event", "reply") != "reply":  # Poe's feedback or reaction on a reply
                return f"{reply['event']}: {reply.get('bot')}  {reply.get('value')}  message {reply.get('message_id')}"
            return "reply: " + readable(reply)
        if reply is not None or self.kind == "readable":
            return record.getMessage()  # the reply's JSON line
        return json.dumps({"event": "log", "level": record.levelname.lower(), "message": record.getMessage()})


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (so a captured or replaced stderr works)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure(style: Literal["readable", "json"]) -> None:
    """Print each reply's log record on stderr (idempotent: one handler, the latest style)."""
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _Stderr)]:
        logger.removeHandler(handler)
    handler = _Stderr()
    handler.setFormatter(_Formatter(style))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def observe(root: Path, settings: ProjectSettings, providers: Callable[[], Mapping[str, ProviderConfig]], *,
            dev: bool) -> ReplyStore | None:
    """Keep every reply of this process in the project's reply store ([logs], polybot.toml; message
    text by default in `dev` only) and trace it when OTEL_EXPORTER_OTLP_* is set. `providers()` gives
    the provider definitions that price a reply, read when its row is written."""
    from polybot import store, telemetry

    replies = store.install(root, settings.logs, dev=dev, price=store.pricer(providers, settings.limits.prices))
    telemetry.install()
    return replies
