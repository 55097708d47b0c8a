"""polybot writes Poe's SSE frames itself: byte for byte what fastapi_poe's server sends."""

from __future__ import annotations

from pathlib import Path

import fastapi_poe as fp
import httpx
import pytest

from polybot.app import BotServer
from polybot.bot import PolyPoeBot
from polybot.livebuild import LiveBuild

RICH = '''
import fastapi_poe as fp
import polybot

async def respond(request, bot):
    yield "Plain, then \\"quoted\\" text\\nwith a newline\\r\\n, a tab\\t and unicode: é ✓ 🚀 \\u2028."
    yield fp.PartialResponse(text="suggest me", is_suggested_reply=True)
    yield fp.PartialResponse(text="all new text", is_replace_response=True)
    yield polybot.File("https://cdn.example/cat.png", "image/png", "cat.png", inline_ref="c1")
    yield fp.PartialResponse(text="", data={"choices": [{"index": 0, "delta": {"content": "x"}}]})
    yield fp.PartialResponse(text="")
    yield "after"
    yield fp.ErrorResponse(text="it broke", allow_retry=False, error_type="user_message_too_long")
'''

BODY = {"version": "1.2", "type": "query", "query": [{"role": "user", "content": "go"}],
        "user_id": "u", "conversation_id": "c", "message_id": "m"}


def served(root: Path, hooks: str, environ: dict[str, str] | None = None) -> BotServer:
    for name in ("Rich", "Other"):
        folder = root / "bots" / name
        folder.mkdir(parents=True)
        (folder / "bot.toml").write_text('provider = "echo"\n[poe]\nsuggested_replies = true\n'
                                         f'access_key_env = "{name.upper()}_KEY"\n')
        (folder / "system.md.j2").write_text("p")
        (folder / "hooks.py").write_text(hooks)
    server = BotServer(environ=environ or {})
    LiveBuild(root, on_put=server.put).refresh()
    return server


async def post(app: object, path: str, body: object, key: str | None = "x") -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
        return await client.post(path, json=body, headers=headers)


def fastapi_poe_app(server: BotServer, name: str) -> object:
    """fastapi_poe's own server for the same runtime: the reference bytes."""
    bot = server.bots[name]
    return fp.make_app(PolyPoeBot(bot.runtime, bot.access_key), allow_without_key=True)


async def test_a_rich_reply_has_fastapi_poes_exact_bytes_and_headers(tmp_path: Path) -> None:
    server = served(tmp_path, RICH)
    ours = await post(server.app, "/Rich", BODY)
    theirs = await post(fastapi_poe_app(server, "Rich"), "/Rich", BODY)
    assert ours.status_code == theirs.status_code == 200
    assert ours.content == theirs.content
    assert b"event: replace_response" in ours.content and b"event: file" in ours.content
    assert b"event: json" in ours.content and ours.content.endswith(b"event: done\r\ndata: {}\r\n\r\n")
    assert ours.content.startswith(b"event: meta\r\n")
    assert [(k, v) for k, v in ours.headers.items() if k != "content-length"] == \
        [(k, v) for k, v in theirs.headers.items() if k != "content-length"]


async def test_an_exception_escaping_the_bot_ends_as_fastapi_poe_ends_it(tmp_path: Path) -> None:
    server = served(tmp_path, "async def respond(request, bot):\n    yield 'a'\n")

    async def broken(request: object, context: object) -> object:
        yield fp.PartialResponse(text="partial")
        raise RuntimeError("boom")

    for app in (server.app, fastapi_poe_app(server, "Rich")):
        bot = server.bots["Rich"] if app is server.app else None
        if bot is not None:
            bot.get_response_with_context = broken  # type: ignore[method-assign, assignment]
    ours = await post(server.app, "/Rich", BODY)
    assert ours.content.startswith(b'event: text\r\ndata: {"text": "partial"}\r\n\r\nevent: error\r\n')
    assert b'"allow_retry": false' in ours.content and ours.content.endswith(b"event: done\r\ndata: {}\r\n\r\n")


async def test_keys_settings_and_bad_bodies_still_answer_as_fastapi_poe(tmp_path: Path) -> None:
    server = served(tmp_path, "async def respond(request, bot):\n    yield 'a'\n",
                    {"RICH_KEY": "r" * 32, "OTHER_KEY": "o" * 32})
    reference = fastapi_poe_app(server, "Rich")
    for key in ("wrong", "o" * 32, None, "r" * 31):
        ours, theirs = await post(server.app, "/Rich", BODY, key), await post(reference, "/Rich", BODY, key)
        assert ours.status_code in (401, 403) and ours.status_code == theirs.status_code, key
    ok = await post(server.app, "/Rich", BODY, "r" * 32)
    assert ok.status_code == 200 and b'event: text\r\ndata: {"text": "a"}' in ok.content
    settings = await post(server.app, "/Rich", {"version": "1.2", "type": "settings"}, "r" * 32)
    assert settings.status_code == 200 and "server_bot_dependencies" in settings.json()
    bad = {**BODY, "query": "not a list"}
    ours = await post(server.app, "/Rich", bad, "r" * 32)
    assert ours.status_code == 400  # the guard's one-line refusal (fastapi_poe itself answers 500)


async def test_a_client_that_goes_away_cancels_the_reply(tmp_path: Path) -> None:
    import asyncio
    import json
    import sys

    hooks = ("import asyncio\nCANCELLED = []\n\nasync def respond(request, bot):\n    yield 'first'\n"
             "    try:\n        await asyncio.sleep(30)\n    except asyncio.CancelledError:\n"
             "        CANCELLED.append(True)\n        raise\n    yield 'never'\n")
    server = served(tmp_path, hooks)
    gone = asyncio.Event()
    sent: list[dict[str, object]] = []
    calls = 0

    async def receive() -> dict[str, object]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": json.dumps(BODY).encode(), "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)
        if b"first" in message.get("body", b""):  # type: ignore[operator]
            gone.set()

    scope = {"type": "http", "method": "POST", "path": "/Rich", "raw_path": b"/Rich", "query_string": b"",
             "headers": [(b"authorization", b"Bearer x"), (b"content-type", b"application/json")],
             "http_version": "1.1", "scheme": "http", "server": ("t", 80), "client": ("c", 1), "root_path": ""}
    await asyncio.wait_for(server.app(scope, receive, send), 5)  # type: ignore[arg-type]
    assert sys.modules["polybot_hooks_Rich"].CANCELLED == [True]
    assert not any(b"never" in m.get("body", b"") for m in sent)  # type: ignore[operator]


async def test_a_query_is_parsed_once_and_answered_by_the_fast_path(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard validates the body and hands the query on; PoeStream writes it without parsing again."""
    from polybot import poe_sse

    server = served(tmp_path, "async def respond(request, bot):\n    yield 'a'\n", {"RICH_KEY": "r" * 32})
    answered: list[object] = []
    frames = poe_sse.frames

    def spy(bot: object, request: object, context: object = None) -> object:
        answered.append(request)
        return frames(bot, request, context)  # type: ignore[arg-type]

    validations = 0
    validate = fp.QueryRequest.model_validate

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal validations
        validations += 1
        return validate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(poe_sse, "frames", spy)
    monkeypatch.setattr(fp.QueryRequest, "model_validate", counted)
    ok = await post(server.app, "/Rich", BODY, "r" * 32)
    assert ok.status_code == 200 and b'data: {"text": "a"}' in ok.content
    assert validations == 1
    assert [r.access_key for r in answered] == ["r" * 32]  # type: ignore[attr-defined]
