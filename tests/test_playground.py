"""The playground's JSON routes, in-process through httpx.ASGITransport: each reply's tool calls,
files and trace; attachments held and sent as Poe sends them; a bot's tests; the last build."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polybot.app import BotServer
from polybot.cli import main
from polybot.playground import MAX_UPLOAD, TOKEN_HEADER, Playground
from tests.fakes.server import serve_in_thread
from tests.fakes.tool_wire import Call, ToolFake, Turn
from tests.test_security_server import client, dev_server, write_bot

KEY = "sk-tool-key-never-shown"
ENV = {"TOOLS_KEY": KEY}
HOOKS = '''
def get_weather(city: str) -> dict:
    """Current weather for a city."""
    return {"city": city, "temp": 21}

def broken(x: int) -> str:
    """Always fails."""
    raise RuntimeError("database is down")
'''


def events(text: str) -> list[tuple[str, Any]]:
    """The (event, data) pairs of a playground chat stream."""
    found = []
    for block in text.strip().split("\n\n"):
        name = re.search(r"^event: (.*)$", block, re.M)
        data = re.search(r"^data: (.*)$", block, re.M)
        if name and data:
            found.append((name.group(1), json.loads(data.group(1))))
    return found


def trace_of(text: str) -> dict[str, Any]:
    return next(data for name, data in events(text) if name == "trace")


async def chat(server: BotServer, playground: Playground, bot: str, body: dict[str, Any]) -> str:
    async with client(server) as c:
        response = await c.post(f"/_polybot/chat/{bot}", json=body, headers={TOKEN_HEADER: playground.access.token})
    assert response.status_code == 200, response.text
    return response.text


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[ToolFake]:
    monkeypatch.setenv("TOOLS_KEY", KEY)
    f = ToolFake()
    with serve_in_thread(f.app) as url:
        f.base_url = url  # type: ignore[attr-defined]
        yield f


async def test_a_reply_shows_each_tool_call_and_a_trace_without_keys(tmp_path: Path, fake: ToolFake) -> None:
    (tmp_path / "providers.toml").write_text(
        f'[main]\nkind = "openai"\napi_base = "{fake.base_url}/v1"\napi_key_env = "TOOLS_KEY"\n'  # type: ignore[attr-defined]
        'default_model = "gpt-4o"\nmax_retries = 0\ntimeout = 10\n')
    write_bot(tmp_path, "Tooly", 'provider = "main"\ntools = ["get_weather", "broken"]\n', "You use tools.")
    (tmp_path / "bots/Tooly/hooks.py").write_text(HOOKS)
    fake.turns.extend([Turn(calls=[Call("a", "get_weather", {"city": "Paris"}), Call("b", "broken", {"x": 1})]),
                       Turn(text="It is 21 degrees.")])
    server, playground = dev_server(tmp_path, ENV)
    try:
        text = await chat(server, playground, "Tooly", ask("Weather in Paris?"))
    finally:
        await playground.workspace.pool.aclose()
    found = events(text)
    tools = [data for name, data in found if name == "tool"]
    assert tools == [
        {"tool": "get_weather", "arguments": '{"city": "Paris"}', "result": '{"city": "Paris", "temp": 21}',
         "ok": True},
        {"tool": "broken", "arguments": '{"x": 1}', "result": tools[1]["result"], "ok": False},
    ]
    assert "database is down" in tools[1]["result"]
    assert "".join(d["text"] for n, d in found if n == "text") == "It is 21 degrees."
    trace = trace_of(text)
    assert trace["prompt"] == "You use tools."
    assert [r["system"] for r in trace["requests"]] == ["You use tools.", "You use tools."]
    assert trace["requests"][0]["kind"] == "openai" and trace["requests"][0]["model"] == "gpt-4o"
    assert [t[0] for t in trace["requests"][0]["tools"]] == ["get_weather", "broken"]
    assert trace["requests"][1]["messages"][-1]["role"] == "tool"  # the second round carries the results
    assert trace["tools"] == ["get_weather", "broken"] and trace["tool_rounds"] == 1
    assert trace["outcome"] == "ok" and trace["provider"] == "main" and not trace["fallback"]
    assert trace["attempts"] == 2 and trace["failures"] == []
    assert trace["finish_reason"] == "stop"
    assert trace["ttft_ms"] is not None and trace["duration_ms"] >= trace["ttft_ms"]
    assert isinstance(trace["tokens"]["input"], int)
    assert KEY not in text
    assert [n for n, _ in found][-2:] == ["trace", "done"]


async def test_the_trace_shows_failures_and_the_fallback_that_answered(tmp_path: Path) -> None:
    (tmp_path / "providers.toml").write_text(
        '[down]\nkind = "openai"\napi_base = "http://127.0.0.1:9/v1"\napi_key_env = "TOOLS_KEY"\n'
        'default_model = "gpt-4o"\nmax_retries = 0\ntimeout = 5\n')
    write_bot(tmp_path, "Backup", 'provider = "down"\n[[fallback]]\nprovider = "echo"\n', "You are a backup.")
    server, playground = dev_server(tmp_path, ENV)
    try:
        text = await chat(server, playground, "Backup", ask("hello"))
    finally:
        await playground.workspace.pool.aclose()
    trace = trace_of(text)
    assert trace["fallback"] is True and trace["provider"] == "echo" and trace["outcome"] == "ok"
    assert trace["attempts"] == 2 and len(trace["failures"]) == 1
    assert [r["provider"] for r in trace["requests"]] == ["down", "echo"]


async def test_controls_from_the_layout_reach_the_prompt(tmp_path: Path) -> None:
    write_bot(tmp_path, "Tuned", 'provider = "echo"\n'
              '[[controls]]\ncontrol = "drop_down"\nlabel = "Tone"\nparameter_name = "tone"\ndefault_value = "calm"\n'
              'options = [{ value = "calm", name = "Calm" }, { value = "pirate", name = "Pirate" }]\n'
              '[[parameter_controls.sections]]\nname = "More"\n'
              '[[parameter_controls.sections.controls]]\ncontrol = "toggle_switch"\nlabel = "Loud"\n'
              'parameter_name = "loud"\ndefault_value = false\n',
              "Tone: {{ params.tone }}{% if params.loud %}, loud{% endif %}.")
    server, playground = dev_server(tmp_path, ENV)
    async with client(server) as c:
        state = (await c.get("/_polybot/state")).json()
    sections = state["bots"][0]["sections"]
    assert [s.get("name") for s in sections] == [None, "More"]
    assert sections[0]["controls"][0]["parameter_name"] == "tone"
    assert sections[1]["controls"][0]["control"] == "toggle_switch"
    text = await chat(server, playground, "Tuned", ask("hi", params={"tone": "pirate", "loud": True}))
    assert trace_of(text)["prompt"] == "Tone: pirate, loud."
    text = await chat(server, playground, "Tuned", ask("hi", params={"tone": "shouting"}))  # not an option
    assert trace_of(text)["prompt"] == "Tone: calm."


async def test_attachments_are_held_served_and_sent_as_poe_sends_them(tmp_path: Path) -> None:
    write_bot(tmp_path, "Eyes", 'provider = "echo"\nparams = { echo = "full" }\n', "You read files.")
    server, playground = dev_server(tmp_path, ENV)
    token = {TOKEN_HEADER: playground.access.token}
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    async with client(server) as c:
        note = (await c.post("/_polybot/upload", headers=token, json={
            "name": "notes.txt", "content_type": "text/plain",
            "data": base64.b64encode(b"hello notes").decode()})).json()
        picture = (await c.post("/_polybot/upload", headers=token, json={
            "name": "cat.png", "content_type": "image/png", "data": base64.b64encode(png).decode()})).json()
        assert note["url"].startswith("http://127.0.0.1:8080/_polybot/files/") and note["url"].endswith("/notes.txt")
        served = await c.get(picture["url"])
        assert served.content == png and served.headers["content-type"] == "image/png"
        assert served.headers["x-content-type-options"] == "nosniff" and "sandbox" in \
            served.headers["content-security-policy"]
        assert (await c.get(note["url"])).headers["content-disposition"] == "attachment"
        # Writes need the page's token; reads stay on this machine; too large and broken uploads are refused.
        assert (await c.post("/_polybot/upload", json={"data": ""})).status_code == 403
        assert (await c.get(picture["url"], headers={"host": "example.test"})).status_code == 403
        big = base64.b64encode(b"x" * (MAX_UPLOAD + 1)).decode()
        refused = await c.post("/_polybot/upload", headers=token, json={"name": "big", "data": big})
        assert refused.status_code == 413 and "at most 5 MB" in refused.json()["detail"]
        assert (await c.post("/_polybot/upload", headers=token, json={"data": "not base64!"})).status_code == 400
        gone = await c.post("/_polybot/chat/Eyes", headers=token, json={
            "messages": [{"role": "user", "content": "x", "attachments": ["nope"]}]})
        assert gone.status_code == 400 and "attach it again" in gone.json()["detail"]
    text = await chat(server, playground, "Eyes", {"messages": [
        {"role": "user", "content": "What is attached?", "attachments": [note["id"], picture["id"]]}]})
    reply = "".join(d["text"] for n, d in events(text) if n == "text")
    assert "<attachment name='notes.txt'>\nhello notes\n</attachment>" in reply  # parsed_content, as Poe sends
    sent = trace_of(text)["requests"][0]["messages"][-1]
    assert sent["images"] == [picture["url"]]


async def test_a_bots_tests_run_from_the_page(tmp_path: Path) -> None:
    write_bot(tmp_path, "Echo", 'provider = "echo"\n', "You echo.")
    (tmp_path / "bots/Echo/tests.toml").write_text(
        '[[test]]\nname = "echoes"\nask = "hello"\ncontains = ["hello"]\n\n'
        '[[test]]\nname = "says bye"\nask = "hello"\ncontains = ["bye"]\n')
    write_bot(tmp_path, "Quiet", 'provider = "echo"\n', "No tests here.")
    server, playground = dev_server(tmp_path, ENV)
    async with client(server) as c:
        token = {TOKEN_HEADER: playground.access.token}
        result = (await c.post("/_polybot/tests/Echo", headers=token, json={})).json()
        assert [(o["name"], o["passed"], o["line"]) for o in result["outcomes"]] == [
            ("echoes", True, 1), ("says bye", False, 6)]
        assert "does not contain 'bye'" in result["outcomes"][1]["failures"][0]
        state = (await c.get("/_polybot/state")).json()
        assert {b["name"]: b["tests"] for b in state["bots"]} == {"Echo": True, "Quiet": False}
        assert (await c.post("/_polybot/tests/Echo", json={})).status_code == 403
        assert (await c.post("/_polybot/tests/Nobody", headers=token, json={})).status_code == 404


async def test_replies_from_the_source_and_from_the_last_build(tmp_path: Path) -> None:
    write_bot(tmp_path, "Poet", 'provider = "echo"\n', "You write about the sea.")
    server, playground = dev_server(tmp_path, ENV)
    missing = await chat_status(server, playground, "Poet", ask("hi", source="build"))
    assert missing[0] == 404 and "polybot build" in missing[1]["detail"]
    assert main(["build", "--project", str(tmp_path)]) == 0
    (tmp_path / "bots/Poet/system.md.j2").write_text("You write about rivers.")
    playground.workspace.refresh()
    async with client(server) as c:
        assert (await c.get("/_polybot/state")).json()["built"] is True
    try:
        edited = trace_of(await chat(server, playground, "Poet", ask("hi")))
        built = trace_of(await chat(server, playground, "Poet", ask("hi", source="build")))
    finally:
        await playground.aclose()
    assert edited["prompt"] == "You write about rivers."
    assert built["prompt"] == "You write about the sea."
    assert built["requests"][0]["system"] == "You write about the sea."


async def chat_status(server: BotServer, playground: Playground, bot: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with client(server) as c:
        response = await c.post(f"/_polybot/chat/{bot}", json=body, headers={TOKEN_HEADER: playground.access.token})
    return response.status_code, response.json()


async def test_only_the_pages_own_script_runs(tmp_path: Path) -> None:
    write_bot(tmp_path, "Echo")
    server, _ = dev_server(tmp_path, ENV)
    async with client(server) as c:
        page, again = await c.get("/"), await c.get("/")
    policy = page.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", policy)
    assert nonce is not None and f'<script nonce="{nonce.group(1)}">' in page.text
    assert page.text.count("<script") == 1 and "frame-ancestors 'none'" in policy
    assert nonce.group(1) not in again.headers["content-security-policy"]  # a fresh nonce per page
