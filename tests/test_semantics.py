"""Real provider semantics above the wire (SPEC §6): outcomes, thinking, model rules, the Poe request.

The wire-level versions of these (real SDKs against recorded provider streams) live in
tests/providers/test_outcomes.py; here an outside adapter scripts the chunks, so what is tested is
polybot's own handling of them, and the adapters' request building is checked on its output.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import fastapi_poe as fp
import pytest

from polybot import ChatRequest, Provider, Usage, register_kind
from polybot.cli import main
from polybot.config import ProviderConfig
from polybot.providers.anthropic import AnthropicProvider
from polybot.providers.base import Chunk, Image, Message, Refused, Thinking
from polybot.providers.openai import OpenAIProvider
from polybot.reliability import TRUNCATED_NOTICE, ProviderPool, Step, stream_chain
from tests.test_runtime import make_bot, reply, request, runtime

PLANS: dict[str, list[object]] = {}
SEEN: list[ChatRequest] = []


class Planned(Provider):
    """Yields its plan: chunks, then applies `("usage", {...})` entries and raises exceptions."""

    async def stream(self, request: ChatRequest, usage: Usage) -> AsyncIterator[Chunk]:
        SEEN.append(request)
        for item in PLANS[self.name]:
            if isinstance(item, Exception):
                raise item
            if isinstance(item, tuple) and item[0] == "usage":
                for key, value in item[1].items():
                    setattr(usage, key, value)
                continue
            yield item  # type: ignore[misc]


@pytest.fixture(autouse=True, scope="module")
def planned_kind() -> Iterator[None]:
    register_kind("planned", Planned)
    yield
    from polybot import providers

    del providers._KINDS["planned"]


def pool(**plans: list[object]) -> ProviderPool:
    PLANS.update(plans)
    return ProviderPool({n: ProviderConfig(kind="planned", timeout=2, max_retries=0) for n in plans})


async def run(p: ProviderPool, *names: str, show_thinking: bool = False) -> list[fp.PartialResponse]:
    chain = [Step(n, ChatRequest(model=f"m-{n}", system="s", messages=(Message("user", "hi"),))) for n in names]
    return [e async for e in stream_chain("Bot", chain, p, show_thinking=show_thinking)]


def joined(events: list[fp.PartialResponse]) -> str:
    return "".join(e.text for e in events if not isinstance(e, fp.ErrorResponse))


def reply_log(caplog: pytest.LogCaptureFixture) -> dict[str, object]:
    records = [r for r in caplog.records if r.name == "polybot.reply"]
    assert len(records) == 1
    data: dict[str, object] = json.loads(records[0].getMessage())
    assert data == records[0].reply  # type: ignore[attr-defined]
    return data


# --- outcomes --------------------------------------------------------------------------------


async def test_thinking_is_hidden_by_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "polybot.reply")
    events = await run(pool(a=[Thinking("Let me think.\nHmm."), "The answer", ("usage", {"reasoning_tokens": 7})]),
                       "a")
    assert joined(events) == "The answer"
    assert reply_log(caplog)["reasoning_tokens"] == 7


async def test_show_thinking_streams_it_first_as_a_blockquote() -> None:
    events = await run(pool(a=[Thinking("Let me think.\nFirst"), Thinking(" step.\n\nThen"), "The ", "answer"]), "a",
                       show_thinking=True)
    text = joined(events)
    quote, answer = text.split("\n\n", 1)[0], text.rsplit("\n\n", 1)[1]
    assert text == "> Let me think.\n> First step.\n> \n> Then\n\nThe answer"
    assert all(line.startswith(">") for line in text.split("\n\nThe answer")[0].splitlines())
    assert quote.startswith("> ") and answer == "The answer"


async def test_truncated_keeps_the_text_and_adds_a_notice(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "polybot.reply")
    events = await run(pool(a=["Once upon a", ("usage", {"outcome": "truncated", "finish_reason": "length"})]), "a")
    assert joined(events) == "Once upon a" + TRUNCATED_NOTICE
    assert not any(isinstance(e, fp.ErrorResponse) for e in events)
    log = reply_log(caplog)
    assert (log["outcome"], log["finish_reason"]) == ("truncated", "length")


async def test_refusal_fails_over_and_the_fallback_answers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "polybot.reply")
    events = await run(pool(a=["I can", Refused("a", "policy")], b=["Sure, here it is."]), "a", "b")
    assert events[-1].is_replace_response and events[-1].text == "Sure, here it is."
    log = reply_log(caplog)
    assert (log["outcome"], log["fallback"], log["provider"]) == ("ok", True, "b")


async def test_refusal_with_nothing_left_is_a_final_error_saying_so(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "polybot.reply")
    events = await run(pool(a=[Refused("a", "the model stopped with stop_reason \"refusal\"")]), "a")
    assert len(events) == 1 and isinstance(events[0], fp.ErrorResponse)
    assert events[0].text == 'a declined to answer: the model stopped with stop_reason "refusal"'
    assert events[0].allow_retry is False
    assert reply_log(caplog)["outcome"] == "refused"


async def test_a_tool_call_with_no_tools_declared_names_the_tool() -> None:
    events = await run(pool(a=[("usage", {"outcome": "tool_call", "tool_calls": ["get_weather"]})]), "a")
    assert isinstance(events[-1], fp.ErrorResponse) and events[-1].allow_retry is False
    assert "'get_weather'" in events[-1].text and "declares no tools" in events[-1].text


async def test_error_type_reaches_poe() -> None:
    from polybot.providers.base import ProviderError

    overflow = ProviderError("too long", retryable=False, error_type="user_message_too_long")
    events = await run(pool(a=[overflow]), "a")
    assert isinstance(events[0], fp.ErrorResponse) and events[0].error_type == "user_message_too_long"


# --- the Poe request, honoured ---------------------------------------------------------------

FULL = 'provider = "echo"\nparams = { echo = "full" }\n'


async def test_poe_temperature_applies_when_the_bot_pins_none(tmp_path: Path) -> None:
    (tmp_path / "providers.toml").write_text('[plan]\nkind = "planned"\ndefault_model = "m"\n')
    PLANS["plan"] = ["ok"]
    make_bot(tmp_path, "Free", 'provider = "plan"\n', "p")
    make_bot(tmp_path, "Pinned", 'provider = "plan"\ntemperature = 0.2\n', "p")
    SEEN.clear()
    for name in ("Free", "Pinned"):
        await reply(runtime(tmp_path, name), request(("user", "hi"), temperature=1.3))
    assert [r.temperature for r in SEEN] == [1.3, 0.2]


async def test_skip_system_prompt_drops_it(tmp_path: Path) -> None:
    make_bot(tmp_path, "Skip", FULL, "SECRET PROMPT")
    text, _ = await reply(runtime(tmp_path, "Skip"), request(("user", "hi"), skip_system_prompt=True))
    assert "SECRET PROMPT" not in text and text.startswith("[system]\n\n\n[user]\nhi")


async def test_language_users_and_senders_reach_the_template(tmp_path: Path) -> None:
    make_bot(tmp_path, "Whom", FULL, "{{ language_code }} {{ users|map(attribute='name')|join(',') }} "
             "{% for m in messages %}{{ m.sender }};{% endfor %}")
    req = fp.QueryRequest(version="1.2", type="query", user_id="u", conversation_id="c", message_id="m",
                          language_code="de", users=[fp.User(id="u1", name="Ada"), fp.User(id="u2", name="Bob")],
                          query=[fp.ProtocolMessage(role="user", content="hi", sender=fp.Sender(name="Ada")),
                                 fp.ProtocolMessage(role="bot", content="yo", sender=fp.Sender(name="Other"))])
    text, _ = await reply(runtime(tmp_path, "Whom"), req)
    assert text.startswith("[system]\nde Ada,Bob Ada;Other;")


async def test_settings_declare_poe_dependencies_of_every_link(tmp_path: Path) -> None:
    make_bot(tmp_path, "Relay", 'provider = "poe"\nmodel = "Claude-Sonnet-4"\n'
             '[[fallback]]\nprovider = "poe"\nmodel = "GPT-4o"\n'
             '[poe]\nserver_bot_dependencies = { "GPT-4o" = 2 }\nenable_multi_entity_prompting = true\n', "p")
    settings = runtime(tmp_path, "Relay").settings()
    assert settings.server_bot_dependencies == {"Claude-Sonnet-4": 1, "GPT-4o": 2}
    assert settings.enable_multi_entity_prompting is True


# --- adapters own their model rules ----------------------------------------------------------


def openai(model: str, **config: object) -> OpenAIProvider:
    return OpenAIProvider("openai", ProviderConfig(kind="openai", **config))  # type: ignore[arg-type]


def test_reasoning_models_get_max_completion_tokens_and_no_sampling() -> None:
    req = ChatRequest(model="o3-mini", system="Be brief.", messages=(Message("user", "hi", name="Ada Lovelace"),),
                      temperature=0.7, max_tokens=500, params={"top_p": 0.9, "seed": 1})
    body = openai("o3-mini").body(req)
    assert "temperature" not in body and "max_tokens" not in body
    assert body["max_completion_tokens"] == 500
    assert body["extra_body"] == {"seed": 1}
    assert body["messages"] == [{"role": "developer", "content": "Be brief."},
                                {"role": "user", "content": "hi", "name": "Ada_Lovelace"}]
    plain = openai("gpt-4o-mini").body(ChatRequest(model="gpt-4o-mini", system="s", messages=(), temperature=0.7,
                                                   max_tokens=5))
    assert (plain["temperature"], plain["max_tokens"], plain["messages"][0]["role"]) == (0.7, 5, "system")


def test_images_go_only_to_models_that_take_them() -> None:
    cat = Image("https://x/cat.png", "image/png", "cat.png")
    req = ChatRequest(model="llama-3.1-8b-instant", system="", messages=(Message("user", "look", (cat,)),))
    text_only = openai("x").body(req)["messages"][0]["content"]
    assert text_only == "look\n\n[image 'cat.png' not shown: model llama-3.1-8b-instant does not take images]"
    flagged = openai("x", vision=True).body(req)["messages"][0]["content"]
    assert flagged[1] == {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}


def test_anthropic_merges_its_own_turns_and_never_sends_an_empty_text_block() -> None:
    cat = Image("https://x/cat.png", "image/png", "cat.png")
    # The turns an openai primary would get, handed to an anthropic fallback unmerged.
    req = ChatRequest(model="claude-sonnet-4-5", system="s", temperature=1.5, params={"top_p": 0.5},
                      messages=(Message("assistant", "Hi!"), Message("user", "", (cat,)),
                                Message("assistant", "A cat."), Message("user", "and"), Message("user", "this?")))
    kwargs, extra = AnthropicProvider("anthropic", ProviderConfig(kind="anthropic")).body(req)
    assert kwargs["messages"] == [
        {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}}]},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "and\n\nthis?"},
    ]
    assert kwargs["max_tokens"] == 64000  # the model's output limit, from the model table
    assert extra == {"temperature": 1.0}  # clamped to Anthropic's range; top_p dropped for this model


BUILD_CASES = {
    "anthropic temperature": ('provider = "anthropic"\ntemperature = 1.5\n',
                              "bots/Rules/bot.toml:2: temperature: Anthropic models take 0 to 1, got 1.5"),
    "reasoning temperature": ('provider = "openai"\nmodel = "o3"\ntemperature = 0.5\n',
                              "bots/Rules/bot.toml:3: temperature: o3 is a reasoning model and takes no "
                              "temperature; remove it"),
    "unknown option": ('provider = "openai"\nparams = { top_pp = 0.9 }\n',
                       "bots/Rules/bot.toml:2: params: unknown key 'top_pp' (did you mean 'top_p'?); options "
                       "polybot does not know go under params.extra_body, unchecked"),
    "wrong option type": ('provider = "gemini"\n[params]\ntop_k = "many"\n',
                          "bots/Rules/bot.toml:3: params.top_k: expected a number but received 'many'"),
    "top_p with temperature": ('provider = "anthropic"\nmodel = "claude-haiku-4-5"\ntemperature = 0.5\n'
                               '[params]\ntop_p = 0.9\n',
                               "bots/Rules/bot.toml:5: params.top_p: claude-haiku-4-5 rejects temperature and "
                               "top_p together; keep one"),
}


@pytest.mark.parametrize("toml,expected", BUILD_CASES.values(), ids=BUILD_CASES.keys())
def test_build_checks_params_and_model_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str,
                                             expected: str) -> None:
    make_bot(tmp_path, "Rules", toml, "p")
    assert main(["build", "--project", str(tmp_path)]) == 1
    assert capsys.readouterr().err.splitlines() == [expected]


def test_extra_body_is_the_escape_hatch(tmp_path: Path) -> None:
    make_bot(tmp_path, "Hatch", 'provider = "openai"\nparams = { top_p = 0.9, extra_body = { new_flag = 1 } }\n', "p")
    assert main(["build", "--project", str(tmp_path)]) == 0
    body = openai("gpt-4o").body(ChatRequest(model="gpt-4o", system="", messages=(),
                                             params={"top_p": 0.9, "extra_body": {"new_flag": 1}}))
    assert body["extra_body"] == {"top_p": 0.9, "new_flag": 1}


def test_the_build_imports_no_provider_sdk(tmp_path: Path) -> None:
    import subprocess
    import sys

    make_bot(tmp_path, "Mixed", 'provider = "anthropic"\n[[fallback]]\nprovider = "gemini"\n', "p")
    code = ("import sys; from polybot.cli import main; main(['build', '--project', sys.argv[1]]); "
            "print(sorted(m for m in ('openai', 'anthropic', 'google.genai') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
