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
    if list(data) == ["test"] and isinstance(data["test"], list):  # a tests.toml
        from polybot.bottests import TestsFile

        TestsFile.model_validate(data)
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
