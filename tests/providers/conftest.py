"""One harness for every SDK adapter: its fake server, its provider, and the key it must send."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from polybot.config import ProviderConfig
from polybot.providers import create_provider
from polybot.providers.base import ChatRequest, Image, Message, Provider, Usage
from tests.fakes.wire import FakeProvider, running

KEY = "sk-test-0123456789abcdef"
KEY_ENV = "TEST_PROVIDER_KEY"


@dataclass(frozen=True)
class Kind:
    kind: str
    fake: type[FakeProvider]
    base_suffix: str  # appended to the fake's base URL for api_base

    def key_sent(self, headers: dict[str, str]) -> str:
        return {"openai": headers.get("authorization", "").removeprefix("Bearer "),
                # anthropic 2.x sends the key as a bearer token, older versions as x-api-key
                "anthropic": headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer "),
                "gemini": headers.get("x-goog-api-key", "")}[self.kind]


def kinds() -> list[Kind]:
    from tests.fakes.anthropic_wire import FakeAnthropic
    from tests.fakes.gemini_wire import FakeGemini
    from tests.fakes.openai_wire import FakeOpenAI

    return [Kind("openai", FakeOpenAI, "/v1"), Kind("anthropic", FakeAnthropic, ""), Kind("gemini", FakeGemini, "")]


class Harness:
    def __init__(self, kind: Kind, fake: FakeProvider) -> None:
        self.kind = kind
        self.fake = fake
        self.created: list[Provider] = []

    def provider(self, **overrides: Any) -> Provider:
        config = ProviderConfig.model_validate({"kind": self.kind.kind, "api_base": self.fake.base_url +
                                                self.kind.base_suffix, "api_key_env": KEY_ENV,
                                                "default_model": "model-x", "timeout": 5, "vision": True,
                                                **overrides})
        self.created.append(create_provider(self.kind.kind, config))
        return self.created[-1]


@pytest.fixture(autouse=True)
def provider_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def make_harness(kind: Kind) -> Iterator[Harness]:
    with running(kind.fake()) as fake:
        yield Harness(kind, fake)


@pytest.fixture(params=kinds(), ids=lambda k: k.kind)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    for h in make_harness(request.param):
        yield h
        for p in h.created:
            await p.aclose()


@pytest.fixture
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """The harness for the adapter named by the test module's KIND."""
    kind = next(k for k in kinds() if k.kind == request.module.KIND)
    for harness in make_harness(kind):
        yield harness
        for p in harness.created:
            await p.aclose()


def chat(**overrides: Any) -> ChatRequest:
    values: dict[str, Any] = {"model": "model-x", "system": "Be brief.",
                              "messages": (Message("user", "hi"), Message("assistant", "hello"),
                                           Message("user", "look", (Image("https://x/cat.png", "image/png"),)))}
    values.update(overrides)
    return ChatRequest(**values)


async def collect(p: Provider, req: ChatRequest | None = None, usage: Usage | None = None) -> list[str]:
    return [c async for c in p.stream(req or chat(), usage or Usage())]
