"""`polybot deploy modal` offline: the generated app, the token check, and the deploy call (never run)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import polybot.deploy.modal as deploy
from polybot.cli import main

SECRETS = {"POE_ACCESS_KEY_ALPHA": "poe-alpha-secret-value", "POE_ACCESS_KEY_BRAVO": "poe-bravo-secret-value",
           "OPENAI_API_KEY": "sk-openai-secret-value"}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Alpha (echo, with hooks.py) and Bravo (openai), built; Modal logged out; fake secrets set."""
    root = tmp_path / "My Bots"
    for name, provider in (("Alpha", "echo"), ("Bravo", "openai")):
        (root / "bots" / name).mkdir(parents=True)
        (root / "bots" / name / "bot.toml").write_text(f'provider = "{provider}"\n')
        (root / "bots" / name / "system.md.j2").write_text("Hi.")
    (root / "bots" / "Alpha" / "hooks.py").write_text("def context(request):\n    return {}\n")
    assert main(["build", "--project", str(root)]) == 0
    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.delenv("MODAL_TOKEN_SECRET", raising=False)
    monkeypatch.delenv("MODAL_CONFIG_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable, value in SECRETS.items():
        monkeypatch.setenv(variable, value)
    return root


def deploy_modal(project: Path, *extra: str) -> int:
    return main(["deploy", "modal", *extra, "--project", str(project)])


def test_without_a_token_writes_the_app_and_says_what_to_do(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert deploy_modal(project, "--name", "demo") == 1
    captured = capsys.readouterr()
    assert captured.err == ("error: no Modal token found: run `modal token new` (or set MODAL_TOKEN_ID and "
                            "MODAL_TOKEN_SECRET), then run polybot deploy modal again\n")
    assert captured.out.startswith("wrote build/modal_app.py (Modal app 'demo'")
    assert (project / "build" / "modal_app.py").is_file()


def test_generated_app_is_deterministic_and_names_variables_never_values(project: Path) -> None:
    deploy_modal(project, "--name", "demo")
    app_file = project / "build" / "modal_app.py"
    first = app_file.read_bytes()
    deploy_modal(project, "--name", "demo")
    assert app_file.read_bytes() == first
    text = first.decode()
    for variable, value in SECRETS.items():
        assert f"    {variable}\n" in text
        assert value not in text
    assert 'modal secret create demo-secrets OPENAI_API_KEY="$OPENAI_API_KEY" ' in text
    assert "modal.Secret.from_name('demo-secrets')" in text
    assert '"/project/bots"' in text  # Alpha's hooks.py must reach the container
    assert main(["build", "--check", "--project", str(project)]) == 0  # the app file doesn't make build/ stale


def test_app_name_defaults_to_the_project_folder_slugified(project: Path) -> None:
    deploy_modal(project)
    assert "app = modal.App('my-bots')" in (project / "build" / "modal_app.py").read_text()
    assert deploy.app_name(Path("x"), "Über Bots!") == "ber-bots"
    assert deploy.app_name(Path("x"), "a" * 100) == "a" * deploy.MAX_APP_NAME
    assert deploy.app_name(Path("___"), None) == "polybot"


def test_no_bots_folder_without_hooks(project: Path) -> None:
    (project / "bots" / "Alpha" / "hooks.py").unlink()
    assert main(["build", "--project", str(project)]) == 0
    deploy_modal(project)
    assert "/project/bots" not in (project / "build" / "modal_app.py").read_text()


def _import(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("generated_modal_app", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_app_imports_offline(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import modal

    deploy_modal(project, "--name", "demo")

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("importing the generated app touched the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    module = _import(project / "build" / "modal_app.py")
    assert isinstance(module.app, modal.App)
    assert module.app.name == "demo"
    assert isinstance(module.image, modal.Image)


def test_with_a_token_runs_modal_deploy_on_the_file(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[list[str]] = []
    exit_codes = [0, 3]

    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, exit_codes[len(calls) - 1])

    monkeypatch.setattr(subprocess, "run", fake_run)
    (project.parent / ".modal.toml").write_text("[default]\n")  # what `modal token new` leaves in HOME
    assert deploy_modal(project, "--name", "demo") == 0
    assert calls == [[sys.executable, "-m", "modal", "deploy", str(project / "build" / "modal_app.py")]]
    assert "then run polybot sync" in capsys.readouterr().out

    assert deploy_modal(project, "--name", "demo") == 3
    assert "error: modal deploy build/modal_app.py failed (exit 3)" in capsys.readouterr().err


def test_token_from_the_environment(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not deploy.has_modal_token()
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-x")
    assert not deploy.has_modal_token()
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-x")
    assert deploy.has_modal_token()


def test_without_modal_installed(project: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(deploy, "modal_installed", lambda: False)
    assert deploy_modal(project) == 1
    assert "pip install 'polybot-poe[modal]'" in capsys.readouterr().err
    assert (project / "build" / "modal_app.py").is_file()


def test_needs_a_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bots").mkdir()
    assert deploy_modal(tmp_path) == 1
    assert capsys.readouterr().err == "build/manifest.json: not found; run `polybot build` first\n"
    assert not (tmp_path / "build").exists()
