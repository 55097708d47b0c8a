"""`polybot init`, `new`, `providers add` and `list`, as a user types them."""

from __future__ import annotations

from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from polybot.cli import main


def cli(*args: str, project: Path) -> int:
    return main([*args, "--project", str(project)])


@pytest.fixture
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "demo"]) == 0
    capsys.readouterr()
    return tmp_path / "demo"


def test_init_output(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                     snapshot: SnapshotAssertion) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "demo"]) == 0
    assert capsys.readouterr().out == snapshot


def test_init_makes_a_project_that_builds_and_tests_itself(project: Path, pytester: pytest.Pytester) -> None:
    assert cli("build", project=project) == 0
    # In-process; tests/e2e/test_readme.py runs the same tests as a user does, in a fresh venv.
    done = pytester.runpytest_inprocess(str(project / "tests"), "-p", "no:cacheprovider", "-p", "no:xdist",
                                        "-o", "asyncio_default_fixture_loop_scope=function")
    done.assert_outcomes(passed=3)


def test_init_refuses_an_existing_project(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(project)]) == 1
    assert "providers.toml already exists: polybot init makes a new project" in capsys.readouterr().err


def test_new_bot_builds_and_keeps_the_system_message_literal(project: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    message = 'Say "{{ hi }}" and {% raw %}\nsecond line'
    assert cli("new", "Haiku", "--provider", "anthropic", "--temperature", "0.9", "--max-tokens", "300",
               "--description", 'Writes "haiku"', "--system-message", message, project=project) == 0
    assert "Poe access key variable: POE_ACCESS_KEY_HAIKU" in capsys.readouterr().out
    assert cli("build", project=project) == 0
    assert (project / "build/prompts/Haiku.md").read_text() == message + "\n"
    toml = (project / "bots/Haiku/bot.toml").read_text()
    assert 'description = "Writes \\"haiku\\""' in toml and "temperature = 0.9" in toml


@pytest.mark.parametrize("args,message", [
    (["new", "X1"], "invalid bot name 'X1': Poe bot names are 4-20 characters"),
    (["new", "Haiku", "--provider", "opnai"], "unknown provider 'opnai' (did you mean 'openai'?)"),
    (["new", "Haiku", "--temperature", "3"], "--temperature must be between 0 and 2, got 3"),
    (["new", "Haiku", "--max-tokens", "0"], "--max-tokens must be greater than 0, got 0"),
    (["new", "Echo"], "bots/Echo/ already exists; pass --force"),
    (["new", "echo"], "bots/Echo/ already exists and Poe names are case-insensitive"),
])
def test_new_rejects_bad_input(project: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                               message: str) -> None:
    assert cli(*args, project=project) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_new_force_replaces(project: Path) -> None:
    assert cli("new", "Echo", "--force", "--system-message", "Replaced.", project=project) == 0
    assert (project / "bots/Echo/system.md.j2").read_text() == "Replaced.\n"


def add_args(name: str, *extra: str) -> list[str]:
    return ["providers", "add", name, "--kind", "openai", "--api-base", "http://127.0.0.1:9/v1",
            "--api-key-env", "LOCAL_KEY", "--default-model", "local-model", *extra]


def test_providers_add_keeps_comments_and_is_usable(project: Path) -> None:
    before = (project / "providers.toml").read_text()
    assert cli(*add_args("local", "--header", "X-Team: bots", "--models", "local-model", "other"),
               project=project) == 0
    after = (project / "providers.toml").read_text()
    assert after.startswith(before)  # every comment and table kept
    assert '[local]\nkind = "openai"' in after and 'models = ["local-model", "other"]' in after
    assert cli("new", "Local", "--provider", "local", project=project) == 0
    assert cli("build", project=project) == 0


def test_providers_add_refuses_to_replace_without_force(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(*add_args("local"), project=project) == 0
    assert cli(*add_args("local"), project=project) == 1
    assert "providers.toml already defines [local]; pass --force to replace it" in capsys.readouterr().err
    assert cli(*add_args("local", "--force"), project=project) == 0
    assert (project / "providers.toml").read_text().count("[local]") == 1


@pytest.mark.parametrize("extra,message", [
    (["--header", "no colon"], "--header 'no colon': expected \"Name: value\""),
    (["--kind", "opnai"], "kind: unknown kind 'opnai' (did you mean 'openai'?)"),
])
def test_providers_add_rejects_bad_input(project: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                         message: str) -> None:
    before = (project / "providers.toml").read_text()
    assert cli(*add_args("local", *extra), project=project) == 1
    assert message in capsys.readouterr().err
    assert (project / "providers.toml").read_text() == before


def test_list_shows_key_status_never_values(project: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch, snapshot: SnapshotAssertion) -> None:
    for var in [v for v in __import__("os").environ if v.endswith("_API_KEY") or v.startswith("POE_ACCESS_KEY")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-VALUE-must-not-show")
    cli("new", "GptBot", "--provider", "openai", project=project)
    cli("new", "Claude", "--provider", "anthropic", "--model", "claude-x", project=project)
    (project / "bots/Broken").mkdir()
    (project / "bots/Broken/bot.toml").write_text("provider = ")
    capsys.readouterr()
    assert cli("list", project=project) == 0
    out = capsys.readouterr().out
    assert "sk-ant-VALUE-must-not-show" not in out
    assert out == snapshot
    assert cli("list", "providers", project=project) == 0
    out = capsys.readouterr().out
    assert "sk-ant-VALUE-must-not-show" not in out
    assert out == snapshot
