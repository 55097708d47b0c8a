"""What `dev` and `serve` print: fixes, plurals, and one reply-log line per reply."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from polybot.dev import report
from polybot.livebuild import LiveBuild
from polybot.replylog import configure, readable

REPLY = {"event": "reply", "bot": "Haiku", "provider": "openai", "model": "gpt-4o-mini", "attempts": 1,
         "fallback": False, "outcome": "ok", "ttft_ms": 412, "duration_ms": 1830, "input_tokens": 52,
         "output_tokens": 17}


def write(root: Path, prompt: str) -> None:
    (root / "bots/Alpha").mkdir(parents=True, exist_ok=True)
    (root / "bots/Alpha/bot.toml").write_text('provider = "echo"\n')
    (root / "bots/Alpha/system.md.j2").write_text(prompt)


def printed(workspace: LiveBuild) -> str:
    out = io.StringIO()
    report(workspace.refresh(), out)
    return out.getvalue()


def test_undoing_a_broken_edit_says_fixed(tmp_path: Path) -> None:
    write(tmp_path, "Good.")
    workspace = LiveBuild(tmp_path)
    assert printed(workspace) == "polybot dev: reloaded Alpha\n"
    write(tmp_path, "Broken {% if %}")
    assert printed(workspace).endswith("polybot dev: Alpha has errors; still serving its last good version\n")
    write(tmp_path, "Good.")  # the undo: the same bytes as the version being served
    assert printed(workspace) == "polybot dev: fixed Alpha\n"
    assert printed(workspace) == ""


def test_a_fixed_providers_toml_says_fixed(tmp_path: Path) -> None:
    write(tmp_path, "Good.")
    workspace = LiveBuild(tmp_path)
    printed(workspace)
    (tmp_path / "providers.toml").write_text("[echo\n")
    assert printed(workspace).startswith("providers.toml:1: TOML syntax error")
    (tmp_path / "providers.toml").write_text("")
    assert "polybot dev: fixed providers.toml\n" in printed(workspace)


def test_dev_reply_line_is_readable() -> None:
    assert readable(REPLY) == "Haiku  openai/gpt-4o-mini  first token 412 ms  total 1.8 s  52 in / 17 out tokens  ok"
    failed = {**REPLY, "outcome": "error", "ttft_ms": None, "attempts": 3, "fallback": True,
              "input_tokens": None, "output_tokens": None, "finish_reason": "refusal", "reasoning_tokens": 9}
    assert readable(failed) == "Haiku  openai/gpt-4o-mini  no first token  total 1.8 s  error (fallback) after " \
                               "3 attempts [refusal]"
    assert "(9 reasoning, 4 cached)" in readable({**REPLY, "reasoning_tokens": 9, "cached_tokens": 4})


@pytest.mark.parametrize("style", ["readable", "json"])
def test_reply_log_goes_to_stderr_one_line_per_reply(style: str, capsys: pytest.CaptureFixture[str]) -> None:
    logger = logging.getLogger("polybot.reply")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        configure(style)  # type: ignore[arg-type]
        configure(style)  # type: ignore[arg-type]  # idempotent: still one line per reply
        logger.info("%s", json.dumps(REPLY), extra={"reply": REPLY})
        logger.warning("provider %s raised %s", "openai", "TimeoutError")
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    if style == "json":
        assert [json.loads(line) for line in lines] == [
            REPLY, {"event": "log", "level": "warning", "message": "provider openai raised TimeoutError"}]
    else:
        assert lines == ["reply: " + readable(REPLY), "provider openai raised TimeoutError"]
