"""Recorded provider replies for `polybot test` (SPEC §8): one file per provider request.

A request is keyed by a hash of everything that shapes the reply (provider kind and model, system
prompt, messages, sampling options, params, tools), so a changed prompt makes its recording stale.
Files hold the reply's chunks and usage, and a readable summary of the request: no key, no header.
They are written byte-deterministically (sorted keys, fixed indent) so they review in git.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from polybot.config import ProviderConfig
from polybot.providers.base import ChatRequest, Chunk, Message, Provider, ProviderError, Thinking, ToolCall, Usage
from polybot.reliability import ProviderPool

RECORDINGS_DIR = "recordings"
#: Kinds whose replies are deterministic and offline: never recorded.
LIVE_KINDS = frozenset({"echo"})


def request_summary(kind: str, request: ChatRequest) -> dict[str, Any]:
    """What identifies a provider request (and is shown in the recording): no secrets."""
    return {
        "kind": kind,
        "model": request.model,
        "system": request.system,
        "messages": [{"role": m.role, "text": m.text, "name": m.name, "images": [i.url for i in m.images],
                      "tool_calls": [[c.id, c.name, c.arguments] for c in m.tool_calls],
                      "tool_call_id": m.tool_call_id} for m in request.messages],
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "stop": list(request.stop),
        "params": dict(request.params),
        "tools": [[t.name, t.description, dict(t.parameters)] for t in request.tools],
    }


def request_key(summary: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(summary, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:20]


@dataclass(slots=True)
class Session:
    """The recordings of one bot in one run: which were used, which were missing, which written."""

    folder: Path
    record: bool
    used: set[str] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)  # "provider/model" of requests with no recording
    written: list[Path] = field(default_factory=list)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def unused(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("*.json") if p.stem not in self.used)


class RecordedProvider(Provider):
    """Replays a recording of each request; with `record`, calls the real adapter and writes one."""

    def __init__(self, real: Provider, pool: RecordingPool) -> None:
        super().__init__(real.name, real.config)
        self.real = real
        self.pool = pool

    @property
    def session(self) -> Session:
        return self.pool.session

    async def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[Chunk]:
        summary = request_summary(self.config.kind, request)
        key = request_key(summary)
        path = self.session.path(key)
        self.session.used.add(key)
        if self.session.record:
            chunks: list[Any] = []
            async for chunk in self.real.stream(request, usage):
                if isinstance(chunk, str):
                    chunks.append(chunk)
                elif isinstance(chunk, Thinking):
                    chunks.append({"thinking": chunk.text})
                yield chunk
            data = {"request": summary, "chunks": chunks, "usage": _usage(usage)}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", "utf-8")
            self.session.written.append(path)
            return
        if not path.is_file():
            self.session.missing.append(f"{self.name}/{request.model}")
            raise ProviderError(f"no recording of this {self.name} request", retryable=False)
        data = json.loads(path.read_text("utf-8"))
        text: list[str] = []
        for item in data.get("chunks", []):
            if isinstance(item, str):
                text.append(item)
                yield item
            else:
                yield Thinking(item["thinking"])
        for key_name, value in data.get("usage", {}).items():
            if key_name == "calls":
                usage.calls = [ToolCall(*call) for call in value]
                usage.turn = Message("assistant", "".join(text), tool_calls=tuple(usage.calls))
            else:
                setattr(usage, key_name, value)

    async def aclose(self) -> None:
        await self.real.aclose()


def _usage(usage: Usage) -> dict[str, Any]:
    values = {k: v for k, v in asdict(usage).items() if k not in ("calls", "turn")}
    if usage.calls:
        values["calls"] = [[c.id, c.name, c.arguments] for c in usage.calls]
    return {k: v for k, v in values.items() if v not in (None, []) or k == "outcome"}


class RecordingPool(ProviderPool):
    """A ProviderPool whose adapters replay (or record) through a Session; echo stays live."""

    def __init__(self, configs: dict[str, ProviderConfig], session: Session) -> None:
        super().__init__(configs)
        self.session = session

    def get(self, name: str) -> Provider:
        provider = super().get(name)
        if provider.config.kind in LIVE_KINDS or isinstance(provider, RecordedProvider):
            return provider
        wrapped = RecordedProvider(provider, self)
        self._providers[name] = wrapped
        return wrapped
