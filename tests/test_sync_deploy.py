"""`polybot sync` against a local fake of Poe's settings API, and `polybot deploy modal` offline."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from polybot.cli import main
from tests.fakes.server import serve_in_thread

ALPHA_KEY = "A" * 32
BRAVO_KEY = "B" * 32


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, intro in (("Alpha", "Hi from Alpha"), ("Bravo", "Hi from Bravo")):
        (tmp_path / "bots" / name).mkdir(parents=True)
        (tmp_path / "bots" / name / "bot.toml").write_text(
            f'provider = "openai"\n[poe]\nintroduction_message = "{intro}"\n'
            '[[controls]]\ncontrol = "toggle_switch"\nlabel = "Short"\nparameter_name = "short"\n')
        (tmp_path / "bots" / name / "system.md.j2").write_text("Hi.")
    assert main(["build", "--project", str(tmp_path)]) == 0
    monkeypatch.setenv("POE_ACCESS_KEY_ALPHA", ALPHA_KEY)
    monkeypatch.setenv("POE_ACCESS_KEY_BRAVO", BRAVO_KEY)
    return tmp_path


class FakePoe:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, object]]] = []
        self.status = 200

    async def update(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.calls.append((request.path_params["bot"], request.path_params["key"], body))
        if self.status != 200:
            return JSONResponse({"error": "nope"}, status_code=self.status)
        return JSONResponse({"status": "ok"})


@pytest.fixture
def poe() -> Iterator[tuple[FakePoe, str]]:
    fake = FakePoe()
    app = Starlette(routes=[Route("/bot/update_settings/{bot}/{key}/{version}", fake.update, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield fake, url + "/bot/"


def test_sync_pushes_each_bots_settings_with_its_own_key(project: Path, poe: tuple[FakePoe, str],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    fake, base = poe
    assert main(["sync", "--base-url", base, "--project", str(project)]) == 0
    assert capsys.readouterr().out == "synced Alpha\nsynced Bravo\n"
    assert [(bot, key) for bot, key, _ in fake.calls] == [("Alpha", ALPHA_KEY), ("Bravo", BRAVO_KEY)]
    body = fake.calls[0][2]
    assert body["introduction_message"] == "Hi from Alpha"
    assert body["parameter_controls"]["sections"][0]["controls"][0]["parameter_name"] == "short"  # type: ignore[index]


def test_sync_one_bot(project: Path, poe: tuple[FakePoe, str]) -> None:
    fake, base = poe
    assert main(["sync", "Bravo", "--base-url", base, "--project", str(project)]) == 0
    assert [bot for bot, _, _ in fake.calls] == ["Bravo"]


def test_sync_unknown_bot_and_missing_key(project: Path, poe: tuple[FakePoe, str], monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, base = poe
    assert main(["sync", "Alpah", "--base-url", base, "--project", str(project)]) == 1
    assert "no bot named 'Alpah' (did you mean 'Alpha'?)" in capsys.readouterr().err
    monkeypatch.delenv("POE_ACCESS_KEY_BRAVO")
    assert main(["sync", "--base-url", base, "--project", str(project)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "synced Alpha\n"
    assert "Bravo: POE_ACCESS_KEY_BRAVO is not set" in captured.err


def test_sync_failure_names_the_bot_and_never_the_key(project: Path, poe: tuple[FakePoe, str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    fake, base = poe
    fake.status = 500
    assert main(["sync", "--base-url", base, "--project", str(project)]) == 1
    captured = capsys.readouterr()
    assert "Alpha: sync failed" in captured.err and "Bravo: sync failed" in captured.err
    assert ALPHA_KEY not in captured.out + captured.err and BRAVO_KEY not in captured.out + captured.err


def test_deploy_without_token_writes_the_app_and_says_what_to_do(
        project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.delenv("MODAL_TOKEN_SECRET", raising=False)
    monkeypatch.setenv("HOME", str(project))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-never-written")
    assert main(["deploy", "modal", "--name", "Demo Bots", "--project", str(project)]) == 1
    err = capsys.readouterr().err
    assert "no Modal token found: run `modal token new`" in err
    app_file = project / "build" / "modal_app.py"
    first = app_file.read_text()
    assert "sk-secret-never-written" not in first and ALPHA_KEY not in first
    for variable in ("OPENAI_API_KEY", "POE_ACCESS_KEY_ALPHA", "POE_ACCESS_KEY_BRAVO"):
        assert f"    {variable}\n" in first
    main(["deploy", "modal", "--name", "Demo Bots", "--project", str(project)])
    assert app_file.read_text() == first  # deterministic
    assert main(["build", "--check", "--project", str(project)]) == 0  # the app file does not make build stale


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_generated_app_imports_offline(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(project))
    main(["deploy", "modal", "--name", "demo", "--project", str(project)])
    import modal

    spec = importlib.util.spec_from_file_location("generated_modal_app", project / "build" / "modal_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert isinstance(module.app, modal.App)
    assert module.app.name == "demo"


def test_deploy_needs_a_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bots").mkdir()
    assert main(["deploy", "modal", "--project", str(tmp_path)]) == 1
    assert "build/manifest.json: not found; run `polybot build` first" in capsys.readouterr().err
