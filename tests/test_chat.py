"""`polybot chat`: the terminal path through the same code a Poe query takes."""

from __future__ import annotations

from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from polybot.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_one_shot_chat_with_the_example_echo_bot(capsys: pytest.CaptureFixture[str],
                                                 snapshot: SnapshotAssertion) -> None:
    assert main(["chat", "Echo", "-m", "hello from the terminal", "--project", str(REPO)]) == 0
    out = capsys.readouterr()
    assert out.out == snapshot
    assert out.err == ""


def test_chat_with_unknown_bot_suggests_a_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "Ecko", "-m", "hi", "--project", str(REPO)]) == 1
    assert capsys.readouterr().err == \
        "error: no bot named 'Ecko' (did you mean 'Echo'?); `polybot list` shows the bots\n"


def test_chat_with_missing_key_exits_nonzero_naming_the_variable(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert main(["chat", "GPT4oMiniBot", "-m", "hi", "--project", str(REPO)]) == 1
    err = capsys.readouterr().err
    assert "OPENAI_API_KEY is not set" in err
    assert "ANTHROPIC_API_KEY is not set" in err  # the [[fallback]] was tried too
    assert "Traceback" not in err


def test_interactive_chat_keeps_history(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    (tmp_path / "bots/Full").mkdir(parents=True)
    (tmp_path / "bots/Full/bot.toml").write_text('provider = "echo"\nparams = { echo = "full" }\n')
    (tmp_path / "bots/Full/system.md.j2").write_text("S")
    lines = iter(["first", "second"])

    def fake_input(prompt: str) -> str:
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("builtins.input", fake_input)
    assert main(["chat", "Full", "--project", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.endswith("[system]\nS\n\n[user]\nfirst\n\n[assistant]\n[system]\nS\n\n[user]\nfirst\n\n[user]\nsecond\n")
