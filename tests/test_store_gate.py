"""Replies the gate answers without a provider call (refused by a limit, or from the cache) land in
the reply store like any other: with their ids, `cached`, and message text only where opted in."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from polybot import store
from polybot.config import LogsSettings
from tests.test_limits import ask_error, make_project, poe, serving


def test_limited_and_cached_replies_are_stored_with_their_ids(tmp_path: Path) -> None:
    root = make_project(tmp_path, "[limits]\nuser_requests_per_minute = 2\n[cache]\nenabled = true\n",
                        {"Exact": "temperature = 0\n"})
    handler = store.install(root, LogsSettings(content=True), dev=False)
    assert handler is not None
    try:
        with serving(root) as (base, _):
            assert asyncio.run(poe(base, "Exact", "same"))[0] == "same"
            assert asyncio.run(poe(base, "Exact", "same"))[0] == "same"  # from the cache
            assert "in the last minute" in asyncio.run(ask_error(base, "Exact", "same"))["text"]
        handler.drain()
    finally:
        handler.stop()
    conn = sqlite3.connect(root / ".polybot" / "logs.db")
    try:
        found = conn.execute("SELECT outcome, cached, attempts, user_id, conversation_id, message_id, prompt, "
                             "response FROM replies ORDER BY id").fetchall()
    finally:
        conn.close()
    assert [row[:3] for row in found] == [("ok", 0, 1), ("ok", 1, 0), ("limited", 0, 0)]
    assert {row[3:6] for row in found} == {("u1", "c1", "m1")}
    assert [row[6] for row in found] == ["same"] * 3
    assert found[1][7] == "same" and "in the last minute" in found[2][7]
