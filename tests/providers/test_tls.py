"""Every provider client shares polybot's one TLS context: loading the CA bundle costs each new
client 20-40 ms of CPU, which every SDK would otherwise pay again (Gemini's three times)."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from polybot.tls import tls_context
from tests.fakes.wire import Reply
from tests.providers.conftest import Harness, collect


async def test_provider_clients_load_the_ca_bundle_once(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[ssl.SSLContext] = []
    original = ssl.SSLContext.load_verify_locations

    def counting(context: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(context)
        original(context, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    for _ in range(3):  # three providers, three SDK clients
        harness.fake.push(Reply(chunks=["hi"]))
        assert await collect(harness.provider()) == ["hi"]
    assert loads in ([], [tls_context()])  # at most tls_context()'s own, on its first use
