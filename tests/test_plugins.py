"""Provider plugins: a package in the `polybot.providers` entry-point group adds a kind, checked
after plugins load. The package here is the one docs/providers.md shows, byte for byte."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.server import serve_in_thread

REPO = Path(__file__).resolve().parents[1]


def doc_files() -> dict[str, str]:
    """The files docs/providers.md shows as ```lang {file=PATH} blocks."""
    text = (REPO / "docs/providers.md").read_text()
    return {m.group(1): m.group(2) for m in re.finditer(r"```\w+ \{file=([^}]+)\}\n(.*?)```", text, re.S)}


def install_without_pip(site: Path, files: dict[str, str]) -> None:
    """What `pip install` leaves behind: the module, and a dist-info with the entry points."""
    pyproject = tomllib.loads(files["polybot-acme/pyproject.toml"])
    (site / "polybot_acme.py").write_text(files["polybot-acme/polybot_acme.py"])
    info = site / "polybot_acme-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: polybot-acme\nVersion: 0.1.0\n")
    groups = pyproject["project"]["entry-points"]
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in groups.items()))


class FakeAcme:
    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []

    async def generate(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.bodies.append({**body, "auth": request.headers.get("authorization")})
        return JSONResponse({"text": f"acme heard {body['messages'][-1]['text']}", "usage": {"input": 3, "output": 4}})


@pytest.fixture
def acme() -> Iterator[tuple[FakeAcme, str]]:
    fake = FakeAcme()
    with serve_in_thread(Starlette(routes=[Route("/v1/generate", fake.generate, methods=["POST"])])) as url:
        yield fake, url + "/v1"


def polybot(*args: str, site: Path, project: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "ACME_API_KEY": "acme-key"}
    return subprocess.run([sys.executable, "-m", "polybot", *args, "--project", str(project)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_an_installed_plugin_adds_a_kind_usable_from_providers_toml(tmp_path: Path,
                                                                   acme: tuple[FakeAcme, str]) -> None:
    fake, url = acme
    site, project = tmp_path / "site", tmp_path / "project"
    site.mkdir()
    install_without_pip(site, doc_files())
    (project / "bots/Roadrunner").mkdir(parents=True)
    (project / "providers.toml").write_text(
        f'[acme]\nkind = "acme"\napi_base = "{url}"\napi_key_env = "ACME_API_KEY"\ndefault_model = "acme-1"\n')
    (project / "bots/Roadrunner/bot.toml").write_text('provider = "acme"\n')
    (project / "bots/Roadrunner/system.md.j2").write_text("Beep beep.")

    chat = polybot("chat", "Roadrunner", "-m", "meep", site=site, project=project)
    assert (chat.returncode, chat.stdout, chat.stderr) == (0, "acme heard meep\n", "")
    assert fake.bodies == [{"model": "acme-1", "system": "Beep beep.", "messages": [{"role": "user", "text": "meep"}],
                            "temperature": None, "auth": "Bearer acme-key"}]
    assert polybot("build", site=site, project=project).returncode == 0

    # Without the plugin, the same providers.toml is a located error naming the kind.
    missing = polybot("build", site=tmp_path, project=project)
    assert missing.returncode == 1
    assert "providers.toml:2: acme.kind: unknown kind 'acme'" in missing.stderr


def test_a_broken_plugin_is_reported_first(tmp_path: Path) -> None:
    site, project = tmp_path / "site", tmp_path / "project"
    info = site / "polybot_broken-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: polybot-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[polybot.providers]\nbroken = polybot_broken_missing:Provider\n")
    (project / "bots").mkdir(parents=True)
    done = polybot("list", site=site, project=project)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        "provider plugin 'broken' (polybot_broken_missing:Provider, from polybot-broken): failed to load: "
        "ModuleNotFoundError: No module named 'polybot_broken_missing'")
    assert "Traceback" not in done.stderr
