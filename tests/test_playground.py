"""The playground's JSON routes, in-process through httpx.ASGITransport: each reply's tool calls,
files and trace; attachments held and sent as Poe sends them; a bot's tests; the last build."""

from __future__ import annotations

import asyncio
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
from tests.test_security_server import REMOTE, client, dev_server, write_bot

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
        details = (await c.get("/_polybot/bots/Tuned")).json()
    sections = details["sections"]
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
        tests = {name: (await c.get(f"/_polybot/bots/{name}")).json()["tests"] for name in ("Echo", "Quiet")}
        assert tests == {"Echo": True, "Quiet": False}
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


# --- the routes, one by one ---------------------------------------------------------------------

RICH = '''
import fastapi_poe as fp
import polybot

async def respond(request, bot):
    yield "Hello"
    yield fp.PartialResponse(text="suggest me", is_suggested_reply=True)
    yield fp.PartialResponse(text="all new", is_replace_response=True)
    yield polybot.File("https://cdn.example/cat.png", "image/png", "cat.png")
    yield fp.PartialResponse(text="", data={"k": 1})
    yield fp.ErrorResponse(text="it broke", allow_retry=False)
'''


async def test_every_kind_of_event_reaches_the_page_by_name(tmp_path: Path) -> None:
    write_bot(tmp_path, "Rich", 'provider = "echo"\n[poe]\nsuggested_replies = true\n', "p")
    (tmp_path / "bots/Rich/hooks.py").write_text(RICH)
    server, playground = dev_server(tmp_path, ENV)
    got = events(await chat(server, playground, "Rich", ask("go")))
    assert got[:-2] == [
        ("meta", {"suggested_replies": True}), ("text", {"text": "Hello"}),
        ("suggested_reply", {"text": "suggest me"}), ("replace_response", {"text": "all new"}),
        ("file", {"url": "https://cdn.example/cat.png", "content_type": "image/png", "name": "cat.png"}),
        ("data", {"data": {"k": 1}}), ("error", {"text": "it broke", "allow_retry": False})]
    name, trace = got[-2]
    assert name == "trace" and got[-1] == ("done", {})
    # A code-defined bot calls no provider: no attempts, so the trace times the reply itself.
    assert (trace["requests"], trace["attempts"], trace["outcome"]) == ([], 0, None)
    assert isinstance(trace["ttft_ms"], int) and trace["duration_ms"] >= trace["ttft_ms"]


async def test_state_lists_bots_keys_controls_and_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_bot(tmp_path, "Alpha", 'provider = "echo"\ndescription = "First"\n[poe]\nintroduction_message = "Hi!"\n')
    write_bot(tmp_path, "Keyed", 'provider = "openai"\n')
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server, playground = dev_server(tmp_path, ENV)
    async with client(server) as c:
        state = (await c.get("/_polybot/state")).json()
    assert state["version"] == 0 and state["problems"] == [] and state["built"] is False
    alpha, keyed = state["bots"]
    assert alpha == {"name": "Alpha", "provider": "echo", "model": alpha["model"], "key": alpha["key"],
                     "status": "ready"}  # the list: what it shows, nothing more
    assert (keyed["name"], keyed["provider"], keyed["model"]) == ("Keyed", "openai", "gpt-4o-mini")
    assert alpha["key"] != keyed["key"]  # echo needs no key; openai's is missing
    async with client(server) as c:
        details = (await c.get("/_polybot/bots/Alpha")).json()
        missing = await c.get("/_polybot/bots/Nobody")
    async with client(server, peer=REMOTE) as c:
        remote_details = await c.get("/_polybot/bots/Alpha")
    assert (details["name"], details["description"], details["provider"], details["introduction"],
            details["sections"], details["tests"]) == ("Alpha", "First", "echo", "Hi!", [], False)
    assert missing.status_code == 404 and remote_details.status_code == 403

    (tmp_path / "bots/Alpha/system.md.j2").write_text("{% if %}")
    playground.publish(playground.workspace.refresh())
    async with client(server) as c:
        state = (await c.get("/_polybot/state")).json()
        renamed = await c.get("/_polybot/state", headers={"host": "evil.test"})
    async with client(server, peer=REMOTE) as c:
        remote = await c.get("/_polybot/state")
    assert state["version"] == 1
    assert [p.split(": ")[0] for p in state["problems"]] == ["bots/Alpha/system.md.j2:1"]
    assert renamed.status_code == 403 and "--allow-host" in renamed.json()["detail"]
    assert remote.status_code == 403 and "ssh -L" in remote.json()["detail"], remote.text


