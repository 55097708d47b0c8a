"""A new user's first hour, following README.md in a fresh virtual environment: install, a project,
a first real bot answering in `polybot chat`, and every stumble from issue 13 along the way."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.helpers import ask, default_sigint, healthy
from tests.fakes.openai_wire import FakeOpenAI
from tests.fakes.server import free_port
from tests.fakes.wire import Reply, running
from tests.test_plugins import FakeAcme, doc_files

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with this checkout installed the way the README's `pip install polybot-poe` would."""
    root = tmp_path_factory.mktemp("venv")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # No ensurepip (3 s of CPU): the venv borrows the system's pip, which installs into the venv.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(root)], check=True,
                   env=env)
    (root / "bin/pip").write_text(f'#!/bin/sh\nexec "{root}/bin/python" -m pip "$@"\n')
    (root / "bin/pip").chmod(0o755)
    pip = [str(root / "bin/python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if subprocess.run([*pip, "wheel"], env=env, capture_output=True).returncode != 0:
        pytest.skip("cannot install `wheel` from the package index into a venv")
    done = subprocess.run([*pip, "--no-deps", "--no-build-isolation", "-e", str(REPO)], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return root


class User:
    """Runs commands in the venv as a user types them: no PYTHONPATH, the venv's bin first on PATH."""

    def __init__(self, venv: Path, cwd: Path) -> None:
        self.venv, self.cwd = venv, cwd
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("POE_ACCESS_KEY")
                    and not k.endswith("_API_KEY")}
        self.env.update(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", PYTHONUNBUFFERED="1")

    def run(self, line: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(line, shell=True, cwd=cwd or self.cwd, env=self.env, input=stdin, text=True,
                              capture_output=True, timeout=120)

    def ok(self, line: str, stdin: str = "", cwd: Path | None = None) -> str:
        done = self.run(line, stdin, cwd)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        return done.stdout + done.stderr

    def fails(self, line: str, cwd: Path | None = None, code: int = 1) -> str:
        done = self.run(line, cwd=cwd)
        assert done.returncode == code, f"{line}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr
        return done.stderr

    def start(self, line: str, **extra: object) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
        proc = subprocess.Popen(["/bin/sh", "-c", f"exec {line}"], cwd=self.cwd, env=self.env, text=True,
                                preexec_fn=default_sigint,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **extra)  # type: ignore[call-overload]
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(ln.rstrip("\n") for ln in proc.stdout), daemon=True)
        reader.start()
        try:
            yield proc, lines
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            reader.join(timeout=5)
            for pipe in (proc.stdout, proc.stdin):
                if pipe is not None:
                    pipe.close()


def until(check: object, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def interrupt(proc: subprocess.Popen[str]) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=5)
    return time.monotonic() - started


def test_from_pip_install_to_a_first_real_bot(venv: Path, tmp_path: Path) -> None:
    user = User(venv, tmp_path)

    # 1. Install: the README's line names the distribution this checkout builds.
    assert "python3 -m pip install polybot-poe\n" in README
    located = "from importlib.metadata import distribution as d; print(d('polybot-poe').locate_file(''))"
    where = user.ok(f'python -c "{located}"')
    assert where.startswith(str(venv))  # this venv's install, not one on the system path
    assert user.ok("polybot --version") == "polybot 0.1.0\n"

    # Each check below runs the installed `polybot` once; tests/test_cli.py and tests/test_check.py
    # cover every case of each in-process.
    # 2. Outside a project, commands refuse in one line and create nothing.
    empty = tmp_path / "empty"
    empty.mkdir()
    for line in ("polybot build", "polybot serve", "polybot sync", "polybot list --project /nonexistent"):
        assert len(user.fails(line, cwd=empty).splitlines()) == 1
    assert list(empty.iterdir()) == []

    # The README's first three commands; the project's own README says how to install and run it.
    user.ok("polybot init mybots")
    project = tmp_path / "mybots"
    user.cwd = project
    own = (project / "README.md").read_text()
    assert "python3 -m pip install polybot-poe && polybot dev" in own
    assert user.ok("polybot build", cwd=project / "bots/Echo").startswith("built 1 bot into build/")
    assert (project / "build/manifest.json").is_file() and not (project / "bots/Echo/build").exists()
    assert user.ok("polybot chat Echo -m hello") == "hello\n"
    # 10. The scaffolded tests pass with the public polybot.testing module.
    assert "passed" in user.ok("python -m pytest -q -p no:cacheprovider tests")

    with running(FakeOpenAI(default=Reply(["Waves fold", " on the shore"]))) as openai:
        # Point the openai preset at the local fake, as a user would point it at a gateway.
        with (project / "providers.toml").open("a") as f:
            f.write(f'\n[openai]\nkind = "openai"\napi_base = "{openai.base_url}/v1"\n'
                    'api_key_env = "OPENAI_API_KEY"\ndefault_model = "gpt-4o-mini"\n')
        # 4. Keys: stored in .env (0600, never echoed), read the same way by every command.
        assert user.ok("polybot keys set OPENAI_API_KEY", stdin="sk-readme-test\n") == \
            "stored OPENAI_API_KEY in .env\nnote: no bot in this project uses OPENAI_API_KEY yet\n"
        assert stat.S_IMODE((project / ".env").stat().st_mode) == 0o600
        user.ok('polybot new Haiku --provider openai --system-message "You write haiku."')
        assert user.ok('polybot chat Haiku -m "the sea"') == "Waves fold on the shore\n"
        assert openai.requests[-1].headers["authorization"] == "Bearer sk-readme-test"
        keys = user.run("polybot keys").stdout
        assert re.search(r"OPENAI_API_KEY\s+set in \.env", keys) and "POE_ACCESS_KEY_HAIKU  missing" in keys
        assert "sk-readme-test" not in keys

        # 5. A typo in providers.toml: every command names it, located, first.
        good = (project / "providers.toml").read_text()
        (project / "providers.toml").write_text(good.replace('kind = "echo"', 'kind = "ecko"'))
        err = user.fails("polybot chat Echo -m hi")
        assert err.startswith("providers.toml:19: echo.kind: unknown kind 'ecko' (did you mean 'echo'?)")
        (project / "providers.toml").write_text(good)

        # 7. Arguments.
        assert "must be between 1 and 65535, got 99999" in user.fails("polybot dev --port 99999", code=2)
        assert "(did you mean 'build'?)" in user.fails("polybot biuld", code=2)
        assert user.fails("polybot dev --prot 1", code=2).startswith("usage: polybot dev ")
        assert "example:" in user.ok("polybot serve --help")

        # 3, 4, 8. dev: one line per reply, .env edits noticed, "fixed", Ctrl-C with the playground open.
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        for proc, output in user.start(f"polybot dev --port {port}"):
            until(lambda: healthy(base))
            assert "polybot dev: serving 2 bots, watching bots/, providers.toml, polybot.toml and .env" in output
            assert ask(base, "Haiku", "the moon") == "Waves fold on the shore"
            until(lambda: any(re.match(r"reply: Haiku  openai/gpt-4o-mini  first token [\d.]+ m?s  total [\d.]+ m?s  "
                                       r"\d+ in / \d+ out tokens  ok$", ln) for ln in output))
            prompt = (project / "bots/Haiku/system.md.j2").read_text()
            (project / "bots/Haiku/system.md.j2").write_text("{% if %}")
            until(lambda: any("Haiku has errors; still serving its last good version" in ln for ln in output))
            (project / "bots/Haiku/system.md.j2").write_text(prompt)
            until(lambda: "polybot dev: fixed Haiku" in output)
            user.ok("polybot keys set POE_ACCESS_KEY_ECHO", stdin="e" * 32 + "\n")
            until(lambda: any(".env changed (POE_ACCESS_KEY_ECHO)" in ln for ln in output))
            assert ask(base, "Echo", "keyed", key="e" * 32) == "keyed"
            events = threading.Thread(target=lambda: httpx.get(base + "/_polybot/events", timeout=30), daemon=True)
            events.start()
            time.sleep(0.5)
            assert interrupt(proc) < 1.5 and proc.returncode == 130
        assert not any("Traceback" in ln for ln in output)

        # 9. serve runs the compiled build (tests/test_sync.py has sync's stale-build and network errors).
        user.ok("polybot build")

        # 3, 4. serve reads the same .env (no "not set" for a key stored there), and stops on Ctrl-C.
        user.ok("polybot keys set POE_ACCESS_KEY_HAIKU", stdin="h" * 32 + "\n")
        port = free_port()
        for proc, output in user.start(f"polybot serve --host 127.0.0.1 --port {port}"):
            until(lambda: healthy(f"http://127.0.0.1:{port}"))
            assert ask(f"http://127.0.0.1:{port}", "Haiku", "the sea", key="h" * 32) == "Waves fold on the shore"
            until(lambda: any(ln.startswith('{"event": "reply", "bot": "Haiku"') for ln in output))
            assert interrupt(proc) < 1.5 and proc.returncode == 130
        for proc, output in user.start("polybot chat Echo", stdin=subprocess.PIPE):
            until(lambda: any(ln.startswith("Chatting with Echo") for ln in output))
            time.sleep(0.3)
            assert interrupt(proc) < 1.5 and proc.returncode == 130

    # 6. A provider plugin, pip-installed: the complete package docs/providers.md shows.
    package = tmp_path / "polybot-acme"
    for name, text in doc_files().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    user.ok(f"pip install -q --no-deps --no-build-isolation {package}")
    from starlette.applications import Starlette
    from starlette.routing import Route

    from tests.fakes.server import serve_in_thread

    acme = FakeAcme()
    with serve_in_thread(Starlette(routes=[Route("/v1/generate", acme.generate, methods=["POST"])])) as url:
        with (project / "providers.toml").open("a") as f:
            f.write(f'\n[acme]\nkind = "acme"\napi_base = "{url}/v1"\napi_key_env = "ACME_API_KEY"\n'
                    'default_model = "acme-1"\n')
        user.ok("polybot keys set ACME_API_KEY", stdin="acme-key\n")
        user.ok("polybot new Roadrunner --provider acme")
        assert user.ok("polybot chat Roadrunner -m meep") == "acme heard meep\n"
