"""The reply store (docs/logs.md): every reply record in a real SQLite file, written off the event
loop; feedback joined to its reply; retention; a store that is locked, full or corrupt never fails
a reply and says so once."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi_poe as fp
import httpx
import pytest

from polybot import store
from polybot.config import LogsSettings
from polybot.reliability import emit_reply
from polybot.store import REPLY_LOGGER, ReplyStore
from tests.fakes.server import serve_in_thread
from tests.fakes.tool_wire import Call, ToolFake, Turn
from tests.test_runtime import make_bot, request, runtime

KEY = "sk-store-test-secret"
HOOKS = '''
def get_weather(city: str) -> dict:
    """Current weather for a city."""
    return {"city": city, "temp": 21}
'''


@pytest.fixture
def fake() -> Iterator[ToolFake]:
    f = ToolFake()
    with serve_in_thread(f.app) as url:
        f.base_url = url  # type: ignore[attr-defined]
        yield f


def failover_project(root: Path, fake: ToolFake) -> None:
    """Tooly on `main`, failing over to `backup` (both the fake's OpenAI wire), with one tool."""
    url = fake.base_url  # type: ignore[attr-defined]
    root.mkdir(parents=True, exist_ok=True)
    (root / "providers.toml").write_text("".join(
        f'[{name}]\nkind = "openai"\napi_base = "{url}/v1"\napi_key_env = "STORE_KEY"\ndefault_model = "gpt-4o"\n'
        'max_retries = 0\ntimeout = 10\n' for name in ("main", "backup")))
    make_bot(root, "Tooly", 'provider = "main"\ntools = ["get_weather"]\n[[fallback]]\nprovider = "backup"\n',
             "You use tools.", hooks=HOOKS)
    fake.turns.extend([Turn(status=503), Turn(text="Checking.", calls=[Call("c1", "get_weather", {"city": "Oslo"})]),
                       Turn(text="It is 21 C in Oslo.")])


def attach(path: Path, **kwargs: Any) -> ReplyStore:
    handler = ReplyStore(path, linger=0, **kwargs)
    logger = logging.getLogger(REPLY_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def rows(path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM replies ORDER BY id")]
    finally:
        conn.close()


def record(**fields: Any) -> dict[str, Any]:
    return {"event": "reply", "bot": "Echo", "provider": "echo", "model": "echo", "outcome": "ok", "attempts": 1,
            "fallback": False, "duration_ms": 5, "ttft_ms": 2, "input_tokens": 3, "output_tokens": 4, **fields}


async def echo_reply(root: Path, text: str = "hello there") -> str:
    rt = runtime(root, "Echo")
    events = [e async for e in rt.respond(request(("user", text)))]
    return "".join(e.text for e in events if isinstance(e, fp.PartialResponse))


def echo_project(root: Path) -> None:
    make_bot(root, "Echo", 'provider = "echo"\n', "You echo.")


async def test_a_failed_over_reply_with_a_tool_call_is_one_row_with_its_detail(
        tmp_path: Path, fake: ToolFake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORE_KEY", KEY)
    failover_project(tmp_path, fake)
    (tmp_path / "polybot.toml").write_text('[limits.prices."backup/gpt-4o"]\ninput = 2.5\noutput = 10\n')
    from polybot.config import load_settings

    prices = load_settings(tmp_path)[0].limits.prices
    path = tmp_path / ".polybot" / "logs.db"
    rt = runtime(tmp_path, "Tooly")
    handler = attach(path, price=store.pricer(lambda: rt.pool.configs, prices))
    try:
        events = [e async for e in rt.respond(request(("user", "Weather in Oslo?")))]
        await rt.pool.aclose()
        handler.drain()
    finally:
        handler.stop()
    assert not any(isinstance(e, fp.ErrorResponse) for e in events)
    [row] = rows(path)
    assert {k: row[k] for k in ("bot", "provider", "model", "outcome", "finish_reason", "attempts", "fallback",
                                "cached", "tool_rounds", "input_tokens", "output_tokens", "user_id",
                                "conversation_id", "message_id", "prompt", "response")} == {
        "bot": "Tooly", "provider": "backup", "model": "gpt-4o", "outcome": "ok", "finish_reason": "stop",
        "attempts": 3, "fallback": 1, "cached": 0, "tool_rounds": 1, "input_tokens": 20, "output_tokens": 5,
        "user_id": "u42", "conversation_id": "c7", "message_id": "m", "prompt": None, "response": None}
    assert row["cost_usd"] == pytest.approx((20 * 2.5 + 5 * 10) / 1e6)
    assert 0 < row["ttft_ms"] <= row["duration_ms"]
    assert time.time() - 60 < row["ts"] <= time.time()
    calls = json.loads(row["calls"])
    assert [(c["provider"], c["outcome"]) for c in calls] == [("main", "error"), ("backup", "tool_call"),
                                                             ("backup", "ok")]
    assert "503" in calls[0]["error"] or "fake" in calls[0]["error"]
    [tool] = json.loads(row["tool_calls"])
    assert tool["name"] == "get_weather" and tool["ok"] is True and tool["ms"] >= 0
    # Never a key, anywhere in the file (or its write-ahead log).
    for part in path.parent.iterdir():
        assert KEY.encode() not in part.read_bytes()


@pytest.mark.parametrize(("content", "dev", "kept"), [(None, True, True), (None, False, False),
                                                      (True, False, True), (False, True, False)])
async def test_message_text_only_where_the_owner_opts_in(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         content: bool | None, dev: bool, kept: bool) -> None:
    from polybot.replylog import configure

    echo_project(tmp_path)
    configure("json")
    handler = store.install(tmp_path, LogsSettings(content=content), dev=dev)
    assert handler is not None
    try:
        answer = await echo_reply(tmp_path, "a private question")
        handler.drain()
    finally:
        handler.stop()
    [row] = rows(tmp_path / ".polybot" / "logs.db")
    assert (row["prompt"], row["response"]) == (("a private question", answer) if kept else (None, None))
    # The JSON log line on stderr never carries message text.
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["bot"] == "Echo" and "prompt" not in line and "response" not in line
    assert "a private question" not in json.dumps(line)


def test_a_store_turned_off_keeps_nothing(tmp_path: Path) -> None:
    assert store.install(tmp_path, LogsSettings(enabled=False), dev=True) is None
    assert not (tmp_path / ".polybot").exists()


async def test_records_without_a_provider_call_land_too_limited_and_cached(tmp_path: Path) -> None:
    path = tmp_path / "logs.db"
    handler = attach(path)
    try:
        emit_reply(record(outcome="limited", attempts=0, ttft_ms=None, input_tokens=None, output_tokens=None,
                          user_id="u1", conversation_id="c1", message_id="m1"))
        emit_reply(record(cached=True, message_id="m2"))
        handler.drain()
    finally:
        handler.stop()
    assert [(r["outcome"], r["cached"], r["message_id"]) for r in rows(path)] == [("limited", 0, "m1"),
                                                                                  ("ok", 1, "m2")]


async def test_poe_feedback_and_reactions_join_their_reply(tmp_path: Path) -> None:
    from polybot.app import BotServer
    from polybot.logview import Filters, load, open_store

    echo_project(tmp_path)
    server = BotServer(environ={})
    server.put(runtime(tmp_path, "Echo"))
    handler = store.install(tmp_path, LogsSettings(), dev=False)
    assert handler is not None
    base = {"version": "1.2", "user_id": "u1", "conversation_id": "c1", "message_id": "m-1"}
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app), base_url="http://127.0.0.1:8080",
                                     headers={"Authorization": "Bearer x"}) as client:
            query = {**base, "type": "query", "query": [{"role": "user", "content": "hi"}]}
            assert (await client.post("/Echo", json=query)).status_code == 200
            for body in ({"type": "report_feedback", "feedback_type": "like"},
                         {"type": "report_reaction", "reaction": "heart"}):
                assert (await client.post("/Echo", json={**base, **body})).status_code == 200
        handler.drain()
    finally:
        handler.stop()
    conn = open_store(tmp_path, LogsSettings())
    [reply] = load(conn, Filters(), None)
    conn.close()
    assert reply["message_id"] == "m-1"
    assert [(f["kind"], f["value"]) for f in reply["feedback"]] == [("feedback", "like"), ("reaction", "heart")]


def test_retention_keeps_the_newest_rows_and_none_too_old(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "PRUNE_ROWS", 1)  # prune after every batch
    path = tmp_path / "logs.db"
    now = time.time()
    handler = attach(path, max_rows=3, max_days=1)
    try:
        emit_reply(record(ts=now - 2 * 86400, message_id="old"))
        for i in range(5):
            emit_reply(record(ts=now, message_id=f"new{i}"))
            handler.drain()
    finally:
        handler.stop()
    assert [r["message_id"] for r in rows(path)] == ["new2", "new3", "new4"]


def test_a_locked_store_never_holds_a_reply_says_so_once_and_catches_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "polybot")
    path = tmp_path / "logs.db"
    handler = attach(path, busy_timeout=0.05)
    try:
        emit_reply(record(message_id="before"))
        handler.drain()
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process writing, or stuck
        started = time.perf_counter()
        emit_reply(record(message_id="while1"))
        emit_reply(record(message_id="while2"))
        assert time.perf_counter() - started < 0.05  # queued, never waited on
        handler.drain()
        emit_reply(record(message_id="while3"))
        handler.drain()
        other.execute("ROLLBACK")
        other.close()
        emit_reply(record(message_id="after"))
        handler.drain()
    finally:
        handler.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "locked" in warnings[0] and str(path) in warnings[0], warnings
    assert [r["message_id"] for r in rows(path)] == ["before", "while1", "while2", "while3", "after"]


async def test_a_corrupt_store_says_so_once_and_replies_go_on(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "polybot")
    echo_project(tmp_path)
    path = tmp_path / ".polybot" / "logs.db"
    path.parent.mkdir()
    path.write_bytes(b"this is not a database, it was overwritten " * 200)
    handler = store.install(tmp_path, LogsSettings(), dev=True)
    assert handler is not None
    try:
        for text in ("one", "two"):
            assert await echo_reply(tmp_path, text)
            handler.drain()
    finally:
        handler.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "not a usable SQLite database" in warnings[0] and "move the file aside" in \
        warnings[0], warnings


def test_a_full_store_says_so_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "polybot")
    real = store.connect

    def full(path: Path, busy_timeout: float = 5.0) -> sqlite3.Connection:
        conn = real(path, busy_timeout)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")  # no room for one more page: a full disk
        return conn

    monkeypatch.setattr(store, "connect", full)
    path = tmp_path / "logs.db"
    handler = attach(path)
    try:
        for i in range(3):
            emit_reply(record(message_id=f"m{i}", calls=[{"error": "x" * 5000}]))  # each row needs a new page
            handler.drain()
    finally:
        handler.stop()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "full" in warnings[0], warnings