async def test_events_stream_the_state_now_and_after_each_rebuild(tmp_path: Path) -> None:
    """The stream never ends, and httpx.ASGITransport reads a whole body: the route is called directly."""
    from starlette.requests import Request
    from starlette.responses import StreamingResponse

    def request(host: str) -> Request:
        return Request({"type": "http", "method": "GET", "path": "/_polybot/events", "query_string": b"",
                        "headers": [(b"host", host.encode())], "client": ("127.0.0.1", 50000)})

    write_bot(tmp_path, "Alpha")
    server, playground = dev_server(tmp_path, ENV)
    response = await playground.events(request("127.0.0.1:8080"))
    assert isinstance(response, StreamingResponse) and response.media_type == "text/event-stream"
    stream = response.body_iterator
    seen = []
    for _ in range(2):
        # A rebuild published while the stream waits for one.
        pending = asyncio.ensure_future(anext(stream))  # type: ignore[arg-type]
        if seen:
            await asyncio.sleep(0.05)
            write_bot(tmp_path, "Bravo")
            playground.publish(playground.workspace.refresh())
        chunk = await asyncio.wait_for(pending, 5)
        text = chunk if isinstance(chunk, str) else bytes(chunk).decode()
        assert text.startswith("event: state\ndata: ") and text.endswith("\n\n")
        seen.append(json.loads(text.removeprefix("event: state\ndata: ")))
    await stream.aclose()  # type: ignore[attr-defined]
    assert [s["version"] for s in seen] == [0, 1]
    assert [[b["name"] for b in s["bots"]] for s in seen] == [["Alpha"], ["Alpha", "Bravo"]]
    refused = await playground.events(request("evil.test"))
    assert refused.status_code == 403

    # A rebuild published between the stream's yield and its wait is not lost until the keep-alive.
    stream = (await playground.events(request("127.0.0.1:8080"))).body_iterator
    await anext(stream)  # type: ignore[arg-type]
    write_bot(tmp_path, "Charlie")
    playground.publish(playground.workspace.refresh())
    chunk = await asyncio.wait_for(anext(stream), 2)  # type: ignore[arg-type]
    text = chunk if isinstance(chunk, str) else bytes(chunk).decode()
    assert json.loads(text.removeprefix("event: state\ndata: "))["version"] == 2
    await stream.aclose()  # type: ignore[attr-defined]


async def test_prompt_renders_the_conversation_or_says_why_not(tmp_path: Path) -> None:
    write_bot(tmp_path, "Echo", 'provider = "echo"\n', "{{ bot.name }} heard {{ messages[-1].content }}.")
    write_bot(tmp_path, "Strict", 'provider = "echo"\n', "{{ mood }}")
    (tmp_path / "bots/Strict/hooks.py").write_text(  # fine for the build's sample request, not for "x"
        "def context(request):\n    if request.query[-1].content == 'x':\n        raise RuntimeError('mood is down')\n"
        "    return {'mood': 'calm'}\n")
    server, playground = dev_server(tmp_path, ENV)
    token = {TOKEN_HEADER: playground.access.token}
    async with client(server) as c:
        ok = await c.post("/_polybot/prompt/Echo", headers=token, json=ask("the tide"))
        bad = await c.post("/_polybot/prompt/Strict", headers=token, json=ask("x"))
        nobody = await c.post("/_polybot/prompt/Nobody", headers=token, json=ask("x"))
        untokened = await c.post("/_polybot/prompt/Echo", json=ask("x"))
    assert ok.json() == {"prompt": "Echo heard the tide."}
    assert bad.status_code == 200 and "bots/Strict/hooks.py" in bad.json()["error"] and \
        "mood is down" in bad.json()["error"]
    assert nobody.status_code == 404 and nobody.json() == {"detail": "no bot named 'Nobody'"}
    assert untokened.status_code == 403 and TOKEN_HEADER in untokened.json()["detail"]
    # A prompt that cannot render still lets a chat reply, and its trace says why.
    trace = trace_of(await chat(server, playground, "Strict", ask("x")))
    assert trace["prompt"].startswith("(the prompt does not render: ")


