"""The examples in README.md and docs/ are checked, so they cannot rot."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from jinja2 import Environment

from polybot.config import BotConfig, ProviderConfig
from polybot.controls import control_problems

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])


def blocks(lang: str) -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for match in re.finditer(rf"```{lang}\n(.*?)```", page.read_text(), re.S):
            found.append((page.name, match.group(1)))
    return found


@pytest.mark.parametrize("page,source", blocks("toml"), ids=lambda v: v if v.endswith(".md") else "")
def test_toml_examples_are_valid_config(page: str, source: str) -> None:
    data = tomllib.loads(source)
    if source.startswith("# polybot.toml"):
        from polybot.config import ProjectSettings

        ProjectSettings.model_validate(data)
    elif list(data) == ["test"] and isinstance(data["test"], list):  # a tests.toml
        from polybot.bottests import TestsFile

        TestsFile.model_validate(data)
    elif source.startswith("# polybot.toml"):
        from polybot.config import ProjectSettings

        ProjectSettings.model_validate(data)
    elif all(isinstance(table, dict) and "kind" in table for table in data.values()):  # a providers.toml
        for table in data.values():
            ProviderConfig.model_validate(table)
    else:
        if "provider" not in data:  # a fragment of a bot.toml
            data = {"provider": "echo", **data}
        config = BotConfig.model_validate(data)
        assert control_problems(config.controls, source, page) == []


@pytest.mark.parametrize("page,source", blocks("jinja"), ids=lambda v: v if v.endswith(".md") else "")
def test_jinja_examples_parse(page: str, source: str) -> None:
    Environment().parse(source)


@pytest.mark.parametrize("page,source", blocks("python"), ids=lambda v: v if v.endswith(".md") else "")
def test_python_examples_compile(page: str, source: str) -> None:
    compile(source, page, "exec")


def test_docs_have_examples() -> None:
    assert len(blocks("toml")) >= 2 and blocks("jinja") and blocks("python")


def test_docs_answer_what_a_newcomer_asks() -> None:
    page = {p.name: p.read_text() for p in PAGES}
    assert "allow_attachments" in page["attachments.md"] and "vision" in page["attachments.md"]
    assert "from polybot.testing import" in page["testing.md"] and "Reply.events" in page["testing.md"]
    assert "## Endpoints without a key" in page["providers.md"]
    assert "POLYBOT_PROJECT" in page["environment.md"] and "POLYBOT_ALLOW_WITHOUT_KEY" in page["environment.md"]
    for field in ("request.query", ".attachments", "images", "bot.spec",
                  "bot.complete(request)"):
        assert field in page["hooks.md"], field
    assert "no keys needed" not in page["dev-loop.md"] and "access keys\nare optional in `dev`" in page["dev-loop.md"]
    assert '[project.entry-points."polybot.providers"]' in page["providers.md"]
    for name in ("attachments.md", "testing.md", "environment.md", "providers.md", "hooks.md", "dev-loop.md"):
        assert f"(docs/{name})" in page["README.md"], name  # reachable from the README


def test_the_scaffolded_test_uses_only_the_public_testing_module() -> None:
    from polybot.scaffold import _TEST

    assert "from polybot.testing import Project, load_project" in _TEST
    assert "polybot.build" not in _TEST and "import _" not in _TEST
