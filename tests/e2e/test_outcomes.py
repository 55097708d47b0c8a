"""SPEC §6 outcomes through the whole path, from recorded provider streams to what Poe receives.

polybot's ASGI app is served in-process on 127.0.0.1; its providers are the wire fakes replaying
tests/fakes/streams byte for byte through the real SDKs; fastapi_poe's own client asks. Each test
checks what the user gets (the Poe events in order: text, replace_response, and the error event
with allow_retry and error_type) and what the operator sees (the reply log line on logger
"polybot.reply": its JSON message and `record.reply`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastapi_poe as fp
import pytest

from polybot.app import BotServer
from polybot.livebuild import LiveBuild
from polybot.reliability import TRUNCATED_NOTICE
from tests.e2e.helpers import query
from tests.fakes.anthropic_wire import FakeAnthropic
from tests.fakes.gemini_wire import FakeGemini
from tests.fakes.openai_wire import FakeOpenAI
from tests.fakes.server import poe_session, serve_in_thread
from tests.fakes.streams import recorded
from tests.fakes.wire import Reply, running

KEYS = {"OPENAI_API_KEY": "sk-openai-fidelity-0123", "ANTHROPIC_API_KEY": "sk-ant-fidelity-4567",
        "GEMINI_API_KEY": "gemini-fidelity-89ab", "DEEPSEEK_API_KEY": "sk-deepseek-fidelity-cdef"}

BOTS = {
    "Gpt4o": 'provider = "openai"\n',
    "Claude": 'provider = "anthropic"\n',
    "Gemini": 'provider = "gemini"\n',
    "DeepSeek": 'provider = "deepseek"\n',
    "ClaudeShows": 'provider = "anthropic"\nshow_thinking = true\n',
    "GemShows": 'provider = "gemini"\nshow_thinking = true\n',
    "DeepShows": 'provider = "deepseek"\nshow_thinking = true\n',
    "Careful": 'provider = "anthropic"\n\n[[fallback]]\nprovider = "openai"\n',
    "GemCareful": 'provider = "gemini"\n\n[[fallback]]\nprovider = "anthropic"\n',
    "OpenAICareful": 'provider = "openai"\n\n[[fallback]]\nprovider = "anthropic"\n',
}


@dataclass
class Fakes:
    openai: FakeOpenAI  # also serves the `deepseek` provider (an OpenAI-compatible endpoint)
    anthropic: FakeAnthropic
    gemini: FakeGemini


@dataclass
class Served:
    url: str
    fakes: Fakes


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with running(FakeOpenAI()) as oa, running(FakeAnthropic()) as an, running(FakeGemini()) as ge, \
            pytest.MonkeyPatch.context() as mp:
        for name, value in KEYS.items():
            mp.setenv(name, value)
        root = tmp_path_factory.mktemp("outcomes")
        _project(root, oa.base_url, an.base_url, ge.base_url)
        workspace = LiveBuild(root)
        result = workspace.refresh()
        assert not result.problems, [str(p) for p in result.problems]
        server = BotServer(environ={})
        for runtime in workspace.runtimes.values():
            server.put(runtime)
        with serve_in_thread(server.app) as url:
            yield Served(url, Fakes(oa, an, ge))


def _project(root: Path, openai: str, anthropic: str, gemini: str) -> None:
    common = "timeout = 5\nmax_retries = 0\n"
    (root / "providers.toml").write_text(
        f'[openai]\nkind = "openai"\napi_base = "{openai}/v1"\napi_key_env = "OPENAI_API_KEY"\n'
        f'default_model = "gpt-4o"\n{common}\n'
        f'[deepseek]\nkind = "openai"\napi_base = "{openai}/v1"\napi_key_env = "DEEPSEEK_API_KEY"\n'
        f'default_model = "deepseek-reasoner"\n{common}\n'
        f'[anthropic]\nkind = "anthropic"\napi_base = "{anthropic}"\napi_key_env = "ANTHROPIC_API_KEY"\n'
        f'default_model = "claude-sonnet-4-5"\n{common}\n'
        f'[gemini]\nkind = "gemini"\napi_base = "{gemini}"\napi_key_env = "GEMINI_API_KEY"\n'
        f'default_model = "gemini-2.5-flash"\n{common}')
    for name, toml in BOTS.items():
        folder = root / "bots" / name
        folder.mkdir(parents=True)
        (folder / "bot.toml").write_text(toml)
        (folder / "system.md.j2").write_text("Answer briefly.")


@pytest.fixture(autouse=True)
def fresh(served: Served) -> None:
    for fake in (served.fakes.openai, served.fakes.anthropic, served.fakes.gemini):
        fake.queue.clear()
        # Anything a test did not script is a failure the test will show, not a default reply.
        fake.default = Reply(fault="500")


@dataclass
class Answer:
    events: list[tuple[str, str]]  # (Poe event name, its text) in order: text / replace_response
    error: dict[str, Any] | None  # the error event's data, if the reply ended in one
    log: dict[str, Any]  # the reply log line's fields (record.reply)

    @property
    def text(self) -> str:
        """What the user sees: replace_response starts the reply over."""
        out = ""
        for kind, text in self.events:
            out = text if kind == "replace_response" else out + text
        return out


def ask(served: Served, bot: str, caplog: pytest.LogCaptureFixture) -> Answer:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="polybot.reply"):
        events, error = asyncio.run(_ask(served.url, bot))
        record = _reply_record(caplog)
    assert json.loads(record.getMessage()) == record.reply  # type: ignore[attr-defined]
    return Answer(events, error, record.reply)  # type: ignore[attr-defined]


async def _ask(url: str, bot: str) -> tuple[list[tuple[str, str]], dict[str, Any] | None]:
    events: list[tuple[str, str]] = []
    try:
        async with poe_session() as session:
            async for m in fp.stream_request(query("What is 27 * 453?"), bot, "k" * 32, base_url=url + "/",
                                             num_tries=1, session=session):
                raw = m.raw_response
                assert isinstance(raw, dict)  # {"type": the SSE event name, "text": its data}
                events.append((raw["type"], m.text))
    except fp.BotError as exc:  # BotErrorNoRetry too: the error event's JSON is the message
        return events, json.loads(str(exc))
    return events, None


def _reply_record(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    # The server thread logs as the reply ends; the client may return a moment before (error events).
    deadline = time.monotonic() + 5
    while True:
        found = [r for r in caplog.records if r.name == "polybot.reply"]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert len(found) == 1, [r.getMessage() for r in found]
    return found[0]


def logged(answer: Answer, **expected: Any) -> None:
    got = {k: answer.log[k] for k in expected}
    assert got == expected


# --- refused -----------------------------------------------------------------------------------


def test_anthropic_refusal_with_no_fallback_ends_in_an_error_that_says_the_model_declined(
        served: Served, caplog: pytest.LogCaptureFixture) -> None:
    served.fakes.anthropic.push(recorded("anthropic_refusal.sse"))
    answer = ask(served, "Claude", caplog)
    assert answer.events == [("text", "Sure, the first step")]
    assert answer.error == {
        "allow_retry": False,
        "text": 'The reply was cut off: anthropic declined to answer: the model stopped with stop_reason '
                '"refusal" (its safety policy); a fallback model may answer'}
    logged(answer, outcome="refused", finish_reason="refusal", provider="anthropic", fallback=False,
           attempts=1, input_tokens=21, output_tokens=6, cached_tokens=0, reasoning_tokens=None)


def test_anthropic_refusal_fails_over_and_the_user_gets_the_fallback_answer(
        served: Served, caplog: pytest.LogCaptureFixture) -> None:
    served.fakes.anthropic.push(recorded("anthropic_refusal.sse"))
    served.fakes.openai.push(recorded("openai_reference.sse"))
    answer = ask(served, "Careful", caplog)
    # The refused provider's partial text is replaced by the fallback's whole answer.
    assert answer.events == [("text", "Sure, the first step"), ("replace_response", "Hello")]
    assert answer.error is None
    assert answer.text == "Hello"
    logged(answer, outcome="ok", finish_reason="stop", provider="openai", model="gpt-4o", fallback=True,
           attempts=2)
    assert served.fakes.openai.requests[-1].json["messages"][-1] == {"role": "user", "content": "What is 27 * 453?"}


def test_gemini_blocked_prompt_fails_over_before_any_text(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    served.fakes.gemini.push(recorded("gemini_prompt_blocked.sse"))
    served.fakes.anthropic.push(recorded("anthropic_hello.sse"))
    answer = ask(served, "GemCareful", caplog)
    assert answer.events == [("text", "Hello"), ("text", "!")]
    assert answer.error is None
    logged(answer, outcome="ok", provider="anthropic", fallback=True, finish_reason="end_turn",
           input_tokens=25, output_tokens=15)


def test_azure_prompt_filter_fails_over(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    served.fakes.openai.push(recorded("azure_prompt_filtered.json", status=400))
    served.fakes.anthropic.push(recorded("anthropic_hello.sse"))
    answer = ask(served, "OpenAICareful", caplog)
    assert answer.events == [("text", "Hello"), ("text", "!")]
    logged(answer, outcome="ok", provider="anthropic", fallback=True, attempts=2)


def test_refused_by_every_provider_in_the_chain(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    served.fakes.gemini.push(recorded("gemini_safety.sse"))
    served.fakes.anthropic.push(recorded("anthropic_refusal.sse"))
    answer = ask(served, "GemCareful", caplog)
    assert answer.events == [("text", "Here is how"), ("replace_response", "Sure, the first step")]
    assert answer.error is not None and answer.error["allow_retry"] is False
    assert answer.error["text"] == (
        "The reply was cut off: gemini declined to answer: the reply was stopped for SAFETY; "
        'anthropic declined to answer: the model stopped with stop_reason "refusal" (its safety policy); '
        "a fallback model may answer")
    logged(answer, outcome="refused", provider="anthropic", fallback=True, attempts=2)


@pytest.mark.parametrize(("bot", "fake", "stream", "events", "message", "finish"), [
    ("Gpt4o", "openai", "openai_refusal.sse", [],
     "openai declined to answer: I'm sorry, I cannot assist with that request.", "stop"),
    ("Gpt4o", "openai", "azure_content_filter.sse", [("text", "The battle scene opens")],
     "The reply was cut off: openai declined to answer: its content filter stopped the reply", "content_filter"),
    ("Gemini", "gemini", "gemini_safety.sse", [("text", "Here is how")],
     "The reply was cut off: gemini declined to answer: the reply was stopped for SAFETY", "SAFETY"),
    ("Gemini", "gemini", "gemini_recitation.sse", [("text", "It was the best of times, it was the worst of times,")],
     "The reply was cut off: gemini declined to answer: the reply was stopped for RECITATION", "RECITATION"),
    ("Gemini", "gemini", "gemini_prompt_blocked.sse", [],
     "gemini declined to answer: the prompt was blocked (SAFETY)", "SAFETY"),
    ("Gpt4o", "openai", "azure_prompt_filtered.json", [],
     "openai declined to answer: its content filter blocked the prompt", "content_filter"),
], ids=["openai delta.refusal", "openai content_filter", "gemini SAFETY", "gemini RECITATION",
        "gemini blockReason", "azure prompt filter 400"])
def test_refusal_without_fallback(served: Served, caplog: pytest.LogCaptureFixture, bot: str, fake: str,
                                  stream: str, events: list[tuple[str, str]], message: str, finish: str) -> None:
    getattr(served.fakes, fake).push(recorded(stream, status=400 if stream.endswith(".json") else 200))
    answer = ask(served, bot, caplog)
    assert answer.events == events
    assert answer.error == {"allow_retry": False, "text": message}
    logged(answer, outcome="refused", finish_reason=finish, fallback=False, attempts=1)


# --- truncated ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("bot", "fake", "stream", "chunks", "finish", "tokens"), [
    ("Gpt4o", "openai", "openai_length_usage.sse", ["Newton's three laws", " describe how forces"], "length",
     {"input_tokens": 2006, "output_tokens": 300, "reasoning_tokens": 256, "cached_tokens": 1920}),
    ("Claude", "anthropic", "anthropic_max_tokens_cached.sse",
     ["The Euclidean algorithm repeatedly", " divides the larger number"], "max_tokens",
     {"input_tokens": 12, "output_tokens": 10, "reasoning_tokens": None, "cached_tokens": 2048}),
    ("Gemini", "gemini", "gemini_max_tokens_cached.sse",
     ["The Euclidean algorithm repeatedly", " divides the larger number"], "MAX_TOKENS",
     {"input_tokens": 2060, "output_tokens": 10, "reasoning_tokens": None, "cached_tokens": 2048}),
], ids=["openai length", "anthropic max_tokens", "gemini MAX_TOKENS"])
def test_truncated_reply_keeps_its_text_and_ends_with_the_notice(
        served: Served, caplog: pytest.LogCaptureFixture, bot: str, fake: str, stream: str, chunks: list[str],
        finish: str, tokens: dict[str, int | None]) -> None:
    getattr(served.fakes, fake).push(recorded(stream))
    answer = ask(served, bot, caplog)
    assert answer.events == [("text", c) for c in chunks] + [("text", TRUNCATED_NOTICE)]
    assert answer.error is None
    logged(answer, outcome="truncated", finish_reason=finish, fallback=False, **tokens)


# --- a tool call with no tool declared -----------------------------------------------------------


@pytest.mark.parametrize(("bot", "fake", "stream", "chunks", "finish"), [
    ("Gpt4o", "openai", "openai_tool_calls.sse", [], "tool_calls"),
    ("Claude", "anthropic", "anthropic_tool_use.sse",
     ["Okay", ",", " let", "'s", " check", " the", " weather", " for", " San", " Francisco", ",", " CA", ":"],
     "tool_use"),
    ("Gemini", "gemini", "gemini_function_call.sse", [], "STOP"),
], ids=["openai tool_calls", "anthropic tool_use", "gemini functionCall"])
def test_tool_call_without_tools_ends_in_an_error_naming_the_tool(
        served: Served, caplog: pytest.LogCaptureFixture, bot: str, fake: str, stream: str, chunks: list[str],
        finish: str) -> None:
    getattr(served.fakes, fake).push(recorded(stream))
    answer = ask(served, bot, caplog)
    assert answer.events == [("text", c) for c in chunks]
    assert answer.error == {
        "allow_retry": False,
        "text": f"The model asked to call 'get_weather', but {bot} declares no tools; add `tools` to its "
                "bot.toml or change the prompt"}
    logged(answer, outcome="tool_call", finish_reason=finish, fallback=False, attempts=1)


# --- thinking ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("bot", "fake", "stream", "answer_chunks", "reasoning_tokens"), [
    ("Claude", "anthropic", "anthropic_thinking.sse", ["27 * 453 = 12,231"], None),
    ("Gemini", "gemini", "gemini_thinking.sse", ["27 * 453 = 12,231"], 100),
    ("DeepSeek", "openai", "deepseek_reasoning.sse", ["9.8", " is greater."], 31),
], ids=["anthropic thinking block", "gemini thought parts", "deepseek reasoning_content"])
def test_thinking_is_hidden_by_default(served: Served, caplog: pytest.LogCaptureFixture, bot: str, fake: str,
                                       stream: str, answer_chunks: list[str], reasoning_tokens: int | None) -> None:
    getattr(served.fakes, fake).push(recorded(stream))
    answer = ask(served, bot, caplog)
    assert answer.events == [("text", c) for c in answer_chunks]
    assert answer.error is None
    logged(answer, outcome="ok", reasoning_tokens=reasoning_tokens)


def test_show_thinking_quotes_anthropic_thinking_before_the_answer(
        served: Served, caplog: pytest.LogCaptureFixture) -> None:
    served.fakes.anthropic.push(recorded("anthropic_thinking.sse"))
    answer = ask(served, "ClaudeShows", caplog)
    assert answer.error is None
    assert answer.text == ("> Let me solve this step by step:\n"
                           "> \n"
                           "> 1. First break down 27 * 453\n"
                           "> 2. 453 = 400 + 50 + 3\n"
                           "> 3. 27 * 400 = 10,800\n"
                           "> 4. 27 * 50 = 1,350\n"
                           "> 5. 27 * 3 = 81\n"
                           "> 6. 10,800 + 1,350 + 81 = 12,231"
                           "\n\n27 * 453 = 12,231")
    assert all(kind == "text" for kind, _ in answer.events)
    # The documented stream reports no usage at all: the log says so rather than inventing counts.
    logged(answer, outcome="ok", finish_reason="end_turn", input_tokens=None, output_tokens=None,
           reasoning_tokens=None)


def test_show_thinking_quotes_gemini_thought_parts(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    served.fakes.gemini.push(recorded("gemini_thinking.sse"))
    answer = ask(served, "GemShows", caplog)
    assert answer.error is None
    assert answer.text == ("> **Calculating the product**\n"
                           "> \n"
                           "> I'm splitting 453 into 400 + 50 + 3 and multiplying each part by 27.\n"
                           "\n\n27 * 453 = 12,231")
    logged(answer, outcome="ok", finish_reason="STOP", reasoning_tokens=100, input_tokens=12, output_tokens=9)


def test_show_thinking_quotes_deepseek_reasoning_content(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    served.fakes.openai.push(recorded("deepseek_reasoning.sse"))
    answer = ask(served, "DeepShows", caplog)
    assert answer.error is None
    assert answer.text == "> Okay, 9.11 versus 9.8.\n> 9.8 is 9.80, and 80 > 11.\n\n9.8 is greater."
    logged(answer, outcome="ok", provider="deepseek", model="deepseek-reasoner", finish_reason="stop",
           reasoning_tokens=31, cached_tokens=0, input_tokens=18, output_tokens=40)
    assert served.fakes.openai.requests[-1].headers["authorization"] == f"Bearer {KEYS['DEEPSEEK_API_KEY']}"


def _quoted(answer: Answer) -> list[str]:
    """The lines of the reply before the answer (the blank line that ends the quote)."""
    return answer.text.split("\n\n")[0].split("\n")


def test_every_quoted_thinking_line_starts_with_a_marker(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    for bot, fake, stream in [("ClaudeShows", "anthropic", "anthropic_thinking.sse"),
                              ("GemShows", "gemini", "gemini_thinking.sse"),
                              ("DeepShows", "openai", "deepseek_reasoning.sse")]:
        getattr(served.fakes, fake).push(recorded(stream))
        lines = _quoted(ask(served, bot, caplog))
        assert lines and all(line.startswith(">") for line in lines), (bot, lines)


# --- context overflow --------------------------------------------------------------------------


@pytest.mark.parametrize(("bot", "fake", "body", "message"), [
    ("Gpt4o", "openai", "openai_context_length_exceeded.json",
     "openai refused the request (HTTP 400): This model's maximum context length is 128000 tokens. However, "
     "your messages resulted in 130532 tokens. Please reduce the length of the messages."),
    ("Claude", "anthropic", "anthropic_prompt_too_long.json",
     "anthropic refused the request (HTTP 400): prompt is too long: 208423 tokens > 200000 maximum"),
    ("Gemini", "gemini", "gemini_token_count.json",
     "gemini refused the request (HTTP 400): The input token count (1207315) exceeds the maximum number of "
     "tokens allowed (1048576)."),
], ids=["openai context_length_exceeded", "anthropic prompt is too long", "gemini input token count"])
def test_context_overflow_is_user_message_too_long(served: Served, caplog: pytest.LogCaptureFixture, bot: str,
                                                   fake: str, body: str, message: str) -> None:
    getattr(served.fakes, fake).push(recorded(body, status=400))
    answer = ask(served, bot, caplog)
    assert answer.events == []
    assert answer.error == {"allow_retry": False, "text": message, "error_type": "user_message_too_long"}
    logged(answer, outcome="error", finish_reason=None, attempts=1)


# --- usage in the log line ---------------------------------------------------------------------


def test_ok_reply_logs_reasoning_and_cached_tokens(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    served.fakes.openai.push(recorded("deepseek_reasoning.sse"))
    answer = ask(served, "DeepSeek", caplog)
    assert set(answer.log) >= {"event", "bot", "provider", "model", "attempts", "fallback", "outcome", "ttft_ms",
                               "duration_ms", "finish_reason", "input_tokens", "output_tokens",
                               "reasoning_tokens", "cached_tokens"}
    logged(answer, event="reply", bot="DeepSeek", outcome="ok", reasoning_tokens=31, cached_tokens=0)
    assert isinstance(answer.log["ttft_ms"], int)
    assert not any(key in json.dumps(answer.log) for key in KEYS.values())
