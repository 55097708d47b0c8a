"""One keys story: every command reads the project's .env the same way, and the environment wins."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from polybot.cli import main
from polybot.env import load_env


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in [v for v in os.environ if v.endswith("_API_KEY") or v.startswith("POE_ACCESS_KEY")]:
        monkeypatch.delenv(var)
    (tmp_path / "bots/Alpha").mkdir(parents=True)
    (tmp_path / "bots/Alpha/bot.toml").write_text('provider = "openai"\n\n[[fallback]]\nprovider = "echo"\n')
    (tmp_path / "bots/Alpha/system.md.j2").write_text("You are Alpha.")
    return tmp_path


def test_keys_lists_every_variable_and_where_it_is_set_never_the_value(
        project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (project / ".env").write_text("OPENAI_API_KEY=sk-from-dotenv-SECRET\n")
    assert main(["keys", "--project", str(project)]) == 0
    out = capsys.readouterr().out
    assert "sk-from-dotenv-SECRET" not in out
    lines = out.splitlines()
    assert lines[0].split() == ["VARIABLE", "STATUS", "USED", "BY"]
    assert lines[1].split() == ["OPENAI_API_KEY", "set", "in", ".env", "Alpha", "(provider", "openai)"]
    assert lines[2].split()[:2] == ["POE_ACCESS_KEY_ALPHA", "missing"]
    assert "polybot keys set POE_ACCESS_KEY_ALPHA" in out


def test_the_environment_wins_over_dotenv(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / ".env").write_text("OPENAI_API_KEY=from-file\nPOE_ACCESS_KEY_ALPHA=file-access\n")
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    load_env(project)
    assert os.environ["OPENAI_API_KEY"] == "from-env" and os.environ["POE_ACCESS_KEY_ALPHA"] == "file-access"
    # Edited .env: values that came from it follow it; the environment's stay.
    (project / ".env").write_text("OPENAI_API_KEY=edited\n")
    assert load_env(project) == ["POE_ACCESS_KEY_ALPHA"]
    assert os.environ["OPENAI_API_KEY"] == "from-env" and "POE_ACCESS_KEY_ALPHA" not in os.environ


@pytest.mark.parametrize("command", ["list", "sync", "serve", "keys"])
def test_every_command_sees_a_key_in_dotenv(command: str, project: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["build", "--project", str(project)]) == 0
    capsys.readouterr()
    (project / ".env").write_text("POE_ACCESS_KEY_ALPHA=alpha-access-key\nOPENAI_API_KEY=sk-x\n")
    # Stop serve before it listens and sync before it connects: what matters is what they read.
    monkeypatch.setattr("polybot.commands.serve.bind", lambda host, port: (_ for _ in ()).throw(SystemExit(0)))
    monkeypatch.setattr("polybot.commands.sync.sync_one", lambda spec, providers, base: print(
        f"{spec.access_key_env}={'set' if os.environ.get(spec.access_key_env) else 'unset'}"))
    try:
        main([command, "--project", str(project)])
    except SystemExit:
        pass
    captured = capsys.readouterr()
    assert "is not set" not in captured.err and "missing" not in captured.out
    assert "alpha-access-key" not in captured.out + captured.err
    if command == "sync":
        assert captured.out == "POE_ACCESS_KEY_ALPHA=set\n"


def test_keys_set_prompts_without_echo_and_stores_mode_0600(
        project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = []
    monkeypatch.setattr("sys.stdin.isatty", lambda: True, raising=False)
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or "sk-typed 'quoted' #1")
    assert main(["keys", "set", "OPENAI_API_KEY", "--project", str(project)]) == 0
    assert prompts == ["Enter a value for OPENAI_API_KEY: "]
    path = project / ".env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    out = capsys.readouterr().out
    assert out == "stored OPENAI_API_KEY in .env\n" and "sk-typed" not in out
    from dotenv import dotenv_values

    assert dotenv_values(path) == {"OPENAI_API_KEY": "sk-typed 'quoted' #1"}
    # Setting it again replaces the line; other lines stay.
    path.write_text(path.read_text() + "OTHER=1\n")
    monkeypatch.setattr("getpass.getpass", lambda prompt: "sk-second")
    assert main(["keys", "set", "OPENAI_API_KEY", "--project", str(project)]) == 0
    assert path.read_text() == "OPENAI_API_KEY=sk-second\nOTHER=1\n"


def test_keys_set_reads_a_piped_value_and_refuses_bad_names(
        project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("piped-value\n"))
    assert main(["keys", "set", "POE_ACCESS_KEY_ALPHA", "--project", str(project)]) == 0
    assert (project / ".env").read_text() == "POE_ACCESS_KEY_ALPHA=piped-value\n"
    assert main(["keys", "set", "1BAD", "--project", str(project)]) == 1
    assert "'1BAD' is not a valid variable name" in capsys.readouterr().err


def test_a_missing_provider_key_says_how_to_set_it(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "bots/Alpha/bot.toml").write_text('provider = "openai"\n')
    assert main(["chat", "Alpha", "-m", "hi", "--project", str(project)]) == 1
    err = capsys.readouterr().err
    assert "OPENAI_API_KEY is not set" in err and "Traceback" not in err
