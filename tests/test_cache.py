"""`[cache]`: a deterministic request (temperature 0, no tools) is answered from the cache the second
time, to Poe as text and to /v1 as a normal completion, logged with `"cached": true`; in-process and
in a real redis-server (docs/limits.md)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.redisproc import redis_server
from tests.test_limits import make_project, poe, serving, v1

CACHE = "[cache]\nenabled = true\nttl = 60\n"


def replies(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.reply for r in caplog.records if hasattr(r, "reply")]


def test_a_deterministic_request_is_answered_from_the_cache(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_project(tmp_path, CACHE, {"Exact": "temperature = 0\n", "Warm": "temperature = 0.7\n"})
    caplog.set_level(logging.INFO, logger="polybot.reply")
    with serving(root) as (base, _):
        assert asyncio.run(poe(base, "Exact", "same question"))[0] == "same question"
        assert asyncio.run(poe(base, "Exact", "same question"))[0] == "same question"
        assert asyncio.run(poe(base, "Exact", "another question"))[0] == "another question"
        asyncio.run(poe(base, "Warm", "same question"))
        asyncio.run(poe(base, "Warm", "same question"))
        first, second = v1(base, "Exact", "over v1"), v1(base, "Exact", "over v1")
    logged = replies(caplog)
    assert [(r["bot"], r.get("cached", False), r["attempts"]) for r in logged] == [
        ("Exact", False, 1), ("Exact", True, 0), ("Exact", False, 1),
        ("Warm", False, 1), ("Warm", False, 1),
        ("Exact", False, 1), ("Exact", True, 0)]
    assert logged[1]["outcome"] == "ok" and logged[1]["provider"] == "echo"
    assert first.status_code == second.status_code == 200
    body = second.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == "over v1"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] == 0  # no provider tokens were used for it


def test_the_cache_lives_in_redis_when_configured(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make_project(tmp_path / "p", CACHE, {"Exact": "temperature = 0\n"})
    caplog.set_level(logging.INFO, logger="polybot.reply")
    with redis_server(tmp_path) as redis:
        env = {"POLYBOT_REDIS_URL": redis.url}
        with serving(root, env) as (one, _), serving(root, env) as (two, _):
            assert v1(one, "Exact", "shared").json()["choices"][0]["message"]["content"] == "shared"
            assert v1(two, "Exact", "shared").json()["choices"][0]["message"]["content"] == "shared"
            redis.kill()
            assert v1(two, "Exact", "shared").status_code == 200  # a Redis outage is a miss, not a failure
    assert [r.get("cached", False) for r in replies(caplog)] == [False, True, False]
