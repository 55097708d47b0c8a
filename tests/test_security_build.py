"""Findings 4, 5 and 6: what `polybot build` reads, writes and deletes, and secrets in headers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from polybot.build import CONSTRAINTS, RECORD, build
from polybot.cli import main
from polybot.errors import PolybotError


def write_bot(root: Path, name: str, prompt: str = "You are {{ bot.name }}.") -> None:
    (root / "bots" / name).mkdir(parents=True, exist_ok=True)
    (root / "bots" / name / "bot.toml").write_text('provider = "echo"\n')
    (root / "bots" / name / "system.md.j2").write_text(prompt)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    write_bot(root, "Alpha")
    write_bot(root, "Bravo")
    (root / "README.md").write_text("my project\n")
    return root


def run(root: Path, *args: str) -> int:
    return main(["build", "--project", str(root), *args])


# --- finding 5: --out never deletes files polybot did not write ---------------------------------------


@pytest.mark.parametrize("out", [".", "bots", "bots/Alpha", "docs", ".."])
def test_out_folders_polybot_does_not_own_are_refused(project: Path, out: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    (project / "docs").mkdir()
    (project / "docs" / "guide.md").write_text("hand-written\n")
    before = sorted(p for p in project.parent.rglob("*"))
    assert run(project, "--out", str(project / out)) == 1
    assert "give it a folder of its own" in capsys.readouterr().err
    assert sorted(p for p in project.parent.rglob("*")) == before
    assert (project / "bots/Alpha/system.md.j2").is_file() and (project / "docs/guide.md").is_file()


def test_a_rebuild_deletes_only_what_the_last_build_wrote(project: Path) -> None:
    out = project / "build"
    assert run(project) == 0
    record = json.loads((out / RECORD).read_text())["files"]
    assert record == sorted([".polybot-outputs.json", "constraints.txt", "manifest.json",
                             "prompts/Alpha.md", "prompts/Bravo.md"])
    (out / "prompts" / "notes.md").write_text("mine\n")  # a user's file among the outputs
    (out / "modal_app.py").write_text("# written by deploy\n")
    import shutil

    shutil.rmtree(project / "bots" / "Bravo")
    assert run(project) == 0
    assert not (out / "prompts/Bravo.md").exists()  # polybot wrote it: removed with its bot
    assert (out / "prompts/notes.md").read_text() == "mine\n"
    assert (out / "modal_app.py").is_file()
    assert run(project, "--check") == 0


def test_an_empty_or_new_out_folder_is_fine_and_a_legacy_build_is_adopted(project: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert run(project, "--out", str(tmp_path / "empty")) == 0
    assert run(project, "--out", str(tmp_path / "new" / "folder")) == 0
    # A build/ from before the record existed: its manifest says it is polybot's.
    (tmp_path / "empty" / RECORD).unlink()
    assert run(project, "--out", str(tmp_path / "empty")) == 0
    assert (tmp_path / "empty" / RECORD).is_file()


def test_an_interrupted_build_leaves_the_last_good_manifest(project: Path) -> None:
    """The disk fills up while the new manifest is written: the old one must stay whole."""
    out = project / "build"
    assert run(project) == 0
    good = (out / "manifest.json").read_bytes()
    (project / "bots" / "Alpha" / "bot.toml").write_text(f'provider = "echo"\n[vars]\nnote = "{"x" * 5000}"\n')
    limit = len(good) + 1000  # the prompts fit, the new manifest (holding vars) does not
    script = textwrap.dedent(f"""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
        from polybot.cli import main
        sys.exit(main(["build", "--project", {str(project)!r}]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode != 0
    assert (out / "manifest.json").read_bytes() == good
    assert not [p.name for p in out.rglob("*.tmp")], "temporary files were left behind"
    assert run(project) == 0  # and the next build succeeds


def test_constraints_pin_what_the_build_ran_with(project: Path) -> None:
    from importlib import metadata

    assert run(project) == 0
    pins = dict(line.split("==") for line in (project / "build" / CONSTRAINTS).read_text().splitlines()
                if line and not line.startswith("#"))
    for name in ("openai", "anthropic", "google-genai", "fastapi-poe", "jinja2", "pydantic"):
        assert pins[name] == metadata.version(name)
    assert "polybot" not in pins


def test_declared_ranges_cover_the_tested_versions() -> None:
    """pyproject's lower bounds are the major versions the tests run with, not older ones."""
    import tomllib
    from importlib import metadata

    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    for raw in project["project"]["dependencies"]:
        req = Requirement(raw)
        installed = metadata.version(req.name)
        assert req.specifier.contains(installed, prereleases=True), f"{raw} excludes the tested {installed}"
        lows = [s.version for s in req.specifier if s.operator == ">="]
        assert lows, f"{raw}: no lower bound"
        if req.name in ("openai", "anthropic", "google-genai"):
            assert lows[0].split(".")[0] == installed.split(".")[0], f"{raw}: tested only with {installed}"


# --- finding 4: symlinks and unreachable templates ------------------------------------------------------


def test_a_symlink_out_of_the_project_is_a_located_error(project: Path, tmp_path: Path) -> None:
    secret = tmp_path / "outside.env"
    secret.write_text("OPENAI_API_KEY=sk-live-leaked-by-a-symlink\n")
    (project / "bots" / "Alpha" / "leak.j2").symlink_to(secret)
    (project / "bots" / "Alpha" / "system.md.j2").write_text('{% include "leak.j2" %}')
    with pytest.raises(PolybotError) as failed:
        build(project, project / "build")
    assert "bots/Alpha/leak.j2: is a link to a file outside the project" in "\n".join(map(str, failed.value.problems))
    assert not (project / "build").exists() or b"sk-live" not in b"".join(
        p.read_bytes() for p in (project / "build").rglob("*") if p.is_file())


def test_proc_self_environ_never_reaches_the_build(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYBOT_TEST_SECRET", "sk-from-proc-environ")
    (project / "bots" / "Alpha" / "env.j2").symlink_to("/proc/self/environ")
    with pytest.raises(PolybotError):
        build(project, project / "build")
    (project / "bots" / "Alpha" / "env.j2").unlink()
    (project / "bots" / "_shared").mkdir()
    (project / "bots" / "_shared" / "env.j2").symlink_to("/proc/self/environ")
    with pytest.raises(PolybotError) as failed:
        build(project, project / "build")
    assert "bots/_shared/env.j2" in str(failed.value.problems[0])


def test_a_linked_bot_folder_or_providers_toml_outside_is_an_error(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    write_bot(elsewhere, "Charlie")
    (project / "bots" / "Charlie").symlink_to(elsewhere / "bots" / "Charlie")
    (tmp_path / "providers.toml").write_text('[echo2]\nkind = "echo"\ndefault_model = "echo"\n')
    (project / "providers.toml").symlink_to(tmp_path / "providers.toml")
    with pytest.raises(PolybotError) as failed:
        build(project, project / "build")
    text = "\n".join(map(str, failed.value.problems))
    assert "bots/Charlie: is a link to a folder outside the project" in text
    assert "providers.toml: is a link to a file outside the project" in text


def test_a_symlink_inside_the_project_is_fine(project: Path) -> None:
    (project / "bots" / "_shared").mkdir()
    (project / "bots" / "_shared" / "style.j2").write_text("Be kind.")
    (project / "bots" / "Alpha" / "style.j2").symlink_to(project / "bots" / "_shared" / "style.j2")
    (project / "bots" / "Alpha" / "system.md.j2").write_text('{% include "style.j2" %}')
    assert build(project, project / "build").manifest.bots["Alpha"].templates["style.j2"] == "Be kind."


def test_only_reachable_templates_go_into_the_manifest(project: Path) -> None:
    folder = project / "bots" / "Alpha"
    (folder / "system.md.j2").write_text('{% extends "base.j2" %}{% block b %}{% include "part.j2" %}'
                                         '{% import "macros.j2" as m %}{{ m.x() }}{% endblock %}')
    (folder / "base.j2").write_text("[{% block b %}{% endblock %}]")
    (folder / "part.j2").write_text("part ")
    (folder / "macros.j2").write_text("{% macro x() %}macro{% endmacro %}")
    (folder / "draft.j2").write_text("unused draft with a secret-ish note")
    (folder / "notes").mkdir()
    (folder / "notes" / "old.j2").write_text("old")
    (project / "bots" / "_shared").mkdir()
    (project / "bots" / "_shared" / "used.j2").write_text("shared")
    (project / "bots" / "_shared" / "unused.j2").write_text("nobody includes me")
    (project / "bots" / "Bravo" / "system.md.j2").write_text('{% include "used.j2" %}')
    result = build(project, project / "build")
    assert sorted(result.manifest.bots["Alpha"].templates) == ["base.j2", "macros.j2", "part.j2", "system.md.j2"]
    assert sorted(result.manifest.shared_templates) == ["used.j2"]
    assert (project / "build/prompts/Alpha.md").read_text() == "[part macro]"


def test_a_dynamic_template_name_is_a_located_error(project: Path) -> None:
    (project / "bots" / "Alpha" / "system.md.j2").write_text('Hi.\n{% include vars.part %}')
    with pytest.raises(PolybotError) as failed:
        build(project, project / "build")
    assert str(failed.value.problems[0]).startswith("bots/Alpha/system.md.j2:2: template names must be literal")


# --- finding 6: secrets in provider headers ----------------------------------------------------------


def gateway(root: Path, table: str) -> None:
    (root / "providers.toml").write_text('[gateway]\nkind = "openai"\napi_base = "http://127.0.0.1:9/v1"\n'
                                         'api_key_env = "GATEWAY_KEY"\ndefault_model = "m"\n' + table)
    (root / "bots" / "Alpha" / "bot.toml").write_text('provider = "gateway"\n')


@pytest.mark.parametrize("header", ['"X-Gateway-Key" = "gw-123456789"', '"Authorization" = "Bearer abc"',
                                    '"X-Custom" = "sk-live-0123456789abcdef"', '"Cookie" = "session=abc"'])
def test_a_secret_looking_header_is_a_located_error_with_the_fix(project: Path, header: str,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    gateway(project, "headers = { " + header + " }\n")
    assert run(project) == 1
    err = capsys.readouterr().err
    assert "providers.toml:6: gateway.headers:" in err and "looks like a secret" in err
    assert "headers_env = {" in err
    assert not (project / "build" / "manifest.json").exists()


def test_headers_env_keeps_the_value_out_of_files_and_reaches_the_provider(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from polybot.config import load_providers

    gateway(project, 'headers = { "X-Team" = "bots" }\nheaders_env = { "X-Gateway-Key" = "GATEWAY_HEADER" }\n')
    monkeypatch.setenv("GATEWAY_HEADER", "gw-secret-value-42")
    assert run(project) == 0
    everything = b"".join(p.read_bytes() for p in (project / "build").rglob("*") if p.is_file())
    assert b"gw-secret-value-42" not in everything and b"GATEWAY_HEADER" in everything
    config = load_providers(project, ["openai"])[0]["gateway"]
    assert config.request_headers() == {"X-Team": "bots", "X-Gateway-Key": "gw-secret-value-42"}
    assert config.request_headers({}) == {"X-Team": "bots"}


def test_a_legacy_build_of_another_format_is_still_polybots(project: Path) -> None:
    out = project / "build"
    (out / "prompts").mkdir(parents=True)
    (out / "manifest.json").write_text('{"format": 1, "old_field": true, "bots": {"Gone": {}}}')
    (out / "prompts" / "Gone.md").write_text("old prompt")
    (out / "prompts" / "mine.md").write_text("user file")
    assert run(project) == 0
    assert not (out / "prompts" / "Gone.md").exists() and (out / "prompts" / "mine.md").exists()
