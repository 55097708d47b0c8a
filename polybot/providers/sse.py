"""Server-sent events read straight from a provider's response body, parsed to plain JSON values.

The SDKs build a pydantic model per streamed chunk; under load that is most of a streaming
process's CPU. Adapters keep their SDK for requests, auth and status errors, and read the body
with `events()`: the same events the SDK's decoder yields (CR, LF and CRLF line ends, `data:`
lines joined with newlines, comments skipped), as (event name, data text) pairs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any


def _fastest_loads() -> Callable[[str], Any]:
    try:  # a speed-up; the standard library parses the same documents
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency, but the parser works without it
        return json.loads
    return orjson.loads


_fast_loads = _fastest_loads()


def loads(text: str) -> Any:
    """Parse one event's JSON; ValueError when it is not JSON (as `json.loads` would say)."""
    try:
        return _fast_loads(text)
    except ValueError:
        # orjson is stricter than json (NaN, huge integers): only fail what json fails too.
        return json.loads(text)


async def events(body: AsyncIterator[bytes]) -> AsyncIterator[tuple[str | None, str]]:
    """Each complete event of an SSE body as (event, data), exactly as the OpenAI SDK's decoder
    splits them; an event that no blank line ends is dropped, as there."""
    pending = b""
    skip_lf = False  # the previous piece ended in CR: a LF starting the next one ends no line
    event: str | None = None
    data: list[str] = []
    last_id = ""  # sticky, as the SSE spec says: once set, every blank line dispatches
    retry: int | None = None
    async for piece in body:
        if skip_lf and piece[:1] == b"\n":
            piece = piece[1:]
        skip_lf = False
        if not piece:
            continue
        if b"\r" in piece:
            skip_lf = piece[-1:] == b"\r"
            piece = piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = (pending + piece).split(b"\n") if pending else piece.split(b"\n")
        pending = lines.pop()
        for raw in lines:
            if not raw:
                if event or data or last_id or retry is not None:
                    yield event, "\n".join(data)
                    event, data, retry = None, [], None
                continue
            if raw[:5] == b"data:":
                data.append((raw[6:] if raw[5:6] == b" " else raw[5:]).decode())
                continue
            line = raw.decode()
            if line[0] == ":":
                continue
            name, _, value = line.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if name == "event":
                event = value or None
            elif name == "data":
                data.append(value)
            elif name == "id":
                if "\0" not in value:
                    last_id = value
            elif name == "retry":
                try:
                    retry = int(value)
                except ValueError:
                    pass
