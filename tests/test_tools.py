"""Tools (SPEC §7) through the real SDKs: each provider's native tool protocol, served by a fake
that speaks it, the loop run by polybot, the tools in a real hooks.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import fastapi_poe as fp
import pytest
from pydantic import BaseModel

from polybot.cli import main
from polybot.reliability import ToolActivity
from polybot.tools import make_tool
from tests.fakes.server import serve_in_thread
from tests.fakes.tool_wire import Call, ToolFake, Turn
from tests.test_runtime import make_bot, request, runtime

HOOKS = '''
import asyncio, time
from typing import Annotated

CALLS = []

def get_weather(city: Annotated[str, "City name, e.g. Paris"], unit: str = "C") -> dict:
    """Current weather for a city."""
    CALLS.append(call := ["get_weather", city, time.monotonic()])
    time.sleep(0.05)
    call.append(time.monotonic())
    return {"city": city, "temp": 21, "unit": unit}

async def lookup_order(order_id: int) -> str:
    """Look up an order by its number."""
    CALLS.append(call := ["lookup_order", order_id, time.monotonic()])
    await asyncio.sleep(0.05)
    call.append(time.monotonic())
    return f"order {order_id}: shipped"

def draw(subject: str) -> list:
    """Draw a picture."""
    import polybot
    return [polybot.File(f"https://cdn.example/{subject}.png", "image/png", f"{subject}.png"), "size 512x512"]

def broken(x: int) -> str:
    """Always fails."""
    raise RuntimeError("database is down")
'''

KINDS = {"openai": "/v1", "anthropic": "", "gemini": ""}


@pytest.fixture
def fake() -> Iterator[ToolFake]:
    f = ToolFake()
    with serve_in_thread(f.app) as url:
        f.base_url = url  # type: ignore[attr-defined]
        yield f


def project(root: Path, fake: ToolFake, kind: str, extra: str = "", fallback: str = "") -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "providers.toml").write_text(
        f'[main]\nkind = "{kind}"\napi_base = "{fake.base_url}{KINDS[kind]}"\napi_key_env = "TOOLS_KEY"\n'  # type: ignore[attr-defined]
        f'default_model = "gpt-4o"\nmax_retries = 0\ntimeout = 10\n{fallback}')
    make_bot(root, "Tooly", f'provider = "main"\ntools = ["get_weather", "lookup_order", "broken", "draw"]\n{extra}',
             "You use tools.", hooks=HOOKS)


async def events_of(root: Path, text: str = "Weather in Paris?") -> list[Any]:
    rt = runtime(root, "Tooly")
    try:
        return [e async for e in rt.respond(request(("user", text)))]
    finally:
        await rt.pool.aclose()


def text_of(events: list[Any]) -> str:
    out = ""
    for e in events:
        if isinstance(e, fp.ErrorResponse) or isinstance(e, ToolActivity):
            continue
        out = e.text if e.is_replace_response else out + e.text
    return out


def calls_of(root: Path) -> list[Any]:
    import sys

    return sys.modules["polybot_hooks_Tooly"].CALLS  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOOLS_KEY", "sk-tools-test")


@pytest.mark.parametrize("kind", KINDS)
async def test_one_call_then_a_text_answer(tmp_path: Path, fake: ToolFake, kind: str) -> None:
    project(tmp_path, fake, kind)
    fake.turns.extend([Turn(text="Let me check.", calls=[Call("call_1", "get_weather", {"city": "Paris"})]),
                       Turn(text="It is 21 C in Paris.")])
    events = await events_of(tmp_path)
    assert text_of(events) == "Let me check.It is 21 C in Paris."
    activity = [e for e in events if isinstance(e, ToolActivity)]
    assert [(a.tool, json.loads(a.arguments), json.loads(a.result)) for a in activity] == [
        ("get_weather", {"city": "Paris"}, {"city": "Paris", "temp": 21, "unit": "C"})]
    first, second = fake.bodies
    result = '{"city": "Paris", "temp": 21, "unit": "C"}'
    if kind == "openai":
        assert first["tools"][0]["function"]["name"] == "get_weather"
        city = first["tools"][0]["function"]["parameters"]["properties"]["city"]
        assert city["description"] == "City name, e.g. Paris"
        assert second["messages"][-2:] == [
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                                  "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": result}]
    elif kind == "anthropic":
        assert first["tools"][0]["input_schema"]["required"] == ["city"]
        assert second["messages"][-2:] == [
            {"role": "assistant", "content": [{"type": "text", "text": "Let me check."},
                                              {"type": "tool_use", "id": "call_1", "name": "get_weather",
                                               "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": result}]}]
    else:
        assert first["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
        model, user = second["contents"][-2:]
        assert model["role"] == "model" and model["parts"][-1]["functionCall"] == {"name": "get_weather",
                                                                                   "args": {"city": "Paris"}}
        # The thought signature goes back exactly as it came.
        assert model["parts"][-1].get("thoughtSignature", model["parts"][-1].get("thought_signature")) == "c2lnbmF0dXJl"
        assert user["parts"][0]["functionResponse"]["name"] == "get_weather"
        assert user["parts"][0]["functionResponse"]["response"] == {"result": result}


@pytest.mark.parametrize("kind", KINDS)
async def test_two_calls_in_one_turn_run_concurrently(tmp_path: Path, fake: ToolFake, kind: str) -> None:
    project(tmp_path, fake, kind)
    fake.turns.extend([Turn(calls=[Call("a", "get_weather", {"city": "Oslo"}), Call("b", "lookup_order",
                                                                                   {"order_id": 7})]),
                       Turn(text="Done.")])
    events = await events_of(tmp_path)
    assert text_of(events) == "Done."
    calls = calls_of(tmp_path)
    assert sorted(c[0] for c in calls) == ["get_weather", "lookup_order"]
    (_, _, start_a, end_a), (_, _, start_b, end_b) = calls
    assert max(start_a, start_b) < min(end_a, end_b)  # one started before the other ended: they overlap


@pytest.mark.parametrize("kind", KINDS)
async def test_a_chain_of_two_rounds(tmp_path: Path, fake: ToolFake, kind: str) -> None:
    project(tmp_path, fake, kind)
    fake.turns.extend([Turn(calls=[Call("a", "lookup_order", {"order_id": 1})]),
                       Turn(calls=[Call("b", "get_weather", {"city": "Rome"})]),
                       Turn(text="Shipped; sunny in Rome.")])
    events = await events_of(tmp_path)
    assert text_of(events) == "Shipped; sunny in Rome."
    assert [c[0] for c in calls_of(tmp_path)] == ["lookup_order", "get_weather"]
    assert len(fake.bodies) == 3


@pytest.mark.parametrize("kind", KINDS)
async def test_a_tool_that_raises_returns_its_error_to_the_model(tmp_path: Path, fake: ToolFake, kind: str,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "polybot.tools")
    project(tmp_path, fake, kind)
    fake.turns.extend([Turn(calls=[Call("x", "broken", {"x": 1})]), Turn(text="Sorry, the database is down.")])
    events = await events_of(tmp_path)
    assert text_of(events) == "Sorry, the database is down."
    assert "error: RuntimeError: database is down" in json.dumps(fake.bodies[1])
    assert any("bots/Tooly/hooks.py:" in r.getMessage() and "tool broken failed" in r.getMessage()
               for r in caplog.records)
    line = int(next(r.getMessage() for r in caplog.records if "tool broken" in r.getMessage()).split(":")[1])
    assert HOOKS.splitlines()[line - 1].strip() == 'raise RuntimeError("database is down")'


@pytest.mark.parametrize("kind", KINDS)
async def test_a_model_that_loops_stops_at_max_tool_rounds(tmp_path: Path, fake: ToolFake, kind: str) -> None:
    project(tmp_path, fake, kind, extra="max_tool_rounds = 2\n")
    fake.turns.extend([Turn(calls=[Call(f"c{i}", "lookup_order", {"order_id": i})]) for i in range(5)])
    events = await events_of(tmp_path)
    assert isinstance(events[-1], fp.ErrorResponse)
    assert "stopped after 2 rounds of tool calls" in events[-1].text
    assert len(calls_of(tmp_path)) == 2 and len(fake.bodies) == 3


async def test_failover_mid_round_never_reruns_a_tool(tmp_path: Path, fake: ToolFake) -> None:
    second = ToolFake(Turn(text="From the fallback: shipped."))
    with serve_in_thread(second.app) as url:
        fallback = (f'\n[backup]\nkind = "anthropic"\napi_base = "{url}"\napi_key_env = "TOOLS_KEY"\n'
                    'default_model = "claude-haiku-4-5"\nmax_retries = 0\n')
        project(tmp_path, fake, "openai", fallback=fallback)
        toml = tmp_path / "bots" / "Tooly" / "bot.toml"
        toml.write_text(toml.read_text() + '[[fallback]]\nprovider = "backup"\n')
        fake.turns.extend([Turn(text="Checking.", calls=[Call("call_9", "lookup_order", {"order_id": 9})]),
                           Turn(status=500)])
        events = await events_of(tmp_path, "Where is order 9?")
    assert text_of(events) == "From the fallback: shipped."
    assert [c[0] for c in calls_of(tmp_path)] == ["lookup_order"]  # once, not again after failover
    # The fallback continues from the finished round, in its own protocol.
    assert second.bodies[0]["messages"][-2:] == [
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "call_9", "name": "lookup_order",
                                           "input": {"order_id": 9}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_9",
                                      "content": "order 9: shipped"}]}]


async def test_anthropic_thinking_blocks_go_back_with_their_signatures(tmp_path: Path, fake: ToolFake) -> None:
    project(tmp_path, fake, "anthropic")
    fake.turns.extend([Turn(thinking="The user wants weather.", calls=[Call("t1", "get_weather", {"city": "Bern"})]),
                       Turn(text="Sunny.")])
    assert text_of(await events_of(tmp_path)) == "Sunny."
    assistant = fake.bodies[1]["messages"][-2]
    assert assistant["content"][0] == {"type": "thinking", "thinking": "The user wants weather.",
                                       "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pk"}


async def test_tools_the_poe_request_supplies_are_returned_to_the_caller(tmp_path: Path, fake: ToolFake) -> None:
    project(tmp_path, fake, "openai")
    fake.turns.append(Turn(calls=[Call("call_p", "search_web", {"q": "polybot"})]))
    rt = runtime(tmp_path, "Tooly")
    from fastapi_poe.types import FunctionDefinition, ParametersDefinition

    tool = fp.ToolDefinition(type="function", function=FunctionDefinition(
        name="search_web", description="Search the web",
        parameters=ParametersDefinition(type="object", properties={"q": {"type": "string"}}, required=["q"])))
    try:
        events = [e async for e in rt.respond(request(("user", "search"), tools=[tool]))]
    finally:
        await rt.pool.aclose()
    assert [t["function"]["name"] for t in fake.bodies[0]["tools"]] == ["get_weather", "lookup_order", "broken",
                                                                        "draw", "search_web"]
    data = [e.data for e in events if e.data]
    assert data[0]["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "id": "call_p", "type": "function", "function": {"name": "search_web",
                                                                      "arguments": '{"q": "polybot"}'}}]
    assert data[1]["choices"][0]["finish_reason"] == "tool_calls"
    assert calls_of(tmp_path) == []


# --- schemas and build errors ------------------------------------------------------------------


class Address(BaseModel):
    street: str
    zip: int


def test_schema_from_type_hints_and_docstring() -> None:
    def plan(mode: Literal["walk", "bike"], stops: list[str], weights: dict[str, float], fast: bool,
             note: Optional[str] = None, to: Address | None = None,
             days: Annotated[int, "How many days"] = 1) -> str:
        """Plan a trip.

        Returns a plan."""
        return ""

    spec = make_tool(plan).spec
    assert spec.description == "Plan a trip.\n\nReturns a plan."
    props = spec.parameters["properties"]
    assert props["mode"] == {"enum": ["walk", "bike"], "title": "Mode", "type": "string"}
    assert props["stops"]["items"] == {"type": "string"}
    assert props["weights"]["additionalProperties"] == {"type": "number"}
    assert props["days"]["description"] == "How many days"
    assert spec.parameters["required"] == ["mode", "stops", "weights", "fast"]
    assert "Address" in json.dumps(spec.parameters["$defs"])


def test_unknown_tools_and_untyped_parameters_are_located_build_errors(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    make_bot(tmp_path, "Tooly", 'provider = "echo"\ntools = ["get_wether", "untyped"]\n', "p",
             hooks="def get_weather(city: str) -> str:\n    return city\n\n\ndef untyped(x):\n    return x\n")
    assert main(["build", "--project", str(tmp_path)]) == 1
    assert sorted(capsys.readouterr().err.splitlines()) == [
        "bots/Tooly/bot.toml:2: tools: 'get_wether' is not a function in bots/Tooly/hooks.py; define "
        "`def get_wether(...)` there",
        "bots/Tooly/hooks.py:5: tool 'untyped': parameter 'x' has no type hint; add one (str, int, float, bool, "
        "list, dict, Literal, a pydantic model)",
    ]


def test_a_type_with_no_json_schema_is_a_build_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_bot(tmp_path, "Tooly", 'provider = "echo"\ntools = ["odd"]\n', "p",
             hooks="import socket\n\ndef odd(s: socket.socket) -> str:\n    return ''\n")
    assert main(["build", "--project", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bots/Tooly/hooks.py:3: tool 'odd': a type hint has no JSON schema")


async def test_a_tool_can_attach_files_to_the_reply(tmp_path: Path, fake: ToolFake) -> None:
    project(tmp_path, fake, "openai")
    fake.turns.extend([Turn(calls=[Call("d", "draw", {"subject": "cat"})]), Turn(text="Here it is.")])
    events = await events_of(tmp_path, "Draw a cat")
    files = [e.attachment for e in events if isinstance(e, fp.PartialResponse) and e.attachment]
    assert [(f.url, f.content_type, f.name) for f in files] == [("https://cdn.example/cat.png", "image/png", "cat.png")]
    assert fake.bodies[1]["messages"][-1]["content"] == 'attached to the reply: cat.png; ["size 512x512"]'


async def test_chat_shows_each_call_collapsed(tmp_path: Path, fake: ToolFake,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from polybot.chat import reply as _reply

    project(tmp_path, fake, "openai")
    fake.turns.extend([Turn(calls=[Call("c1", "get_weather", {"city": "Lima"})]), Turn(text="Warm in Lima.")])
    rt = runtime(tmp_path, "Tooly")
    try:
        text, ok = await _reply(rt, [fp.ProtocolMessage(role="user", content="Lima?")])
    finally:
        await rt.pool.aclose()
    captured = capsys.readouterr()
    assert (text, ok, captured.out) == ("Warm in Lima.", True, "Warm in Lima.\n")
    assert captured.err == '[tool: get_weather({"city": "Lima"}) -> {"city": "Lima", "temp": 21, "unit":...]\n'

