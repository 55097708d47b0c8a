"""The command line a newcomer meets: where the project is, arguments, help, did-you-mean."""

from __future__ import annotations

import io
import re
import socket
from pathlib import Path

import pytest

from polybot.cli import _parser, main

REPO = Path(__file__).resolve().parents[1]


def echo_project(root: Path) -> Path:
    (root / "bots/Alpha").mkdir(parents=True)
    (root / "bots/Alpha/bot.toml").write_text('provider = "echo"\n')
    (root / "bots/Alpha/system.md.j2").write_text("You are Alpha.")
    return root


# --- finding 2: where the project is ----------------------------------------------------------


@pytest.mark.parametrize("args", [["build"], ["serve"], ["sync"], ["list"], ["keys"], ["chat", "Echo", "-m", "hi"],
                                  ["dev", "--host", "256.0.0.1"], ["new", "Haiku"]], ids=" ".join)
def test_outside_a_project_every_command_refuses_in_one_line(
        args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POLYBOT_PROJECT", raising=False)
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err == ("error: not inside a polybot project (no bots/ or providers.toml here or in any parent "
                   "folder): cd into one, pass --project DIR, or make one with `polybot init`\n")
    assert list(tmp_path.iterdir()) == []  # no bots/, no build/


@pytest.mark.parametrize("args", [["list", "--project", "/nonexistent"], ["--project", "/nonexistent", "sync"],
                                  ["serve", "--project", "/nonexistent"]])
def test_a_project_that_does_not_exist_fails(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 1
    assert capsys.readouterr().err.startswith("error: --project /nonexistent: no such folder")


def test_a_folder_that_is_not_a_project_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--project", str(tmp_path)]) == 1
    assert "not a polybot project (it has neither bots/ nor providers.toml)" in capsys.readouterr().err
    assert not (tmp_path / "build").exists()


def test_commands_find_the_project_from_a_bot_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = echo_project(tmp_path)
    monkeypatch.chdir(root / "bots/Alpha")
    assert main(["build"]) == 0
    assert capsys.readouterr().out == "built 1 bot into build/ (1 rendered, 0 unchanged)\n"
    assert (root / "build/manifest.json").is_file() and not (root / "bots/Alpha/build").exists()


@pytest.mark.parametrize("before", [True, False])
def test_project_option_before_or_after_the_command(before: bool, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root = echo_project(tmp_path)
    args = ["--project", str(root), "list"] if before else ["list", "--project", str(root)]
    assert main(args) == 0
    assert "Alpha" in capsys.readouterr().out


# --- finding 7: arguments -------------------------------------------------------------------------


@pytest.mark.parametrize("args,message", [
    (["dev", "--port", "99999"], "polybot dev: error: argument --port: must be between 1 and 65535, got 99999"),
    (["dev", "--port", "http"], "argument --port: expected a port number (1-65535) but received 'http'"),
    (["serve", "--workers", "0"], "polybot serve: error: argument --workers: must be at least 1, got 0"),
    (["buidl"], "invalid choice: 'buidl'"),
    (["dev", "--prot", "8081"], "polybot dev: error: unrecognized arguments: --prot 8081 (did you mean '--port'?)"),
    (["chat", "Echo", "--mesage", "hi"], "unrecognized arguments: --mesage hi (did you mean '--message'?)"),
])
def test_bad_arguments_are_one_clear_line(args: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if args[0] in ("dev", "chat", "serve"):
        assert err.startswith(f"usage: polybot {args[0]} ")  # that command's usage, not the top level's


def test_a_mistyped_command_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["buidl"])
    assert "(did you mean 'build'?)" in capsys.readouterr().err


def test_every_command_has_help_with_defaults_and_an_example() -> None:
    parser = _parser()
    leaves = []
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for name, sub in action.choices.items():  # type: ignore[union-attr]
            nested = [a for a in sub._actions if isinstance(a, type(action))]
            leaves += [(f"{name} {n}", s) for a in nested for n, s in a.choices.items()] if nested else [(name, sub)]
    assert len(leaves) == 13  # init new providers-add list build dev serve chat sync test keys logs deploy-modal
    for name, sub in leaves:
        text = sub.format_help()
        assert "example:\n  polybot " in text, name
        for action in sub._actions:
            if action.option_strings and action.dest not in ("help",):
                assert action.help, f"polybot {name} {action.option_strings[0]} has no help"
    dev_help = parser.parse_args(["dev"]).command_parser.format_help()
    assert re.search(r"--port PORT +port to listen on \(default: 8080\)", dev_help)  # column: widest option


def test_port_in_use_is_one_line_with_a_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = echo_project(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["dev", "--port", str(port), "--project", str(root)]) == 1
    captured = capsys.readouterr()
    assert captured.err == (f"error: port {port} on 127.0.0.1 is already in use: stop the program using it, "
                            f"or pick another port, e.g. --port {port + 1}\n")
    assert "serving" not in captured.err + captured.out


def test_chat_message_dash_reads_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    root = echo_project(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("from a pipe"))
    assert main(["chat", "Alpha", "-m", "-", "--project", str(root)]) == 0
    assert capsys.readouterr().out == "from a pipe\n"


# --- finding 1: the distribution's name -------------------------------------------------------------


def test_every_install_line_names_the_distribution() -> None:
    import re
    import tomllib

    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["name"] == "polybot-poe"
    pages = [REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "polybot").rglob("*.py")]
    for page in pages:
        for line in page.read_text().splitlines():
            for match in re.finditer(r"pip install ([^`\n&;|]*)", line):
                names = [w for w in match.group(1).split() if not w.startswith("-")]
                assert not any(re.match(r"['\"]?polybot(\[|['\"]|$)", w) for w in names), f"{page.name}: {line}"
