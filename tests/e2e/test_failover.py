"""Failures through the whole stack: polybot's app (served as `polybot serve` serves it, in a thread)
-> real SDKs -> fake providers -> Poe client. tests/e2e/test_serve.py has the real process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from logging.handlers import BufferingHandler

import fastapi_poe as fp
import pytest

from polybot.app import create_app
from polybot.cli import main
from polybot.manifest import load_manifest, manifest_path
from polybot.replylog import LOGGER
from tests.e2e.helpers import query
from tests.fakes.anthropic_wire import FakeAnthropic
from tests.fakes.openai_wire import FakeOpenAI
from tests.fakes.server import poe_session, serve_in_thread
from tests.fakes.wire import Reply, running

OPENAI_KEY = "sk-openai-never-shown-0123"
ANTHROPIC_KEY = "sk-ant-never-shown-4567"
ACCESS_KEY = "f" * 32


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOpenAI, FakeAnthropic]]:
    with running(FakeOpenAI()) as oa, running(FakeAnthropic()) as an:
        yield oa, an


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fakes: tuple[FakeOpenAI, FakeAnthropic]) -> Iterator[str]:
    oa, an = fakes
    root = tmp_path_factory.mktemp("failover")
    (root / "providers.toml").write_text(
        f'[openai]\nkind = "openai"\napi_base = "{oa.base_url}/v1"\napi_key_env = "OPENAI_API_KEY"\n'
        'default_model = "gpt-4o-mini"\ntimeout = 1\nmax_retries = 1\n\n'
        f'[anthropic]\nkind = "anthropic"\napi_base = "{an.base_url}"\napi_key_env = "ANTHROPIC_API_KEY"\n'
        'default_model = "claude-haiku-4-5"\ntimeout = 1\nmax_retries = 1\n')
    (root / "bots" / "Sturdy").mkdir(parents=True)
    (root / "bots" / "Sturdy" / "bot.toml").write_text(
        'provider = "openai"\ntemperature = 0.2\n\n[[fallback]]\nprovider = "anthropic"\n')
    (root / "bots" / "Sturdy" / "system.md.j2").write_text("You are sturdy.")
    assert main(["build", "--project", str(root)]) == 0
    handler = BufferingHandler(capacity=1_000_000)  # every record the module's requests log
    logging.getLogger().addHandler(handler)
    replies = logging.getLogger(LOGGER)
    level = replies.level
    replies.setLevel(logging.INFO)  # the reply log as `polybot serve` writes it
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OPENAI_API_KEY", OPENAI_KEY)
        env.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
        env.setattr("polybot.reliability.BACKOFF_BASE", 0.05)  # the real schedule, at a tenth of the pace
        app = create_app(load_manifest(manifest_path(root)), root, environ={"POE_ACCESS_KEY_STURDY": ACCESS_KEY})
        try:
            with serve_in_thread(app.app) as base:
                yield base
        finally:
            logging.getLogger().removeHandler(handler)
            replies.setLevel(level)
    assert any(record.name == LOGGER for record in handler.buffer)  # the reply lines are among those read below
    log = "\n".join(record.getMessage() for record in handler.buffer)
    assert OPENAI_KEY not in log and ANTHROPIC_KEY not in log and ACCESS_KEY not in log


@pytest.fixture(autouse=True)
def fresh_scripts(fakes: tuple[FakeOpenAI, FakeAnthropic]) -> None:
    for fake in fakes:
        fake.queue.clear()


async def events(base: str) -> list[fp.PartialResponse]:
    out = []
    try:
        async with poe_session() as session:
            async for m in fp.stream_request(query("hi"), "Sturdy", ACCESS_KEY, base_url=base + "/", num_tries=1,
                                             session=session):
                out.append(m)
    except fp.BotError as exc:
        out.append(fp.PartialResponse(text=f"<error {exc}>"))
    return out


def final_text(msgs: list[fp.PartialResponse]) -> str:
    text = ""
    for m in msgs:
        text = m.text if m.is_replace_response else text + m.text
    return text


def run(base: str) -> list[fp.PartialResponse]:
    return asyncio.run(events(base))


def test_happy_path_streams_from_the_primary(server: str, fakes: tuple[FakeOpenAI, FakeAnthropic]) -> None:
    oa, an = fakes
    oa.push(Reply(chunks=["Hello", " from", " OpenAI"]))
    assert final_text(run(server)) == "Hello from OpenAI"
    sent = oa.requests[-1].json
    assert sent["messages"][0] == {"role": "system", "content": "You are sturdy."}
    assert sent["temperature"] == 0.2


def test_poe_stop_sequences_reach_the_provider(server: str, fakes: tuple[FakeOpenAI, FakeAnthropic]) -> None:
    oa, _ = fakes

    async def go() -> None:
        async for _ in fp.stream_request(query("hi", stop_sequences=["STOP"]), "Sturdy", ACCESS_KEY,
                                         base_url=server + "/", num_tries=1):
            pass

    asyncio.run(go())
    assert oa.requests[-1].json["stop"] == ["STOP"]


def test_429_is_retried_then_served(server: str, fakes: tuple[FakeOpenAI, FakeAnthropic]) -> None:
    oa, _ = fakes
    oa.push(Reply(fault="429", retry_after=0.2), Reply(chunks=["after", " retry"]))
    assert final_text(run(server)) == "after retry"


def test_persistent_500_fails_over_to_anthropic(server: str, fakes: tuple[FakeOpenAI, FakeAnthropic]) -> None:
    oa, an = fakes
    oa.push(Reply(fault="500"), Reply(fault="500"))
    an.push(Reply(chunks=["Claude", " here"]))
    assert final_text(run(server)) == "Claude here"
    assert an.requests[-1].json["system"] == "You are sturdy."


def test_drop_mid_stream_is_replaced_by_the_fallback(server: str, fakes: tuple[FakeOpenAI, FakeAnthropic]) -> None:
    oa, an = fakes
    oa.push(Reply(chunks=["half", " a", " reply"], fault="drop", fault_after=1))
    an.push(Reply(chunks=["one", " whole", " reply"]))
    msgs = run(server)
    assert msgs[0].text == "half"
    assert any(m.is_replace_response for m in msgs)
    assert final_text(msgs) == "one whole reply"


def test_stall_then_everything_down_ends_in_retryable_error(server: str,
                                                            fakes: tuple[FakeOpenAI, FakeAnthropic]) -> None:
    oa, an = fakes
    oa.push(Reply(chunks=["start", "x"], fault="stall", fault_after=1))
    an.push(Reply(fault="529"), Reply(fault="529"))
    msgs = run(server)
    text = msgs[-1].text
    assert text.startswith("<error ") and '"allow_retry": true' in text
    assert "The reply was cut off" in text


def test_bad_key_ends_with_no_retry_and_names_the_variable(server: str,
                                                          fakes: tuple[FakeOpenAI, FakeAnthropic]) -> None:
    oa, an = fakes
    oa.push(Reply(fault="401"))
    an.push(Reply(fault="401"))
    text = run(server)[-1].text
    assert '"allow_retry": false' in text
    assert "check OPENAI_API_KEY" in text and "check ANTHROPIC_API_KEY" in text
    assert OPENAI_KEY not in text and ANTHROPIC_KEY not in text
