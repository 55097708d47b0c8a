"""`polybot sync` against a local fake of Poe's settings API: bodies, keys, failures, no leaks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from polybot.cli import main
from tests.fakes.server import serve_in_thread

KEYS = {"Alpha": "alpha-key-" + "a" * 22, "Bravo": "bravo-key-" + "b" * 22}

BOT_TOML = '''\
provider = "echo"

[poe]
introduction_message = "Hi from {name}"

[[controls]]
control = "slider"
label = "Temperature"
parameter_name = "temperature"
default_value = 0.5
min_value = 0
max_value = 1
step = 0.1
'''


@dataclass
class FakePoe:
    """Poe's update_settings endpoint: records each call; answers `status` (500: echoes the path)."""

    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    status: int = 200

    async def update(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.calls.append((request.path_params["bot"], request.path_params["key"], body))
        if self.status != 200:
            # A server that quotes the request URL back: the key must still never reach the user.
            return PlainTextResponse(f"internal error handling {request.url.path}", status_code=self.status)
        return JSONResponse({"status": "ok"})


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in KEYS:
        folder = tmp_path / "bots" / name
        folder.mkdir(parents=True)
        (folder / "bot.toml").write_text(BOT_TOML.format(name=name))
        (folder / "system.md.j2").write_text("You are {{ bot.name }}.")
    assert main(["build", "--project", str(tmp_path)]) == 0
    for name, key in KEYS.items():
        monkeypatch.setenv(f"POE_ACCESS_KEY_{name.upper()}", key)
    monkeypatch.delenv("POLYBOT_POE_BASE_URL", raising=False)
    return tmp_path


@pytest.fixture
def poe() -> Iterator[tuple[FakePoe, str]]:
    fake = FakePoe()
    app = Starlette(routes=[Route("/bot/update_settings/{bot}/{key}/{version}", fake.update, methods=["POST"])])
    with serve_in_thread(app) as url:
        yield fake, url + "/bot/"


def sync(project: Path, base: str, *names: str) -> int:
    return main(["sync", *names, "--base-url", base, "--project", str(project)])


def test_pushes_each_bots_settings_with_its_own_key(
        project: Path, poe: tuple[FakePoe, str], capsys: pytest.CaptureFixture[str]) -> None:
    fake, base = poe
    assert sync(project, base) == 0
    assert capsys.readouterr().out == "synced Alpha\nsynced Bravo\n"  # not fastapi_poe's raw response text
    assert [(bot, key) for bot, key, _ in fake.calls] == list(KEYS.items())
    for (_, _, body), name in zip(fake.calls, KEYS, strict=True):
        assert body["introduction_message"] == f"Hi from {name}"
        [control] = body["parameter_controls"]["sections"][0]["controls"]
        assert (control["control"], control["parameter_name"], control["max_value"]) == ("slider", "temperature", 1)


def test_settings_body_is_what_the_bot_serves(project: Path, poe: tuple[FakePoe, str]) -> None:
    from polybot.manifest import load_manifest
    from polybot.runtime import runtimes_from_manifest

    fake, base = poe
    assert sync(project, base, "Alpha") == 0
    runtime = next(r for r in runtimes_from_manifest(load_manifest(project / "build" / "manifest.json"), project)
                   if r.spec.name == "Alpha")
    assert fake.calls[0][2] == json.loads(runtime.settings().model_dump_json())


def test_base_url_from_the_environment(project: Path, poe: tuple[FakePoe, str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fake, base = poe
    monkeypatch.setenv("POLYBOT_POE_BASE_URL", base)
    assert main(["sync", "Bravo", "--project", str(project)]) == 0
    assert [bot for bot, _, _ in fake.calls] == ["Bravo"]


def test_named_bot_only(project: Path, poe: tuple[FakePoe, str], capsys: pytest.CaptureFixture[str]) -> None:
    fake, base = poe
    assert sync(project, base, "Alpha") == 0
    assert [(bot, key) for bot, key, _ in fake.calls] == [("Alpha", KEYS["Alpha"])]
    assert capsys.readouterr().out == "synced Alpha\n"


def test_unknown_name_suggests_the_close_one(
        project: Path, poe: tuple[FakePoe, str], capsys: pytest.CaptureFixture[str]) -> None:
    fake, base = poe
    assert sync(project, base, "Alpah") == 1
    assert capsys.readouterr().err == "error: no bot named 'Alpah' (did you mean 'Alpha'?) in build/manifest.json\n"
    assert fake.calls == []


def test_missing_key_names_the_variable_and_syncs_the_rest(
        project: Path, poe: tuple[FakePoe, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake, base = poe
    monkeypatch.delenv("POE_ACCESS_KEY_ALPHA")
    assert sync(project, base) == 1
    captured = capsys.readouterr()
    assert captured.out == "synced Bravo\n"
    assert captured.err.startswith("error: Alpha: POE_ACCESS_KEY_ALPHA is not set")
    assert [bot for bot, _, _ in fake.calls] == ["Bravo"]


def test_server_error_names_the_bot_and_never_the_key(
        project: Path, poe: tuple[FakePoe, str], capsys: pytest.CaptureFixture[str]) -> None:
    fake, base = poe
    fake.status = 500
    assert sync(project, base) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert [line.split(":")[1] for line in lines] == [" Alpha", " Bravo"]
    assert lines[0].startswith("error: Alpha: sync failed: ") and "/update_settings/Alpha/***/" in lines[0]
    assert len(fake.calls) == 2  # one failure doesn't stop the others
    for key in KEYS.values():
        assert key not in captured.out + captured.err


def test_unreachable_server_fails_cleanly(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.fakes.server import free_port

    assert sync(project, f"http://127.0.0.1:{free_port()}/bot/", "Alpha") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Alpha: sync failed: ") and err.count("\n") == 1
    assert KEYS["Alpha"] not in err


def test_network_error_names_the_host(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.fakes.server import free_port

    port = free_port()
    assert sync(project, f"http://127.0.0.1:{port}/bot/", "Alpha") == 1
    assert capsys.readouterr().err == (f"error: Alpha: sync failed: cannot reach 127.0.0.1:{port} (ConnectError); "
                                       "check the network, or --base-url / POLYBOT_POE_BASE_URL\n")


@pytest.mark.parametrize("edit,change", [
    (lambda root: (root / "bots/Alpha/bot.toml").write_text(BOT_TOML.format(name="Alpha!")), "bots/Alpha/ changed"),
    (lambda root: (root / "bots/Alpha/system.md.j2").write_text("New prompt."), "bots/Alpha/ changed"),
    (lambda root: (root / "bots/Alpha/hooks.py").write_text("X = 1\n"), "bots/Alpha/ changed"),
    (lambda root: (root / "providers.toml").write_text("# a comment\n"), "providers.toml or bots/_shared/ changed"),
    (lambda root: __import__("shutil").rmtree(root / "bots/Bravo"), "bots/Bravo/ was removed"),
])
def test_refuses_a_stale_build_naming_what_changed(project: Path, poe: tuple[FakePoe, str], edit: Any, change: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    fake, base = poe
    edit(project)
    assert sync(project, base) == 1
    assert capsys.readouterr().err == (f"error: build/ is stale: {change}\n"
                                       "error: run `polybot build` (and commit build/), then polybot sync again\n")
    assert fake.calls == []
    assert main(["build", "--project", str(project)]) == 0
    assert sync(project, base, "Alpha") == 0


def test_needs_a_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bots").mkdir()
    assert main(["sync", "--project", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "build/manifest.json: not found; run `polybot build` first\n"
