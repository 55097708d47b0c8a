"""`polybot logs` and `polybot logs stats` over a real store file with fixed rows (docs/logs.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from polybot.cli import main
from polybot.store import ReplyStore

T0 = 1735732800.0  # 2025-01-01 12:00:00 UTC

ROWS = [
    {"event": "reply", "ts": T0, "bot": "Echo", "provider": "echo", "model": "echo", "outcome": "ok",
     "attempts": 1, "fallback": False, "ttft_ms": 3, "duration_ms": 5, "input_tokens": 12, "output_tokens": 4,
     "finish_reason": "stop", "cost_usd": 0, "user_id": "u1", "conversation_id": "c1", "message_id": "m1",
     "prompt": "hello", "response": "hello\nback"},
    {"event": "feedback", "ts": T0 + 10, "bot": "Echo", "value": "like", "message_id": "m1"},
    {"event": "reply", "ts": T0 + 60, "bot": "Tooly", "provider": "backup", "model": "gpt-4o", "outcome": "ok",
     "attempts": 3, "fallback": True, "ttft_ms": 420, "duration_ms": 1830, "input_tokens": 20, "output_tokens": 5,
     "finish_reason": "stop", "cost_usd": 0.0001, "tool_rounds": 1, "user_id": "u2", "conversation_id": "c2",
     "message_id": "m2",
     "calls": [{"provider": "main", "model": "gpt-4o", "start_ms": 0, "ms": 30, "outcome": "error",
                "error": "main is unavailable (503)"},
               {"provider": "backup", "model": "gpt-4o", "start_ms": 30, "ms": 400, "outcome": "tool_call"},
               {"provider": "backup", "model": "gpt-4o", "start_ms": 480, "ms": 1350, "outcome": "ok"}],
     "tool_calls": [{"name": "get_weather", "ok": True, "start_ms": 430, "ms": 50}]},
    {"event": "feedback", "ts": T0 + 70, "bot": "Tooly", "value": "dislike", "message_id": "m2"},
    {"event": "reaction", "ts": T0 + 71, "bot": "Tooly", "value": "heart", "message_id": "m2"},
    {"event": "reply", "ts": T0 + 120, "bot": "Tooly", "provider": "main", "model": "gpt-4o", "outcome": "error",
     "attempts": 2, "fallback": False, "ttft_ms": None, "duration_ms": 2500, "user_id": "u2",
     "conversation_id": "c2", "message_id": "m3"},
    {"event": "reply", "ts": T0 + 180, "bot": "Echo", "provider": "echo", "model": "echo", "outcome": "ok",
     "attempts": 0, "cached": True, "ttft_ms": 1, "duration_ms": 1, "input_tokens": 12, "output_tokens": 4,
     "cost_usd": 0, "conversation_id": "c1", "message_id": "m4"},
]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    import logging

    (tmp_path / "bots").mkdir()
    handler = ReplyStore(tmp_path / ".polybot" / "logs.db", content=True, linger=0, max_days=1e6)
    for row in ROWS:
        handler.emit(logging.makeLogRecord({"reply": row}))
    handler.stop()
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], project: Path, *args: str) -> tuple[int, str, str]:
    code = main(["logs", *args, "--project", str(project)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_logs_lists_the_newest_replies_oldest_first(project: Path, capsys: pytest.CaptureFixture[str],
                                                     snapshot: SnapshotAssertion) -> None:
    code, out, err = run(capsys, project)
    assert (code, err) == (0, "")
    assert out == snapshot


def test_logs_stats_per_bot(project: Path, capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    code, out, err = run(capsys, project, "stats")
    assert (code, err) == (0, "")
    assert out == snapshot


def test_logs_filters(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def ids(*args: str) -> list[str]:
        code, out, _ = run(capsys, project, "--json", *args)
        assert code == 0
        return [r["message_id"] for r in json.loads(out)]

    assert ids() == ["m1", "m2", "m3", "m4"]
    assert ids("-n", "2") == ["m3", "m4"]
    assert ids("--bot", "Tooly") == ["m2", "m3"]
    assert ids("--outcome", "error") == ["m3"]
    assert ids("--conversation", "c1") == ["m1", "m4"]
    assert ids("--since", "2025-01-01T12:01:30") == ["m3", "m4"]
    assert ids("--since", "1h") == []  # long ago
    [row] = json.loads(run(capsys, project, "--json", "--outcome", "error")[1])
    assert row["time"] == "2025-01-01T12:02:00+00:00" and row["feedback"] == [] and row["prompt"] is None


def test_logs_stats_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, project, "stats", "--json", "--bot", "Tooly")
    assert code == 0
    assert json.loads(out) == {"Tooly": {
        "replies": 2, "errors": 1, "fallbacks": 1, "cached": 0, "first_token_p50_ms": 420,
        "first_token_p95_ms": 420, "total_p50_ms": 1830, "total_p95_ms": 2500, "input_tokens": 20,
        "output_tokens": 5, "cost_usd": 0.0001, "likes": 0, "dislikes": 1}}


def test_no_store_says_so_and_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bots").mkdir()
    code, out, err = run(capsys, tmp_path)
    assert code == 1 and out == ""
    assert err == ("error: no reply store at .polybot/logs.db yet: `polybot dev` and `polybot serve` keep one row "
                   "per reply there (see [logs] in polybot.toml, docs/logs.md)\n")


@pytest.mark.parametrize("since", ["yesterday", "5x", "-1h"])
def test_a_bad_since_is_one_line(project: Path, capsys: pytest.CaptureFixture[str], since: str) -> None:
    code, out, err = run(capsys, project, f"--since={since}")
    assert code == 1 and out == ""
    assert err == (f"error: --since: expected a time ago like 30m, 1h, 7d or a UTC date like 2025-01-31, "
                   f"but received {since!r}\n")


def test_an_unreadable_store_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bots").mkdir()
    (tmp_path / ".polybot").mkdir()
    (tmp_path / ".polybot" / "logs.db").write_bytes(b"garbage " * 500)
    code, _, err = run(capsys, tmp_path)
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: .polybot/logs.db: cannot read the reply store (file is not a database)")
