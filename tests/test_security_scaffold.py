"""The issue's smaller items: `init` protects .env in an existing .gitignore and says what it kept;
`new --system-message` stays literal whatever Jinja delimiters it holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from polybot.build import build
from polybot.cli import main


def test_init_adds_env_to_an_existing_gitignore_and_says_kept(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / ".gitignore").write_text("node_modules/")
    (tmp_path / ".env.example").write_text("# mine\n")
    assert main(["init", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / ".gitignore").read_text() == "node_modules/\n.env\n"
    assert "updated .gitignore" in out
    assert "kept .env.example" in out and "created .env.example" not in out
    assert (tmp_path / ".env.example").read_text() == "# mine\n"


def test_init_leaves_a_gitignore_that_already_ignores_env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / ".gitignore").write_text(".env\n")
    assert main(["init", str(tmp_path)]) == 0
    assert (tmp_path / ".gitignore").read_text() == ".env\n"
    assert "kept .gitignore" in capsys.readouterr().out


@pytest.mark.parametrize("message", ["{%- endraw %} a", "{%endraw%}", "x {% endraw -%} y", "{%+ endraw %}{{ 1 }}",
                                     "{{{ x }}}", "{# not a comment #}", "{% raw %}{{ v }}{% endraw %}"])
def test_new_system_message_stays_literal(tmp_path: Path, message: str) -> None:
    assert main(["init", str(tmp_path)]) == 0
    assert main(["new", "Literal", "--project", str(tmp_path), "--system-message", message]) == 0
    build(tmp_path, tmp_path / "build")
    assert (tmp_path / "build/prompts/Literal.md").read_text() == message + "\n"
