"""The compiler: one instance compiles a bot again only when its inputs change."""

from __future__ import annotations

from pathlib import Path

from polybot.compiler import Compiler
from polybot.validate import check_config


def bot(root: Path, name: str, prompt: str = "You are {{ bot.name }}.", toml: str = 'provider = "echo"\n') -> None:
    (root / "bots" / name).mkdir(parents=True, exist_ok=True)
    (root / "bots" / name / "bot.toml").write_text(toml)
    (root / "bots" / name / "system.md.j2").write_text(prompt)


def test_an_unchanged_bot_is_not_compiled_again(tmp_path: Path) -> None:
    bot(tmp_path, "Alpha")
    bot(tmp_path, "Bravo")
    compiler = Compiler(tmp_path)
    first = {b.name: b for b in compiler.compile().bots}
    assert all(b.prompt is not None for b in first.values())
    bot(tmp_path, "Bravo", "You are {{ bot.name }}, changed.")
    second = {b.name: b for b in compiler.compile().bots}
    assert second["Alpha"].spec is first["Alpha"].spec and second["Alpha"].prompt is None
    assert second["Bravo"].prompt == "You are Bravo, changed."


def test_a_shared_change_recompiles_every_bot(tmp_path: Path) -> None:
    bot(tmp_path, "Alpha", '{% include "part.j2" %}')
    (tmp_path / "bots/_shared").mkdir()
    (tmp_path / "bots/_shared/part.j2").write_text("one")
    compiler = Compiler(tmp_path)
    assert compiler.manifest().shared_templates == {"part.j2": "one"}
    (tmp_path / "bots/_shared/part.j2").write_text("two")
    compiled = compiler.compile()
    assert [b.prompt for b in compiled.bots] == ["two"]
    assert compiled.manifest is not None and compiled.manifest.shared_templates == {"part.j2": "two"}


def test_a_seeded_spec_is_reused_and_a_broken_bot_has_no_manifest(tmp_path: Path) -> None:
    bot(tmp_path, "Alpha")
    spec = Compiler(tmp_path).manifest().bots["Alpha"]
    compiled = Compiler(tmp_path, {"Alpha": spec}).compile()
    assert compiled.bots[0].spec is spec and compiled.bots[0].prompt is None
    bot(tmp_path, "Alpha", "{{ nope }}")
    compiled = Compiler(tmp_path, {"Alpha": spec}).compile()
    assert compiled.manifest is None and compiled.bots[0].spec is None
    assert [p.path for p in compiled.problems] == ["bots/Alpha/system.md.j2"]


def test_the_config_check_resolves_provider_model_and_access_key(tmp_path: Path) -> None:
    bot(tmp_path, "Alpha", toml='provider = "echo"\n[[fallback]]\nprovider = "echo"\nmodel = "other"\n')
    project = Compiler(tmp_path).load()
    checked = check_config(project, project.bots[0])
    assert checked.problems == []
    assert (checked.model, checked.access_key_env) == ("echo", "POE_ACCESS_KEY_ALPHA")
    assert [f.model for f in checked.fallbacks] == ["other"]