async def test_uploads_are_limited_in_size_and_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import polybot.playground as module

    write_bot(tmp_path, "Echo")
    server, playground = dev_server(tmp_path, ENV)
    token = {TOKEN_HEADER: playground.access.token}
    monkeypatch.setattr(module, "MAX_FILES", 3)
    async with client(server) as c:
        held = [(await c.post("/_polybot/upload", headers=token, json={
            "name": f"n{i}.svg", "content_type": "image/svg+xml",
            "data": base64.b64encode(f"<svg>{i}</svg>".encode()).decode()})).json() for i in range(4)]
        assert list(playground.files) == [h["id"] for h in held[1:]]  # the oldest is dropped
        first = await c.get(held[0]["url"])
        assert first.status_code == 404 and "latest files only" in first.json()["detail"]
        svg = await c.get(held[3]["url"])
        assert svg.content == b"<svg>3</svg>" and svg.headers["content-disposition"] == "attachment"
        assert held[3]["content_type"] == "image/svg+xml" and held[3]["url"].endswith("/n3.svg")
        # Declared too large: refused before the body is read.
        declared = await c.post("/_polybot/upload", headers={**token, "content-type": "application/json",
                                                               "content-length": str(MAX_UPLOAD * 2)},
                                content=b"{}")
        assert declared.status_code == 413
        untyped = (await c.post("/_polybot/upload", headers=token, json={"data": ""})).json()
        assert (untyped["name"], untyped["content_type"]) == ("file", "application/octet-stream")
        assert untyped["url"].endswith("/file")
        assert (await c.post("/_polybot/upload", headers=token, json={"name": "x"})).status_code == 400


async def test_the_last_build_is_reread_when_it_changes_and_names_what_it_lacks(tmp_path: Path) -> None:
    write_bot(tmp_path, "Poet", 'provider = "echo"\n', "Sea.")
    server, playground = dev_server(tmp_path, ENV)
    assert main(["build", "--project", str(tmp_path)]) == 0
    write_bot(tmp_path, "Newer", 'provider = "echo"\n', "Not built yet.")
    playground.workspace.refresh()
    try:
        status, body = await chat_status(server, playground, "Newer", ask("hi", source="build"))
        assert status == 404 and body["detail"] == "Newer is not in the last build (build/manifest.json): " \
                                                   "run `polybot build`"
        assert trace_of(await chat(server, playground, "Poet", ask("hi", source="build")))["prompt"] == "Sea."
        first = playground._build
        (tmp_path / "bots/Poet/system.md.j2").write_text("River.")
        assert main(["build", "--project", str(tmp_path)]) == 0
        assert trace_of(await chat(server, playground, "Poet", ask("hi", source="build")))["prompt"] == "River."
        assert playground._build is not first
        (tmp_path / "build/manifest.json").write_text("{not json")
        status, body = await chat_status(server, playground, "Poet", ask("hi", source="build"))
        assert status == 404 and "build/manifest.json" in body["detail"]
    finally:
        await playground.aclose()
    assert playground._build is None


async def test_a_bots_tests_that_cannot_load_say_why(tmp_path: Path) -> None:
    write_bot(tmp_path, "Echo")
    (tmp_path / "bots/Echo/tests.toml").write_text("[[test]\nname = ")
    server, playground = dev_server(tmp_path, ENV)
    async with client(server) as c:
        result = await c.post("/_polybot/tests/Echo", headers={TOKEN_HEADER: playground.access.token}, json={})
    assert result.status_code == 200
    assert list(result.json()) in (["error"], ["outcomes", "problems"])
    problems = result.json().get("error") or " ".join(result.json()["problems"])
    assert "bots/Echo/tests.toml" in problems


async def test_the_list_names_pending_bots_and_a_picked_one_is_compiled_for_its_details(tmp_path: Path) -> None:
    """At fleet scale the list is names and status (compiled or not); details come on selection."""
    for name in ("Alpha", "Bravo", "Charlie"):
        write_bot(tmp_path, name, 'provider = "echo"\n[poe]\nintroduction_message = "Hi!"\n')
    server, playground = dev_server(tmp_path, ENV)
    (tmp_path / "bots/Bravo/system.md.j2").write_text("Edited.")
    (tmp_path / "bots/Charlie/system.md.j2").write_text("Edited too.")
    workspace = playground.workspace
    workspace.load({tmp_path / "bots/Bravo/system.md.j2", tmp_path / "bots/Charlie/system.md.j2"})
    async with client(server) as c:
        listed = (await c.get("/_polybot/state")).json()["bots"]
        assert [(b["name"], b["status"]) for b in listed] == [("Alpha", "ready"), ("Bravo", "compiling"),
                                                               ("Charlie", "compiling")]
        details = (await c.get("/_polybot/bots/Bravo")).json()
    assert details["introduction"] == "Hi!" and workspace.pending == {"Charlie"}
    assert workspace.runtimes["Bravo"].spec.templates["system.md.j2"] == "Edited."
