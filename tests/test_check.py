"""Every command reports the project's real problems, located, before its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from polybot.cli import main


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "demo"]) == 0
    capsys.readouterr()
    root = tmp_path / "demo"
    # A typo in providers.toml: the Echo bot's provider table is now broken.
    (root / "providers.toml").write_text((root / "providers.toml").read_text().replace('kind = "echo"',
                                                                                       'kind = "ecko"'))
    return root


LOCATED = "providers.toml:19: echo.kind: unknown kind 'ecko' (did you mean 'echo'?)"


def test_chat_reports_the_located_problem_not_a_missing_bot(project: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "Echo", "-m", "hi", "--project", str(project)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(LOCATED)
    assert "no bot named" not in err
    assert err.endswith("error: Echo was not loaded because of the errors above\n")


@pytest.mark.parametrize("args", [["list"], ["list", "providers"], ["keys"], ["new", "Haiku"], ["build"]])
def test_other_commands_report_it_first(args: list[str], project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*args, "--project", str(project)]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith(LOCATED)


def test_chat_names_the_bots_own_errors(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "providers.toml").write_text('[echo]\nkind = "echo"\ndefault_model = "echo"\n')
    (project / "bots/Echo/bot.toml").write_text('provider = "echo"\ntemperature = 5\n')
    assert main(["chat", "Echo", "-m", "hi", "--project", str(project)]) == 1
    assert capsys.readouterr().err == (
        "bots/Echo/bot.toml:2: temperature: must be at most 2, got 5\n"
        "error: Echo has the errors above; fix them, then run polybot chat Echo again\n")


@pytest.mark.parametrize("command", ["serve", "sync", "deploy modal", "dev --port 1 --host 256.0.0.1"])
def test_commands_that_fail_for_their_own_reason_name_the_projects_problems_first(
        command: str, project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command.split(), "--project", str(project)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(LOCATED) and len(lines) == 2 and LOCATED not in lines[1]
