"""`polybot build`: the example project, determinism, no secrets, --check, incremental rebuilds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from polybot.build import CACHE, build
from polybot.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(REPO / "bots", root / "bots")
    shutil.copy(REPO / "providers.toml", root / "providers.toml")
    return root


def files(folder: Path) -> dict[str, bytes]:
    """What a build wrote that is committed (its stat record in .polybot-cache/ is ignored by git)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and CACHE not in p.parts}


def test_the_repository_build_is_up_to_date() -> None:
    """The committed build/ matches the example bots (what `polybot build --check` checks in CI)."""
    assert main(["build", "--check", "--project", str(REPO)]) == 0


def test_example_prompts(project: Path, snapshot: SnapshotAssertion) -> None:
    build(project, project / "build")
    assert files(project / "build" / "prompts") == snapshot


def test_builds_are_byte_identical(project: Path, tmp_path: Path) -> None:
    build(project, tmp_path / "one")
    build(project, tmp_path / "two")
    assert files(tmp_path / "one") == files(tmp_path / "two")


def test_manifest_holds_no_secrets(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {"OPENAI_API_KEY": "sk-live-abc123", "ANTHROPIC_API_KEY": "sk-ant-xyz789",
               "GEMINI_API_KEY": "gem-secret-456", "POE_ACCESS_KEY_ECHO": "p" * 32}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    build(project, project / "build")
    everything = b"".join(files(project / "build").values())
    for value in secrets.values():
        assert value.encode() not in everything


def test_check_fails_on_a_stale_build(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--project", str(project)]) == 0
    assert main(["build", "--check", "--project", str(project)]) == 0
    (project / "bots/Echo/system.md.j2").write_text("Changed without rebuilding.\n")
    capsys.readouterr()
    assert main(["build", "--check", "--project", str(project)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: build/manifest.json: stale; run `polybot build` and commit build/",
        "error: build/prompts/Echo.md: stale; run `polybot build` and commit build/",
    ]


def test_check_fails_when_a_bot_was_removed(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--project", str(project)]) == 0
    shutil.rmtree(project / "bots/GeminiFlashBot")
    capsys.readouterr()
    assert main(["build", "--check", "--project", str(project)]) == 1
    assert "error: build/prompts/GeminiFlashBot.md: stale" in capsys.readouterr().err
    assert main(["build", "--project", str(project)]) == 0
    assert not (project / "build/prompts/GeminiFlashBot.md").exists()


def test_rebuild_renders_only_what_changed(project: Path) -> None:
    out = project / "build"
    bots = len([p for p in (project / "bots").iterdir() if not p.name.startswith("_")])
    assert build(project, out).rendered == bots
    mtimes = {name: (out / "prompts" / f"{name}.md").stat().st_mtime_ns for name in ("Echo", "GPT4oMiniBot")}
    assert build(project, out).rendered == 0
    (project / "bots/GPT4oMiniBot/system.md.j2").write_text("You are terse.\n")
    result = build(project, out)
    assert result.rendered == 1
    assert (out / "prompts/GPT4oMiniBot.md").read_text() == "You are terse.\n"
    assert (out / "prompts/Echo.md").stat().st_mtime_ns == mtimes["Echo"]


def test_deleted_output_is_rendered_again(project: Path) -> None:
    out = project / "build"
    build(project, out)
    (out / "prompts/Echo.md").unlink()
    assert build(project, out).rendered == 1
    assert (out / "prompts/Echo.md").exists()


def test_a_shared_partial_rerenders_its_includers_and_providers_toml_everything(project: Path) -> None:
    out = project / "build"
    build(project, out)
    bots = len([p for p in (project / "bots").iterdir() if not p.name.startswith("_")])
    includers = {p.parent.name for p in (project / "bots").glob("[!_]*/*.j2") if "style.j2" in p.read_text()}
    assert 0 < len(includers) < bots
    before = {p.name: p.read_text() for p in (out / "prompts").iterdir()}
    (project / "bots/_shared/style.j2").write_text("Be brief.\n")
    assert build(project, out).rendered == len(includers)
    after = {p.name: p.read_text() for p in (out / "prompts").iterdir()}
    assert {n.removesuffix(".md") for n in before if before[n] != after[n]} == includers
    with (project / "providers.toml").open("a") as f:
        f.write("\n# a comment\n")
    assert build(project, out).rendered == bots


def test_a_manifest_shape_change_bumps_its_format() -> None:
    """An incremental build reuses unchanged bots from the old manifest; only a FORMAT bump makes it
    rewrite a manifest whose shape changed (a new BotSpec field, say)."""
    import hashlib
    import json

    from polybot.manifest import SCHEMA_DIGEST, Manifest

    digest = hashlib.sha256(json.dumps(Manifest.model_json_schema(), sort_keys=True).encode()).hexdigest()[:16]
    assert digest == SCHEMA_DIGEST, "the manifest models changed: bump manifest.FORMAT and update SCHEMA_DIGEST"
