"""`polybot serve` as a user runs it: keys, 401s, settings, parameter controls, bot info.
(`--workers 2` answering, and ending on Ctrl-C, is in tests/e2e/test_interrupt.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import fastapi_poe as fp
import httpx
import pytest

from polybot.app import create_app
from polybot.cli import main
from polybot.manifest import load_manifest, manifest_path
from tests.e2e.helpers import ask, ask_async, polybot_process, query
from tests.fakes.server import serve_in_thread

ALPHA_KEY = "a" * 32
BRAVO_KEY = "b" * 32
KEYS = {"POE_ACCESS_KEY_ALPHA": ALPHA_KEY, "POE_ACCESS_KEY_BRAVO": BRAVO_KEY}

ALPHA_TOML = '''provider = "echo"
description = "First"
version = "2.1.0"
params = { echo = "full" }

[poe]
introduction_message = "Hi, I'm Alpha"
allow_attachments = false

[[controls]]
control = "slider"
label = "Creativity"
parameter_name = "temperature"
min_value = 0
max_value = 2
step = 0.1
default_value = 0.5

[[controls]]
control = "drop_down"
label = "Style"
parameter_name = "style"
default_value = "short"
options = [{ value = "short", name = "Short" }, { value = "long", name = "Long" }]
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    for name, toml, prompt in [
        ("Alpha", ALPHA_TOML, "Style: {{ params.style }}; temperature {{ params.temperature }}."),
        ("Bravo", 'provider = "echo"\n', "I am Bravo."),
    ]:
        (root / "bots" / name).mkdir(parents=True)
        (root / "bots" / name / "bot.toml").write_text(toml)
        (root / "bots" / name / "system.md.j2").write_text(prompt)
    assert main(["build", "--project", str(root)]) == 0
    return root


@pytest.fixture(scope="module")
def server(project: Path) -> object:
    with polybot_process("serve", project=project, env=KEYS) as (base, output):
        yield base


def test_serve_refuses_to_start_without_keys(project: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    for var in KEYS:
        monkeypatch.delenv(var, raising=False)
    assert main(["serve", "--project", str(project)]) == 1  # before it binds a port: in-process is enough
    err = capsys.readouterr().err
    assert "POE_ACCESS_KEY_ALPHA is not set (the Poe access key of Alpha)" in err
    assert "POE_ACCESS_KEY_BRAVO is not set (the Poe access key of Bravo)" in err
    assert "--allow-without-key" in err


def test_each_bot_checks_its_own_key(server: str) -> None:
    assert ask(server, "Alpha", "hi", key=ALPHA_KEY).endswith("[user]\nhi")
    assert ask(server, "Bravo", "yo", key=BRAVO_KEY) == "yo"
    for bot, key in [("Alpha", BRAVO_KEY), ("Bravo", ALPHA_KEY), ("Alpha", "z" * 32)]:
        response = httpx.post(f"{server}/{bot}", json=query("hi").model_dump(),
                              headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 401
    response = httpx.post(f"{server}/Alpha", json={"version": "1.2", "type": "settings"})
    assert response.status_code == 401


def test_settings_carry_poe_table_and_parameter_controls(server: str) -> None:
    settings = httpx.post(f"{server}/Alpha", json={"version": "1.2", "type": "settings"},
                          headers={"Authorization": f"Bearer {ALPHA_KEY}"}).json()
    assert settings["introduction_message"] == "Hi, I'm Alpha"
    assert settings["allow_attachments"] is False
    controls = settings["parameter_controls"]["sections"][0]["controls"]
    assert [c["control"] for c in controls] == ["slider", "drop_down"]
    assert controls[0]["parameter_name"] == "temperature"
    assert controls[1]["options"][1] == {"value": "long", "name": "Long"}


async def test_picked_parameters_reach_the_template(server: str) -> None:
    request = query("hi")
    request.query[0].parameters = {"style": "long", "temperature": 1.5}
    text = ""
    async for m in fp.stream_request(request, "Alpha", ALPHA_KEY, base_url=server + "/", num_tries=1):
        text += m.text
    assert "Style: long; temperature 1.5." in text
    default_text, _ = await ask_async(server, "Alpha", "hi", key=ALPHA_KEY)
    assert "Style: short; temperature 0.5." in default_text


def test_bot_info_is_metadata_without_secrets(server: str) -> None:
    info = json.loads(ask(server, "Alpha", "bot info", key=ALPHA_KEY))
    assert info == {"name": "Alpha", "version": "2.1.0", "description": "First", "provider": "echo",
                    "model": "echo"}


def test_allow_without_key_serves(project: Path) -> None:
    server = create_app(load_manifest(manifest_path(project)), project, allow_without_key=True,
                        environ={"POE_ACCESS_KEY_ALPHA": "", "POE_ACCESS_KEY_BRAVO": ""})
    with serve_in_thread(server.app) as base:
        assert ask(base, "Bravo", "free", key="anything-at-all-32-characters-xx") == "free"


def test_oversized_request_is_refused_cleanly(server: str) -> None:
    body = json.dumps(query("x" * (9 * 1024 * 1024)).model_dump())
    response = httpx.post(f"{server}/Alpha", content=body,
                          headers={"Authorization": f"Bearer {ALPHA_KEY}", "content-type": "application/json"})
    assert response.status_code == 413
    assert "request body over" in response.json()["detail"]