def test_several_writers_share_one_file(tmp_path: Path) -> None:
    """`serve --workers N`: one store per process on the same file (WAL, busy timeout)."""
    path = tmp_path / "logs.db"
    writers = [ReplyStore(path, linger=0, batch=7) for _ in range(3)]

    def write(handler: ReplyStore, n: int) -> None:
        for i in range(100):
            handler.emit(logging.makeLogRecord({"reply": record(message_id=f"w{n}-{i}")}))

    threads = [threading.Thread(target=write, args=(w, n)) for n, w in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in writers:
        w.stop()
    assert len({r["message_id"] for r in rows(path)}) == 300


def test_init_ignores_the_store(tmp_path: Path) -> None:
    from polybot.cli import main

    assert main(["init", str(tmp_path / "mine")]) == 0
    assert ".polybot/" in (tmp_path / "mine" / ".gitignore").read_text().splitlines()


def test_the_store_outlives_uvicorns_logging_config(tmp_path: Path) -> None:
    """uvicorn's dictConfig flushes and closes every handler under logging's lock: the store must
    neither deadlock there nor stop writing (found by bench/store_bench.py: serve hung at start-up)."""
    import logging.config

    from uvicorn.config import LOGGING_CONFIG

    path = tmp_path / "logs.db"
    handler = attach(path, price=lambda r: None)  # a writer busy importing at the moment dictConfig runs
    done = threading.Event()

    def configure() -> None:
        logging.config.dictConfig(LOGGING_CONFIG)
        done.set()

    threading.Thread(target=configure, daemon=True).start()
    assert done.wait(5), "dictConfig deadlocked on the store"
    try:
        emit_reply(record(message_id="after-config"))
        handler.drain()
    finally:
        handler.stop()
    assert [r["message_id"] for r in rows(path)] == ["after-config"]
