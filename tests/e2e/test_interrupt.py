"""Ctrl-C ends `dev` (with the playground's event stream open), `serve` (one worker or two, after
answering) and `chat` within a second: exit 130, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from polybot.cli import main
from polybot.tls import tls_context
from tests.e2e.helpers import ask, default_sigint, healthy, query
from tests.fakes.server import free_port


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "bots/Alpha").mkdir(parents=True)
    (tmp_path / "bots/Alpha/bot.toml").write_text('provider = "echo"\n')
    (tmp_path / "bots/Alpha/system.md.j2").write_text("You are Alpha.")
    return tmp_path


def start(*args: str, project: Path, **extra: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "POE_ACCESS_KEY_ALPHA": "k" * 32}
    return subprocess.Popen([sys.executable, "-m", "polybot", *args, "--project", str(project)], env=env, text=True,
                            preexec_fn=default_sigint,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **extra)  # type: ignore[call-overload]


def interrupt(proc: subprocess.Popen[str]) -> tuple[float, str]:
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=5)
    finally:
        proc.kill()
    _, err = proc.communicate()
    return time.monotonic() - started, err


def wait_healthy(base: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if healthy(base):
            return
        time.sleep(0.05)
    raise AssertionError("did not start")


def test_ctrl_c_ends_dev_with_the_playground_stream_open(project: Path) -> None:
    port = free_port()
    proc = start("dev", "--port", str(port), project=project)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, proc)
    opened = threading.Event()

    def playground_tab() -> None:
        try:
            with httpx.stream("GET", base + "/_polybot/events", timeout=None) as response:
                for _ in response.iter_bytes():
                    opened.set()
        except httpx.HTTPError:
            pass

    threading.Thread(target=playground_tab, daemon=True).start()
    assert opened.wait(10)
    took, err = interrupt(proc)
    assert proc.returncode == 130, err
    assert took < 1.5, took
    assert "Traceback" not in err and "ERROR" not in err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_answers_then_ends_on_ctrl_c(project: Path, workers: str) -> None:
    assert main(["build", "--project", str(project)]) == 0
    port = free_port()
    proc = start("serve", "--host", "127.0.0.1", "--port", str(port), "--workers", workers, project=project)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, proc)
    for _ in range(4):  # with two workers, spread over both processes
        assert ask(base, "Alpha", "many hands", key="k" * 32) == "many hands"
    wrong = httpx.post(f"{base}/Alpha", json=query("hi").model_dump(), headers={"Authorization": "Bearer " + "z" * 32},
                       verify=tls_context())
    assert wrong.status_code == 401
    took, err = interrupt(proc)
    assert proc.returncode == 130, err
    assert took < 1.5, took
    assert "Traceback" not in err


def test_ctrl_c_at_the_chat_prompt(project: Path) -> None:
    proc = start("chat", "Alpha", project=project, stdin=subprocess.PIPE)
    assert proc.stderr is not None
    assert proc.stderr.readline().startswith("Chatting with Alpha")
    time.sleep(0.3)  # at the `you>` prompt, waiting for a line
    took, err = interrupt(proc)
    assert proc.returncode == 130, err
    assert took < 1.5, took
    assert "Traceback" not in err
