"""Run polybot commands as a user would (subprocesses) and talk to them with fastapi_poe's client."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fastapi_poe as fp
import httpx

from polybot.tls import tls_context
from tests.fakes.server import free_port, poe_session


def query(text: str, **extra: object) -> fp.QueryRequest:
    return fp.QueryRequest(version="1.2", type="query", query=[fp.ProtocolMessage(role="user", content=text)],
                           user_id="u1", conversation_id="c1", message_id="m1", **extra)  # type: ignore[arg-type]


async def ask_async(base_url: str, bot: str, text: str, key: str = "x" * 32) -> tuple[str, list[fp.PartialResponse]]:
    events = []
    async with poe_session() as session:
        async for m in fp.stream_request(query(text), bot, key, base_url=base_url + "/", num_tries=1,
                                         session=session):
            events.append(m)
    out = ""
    for m in events:
        out = m.text if m.is_replace_response else out + m.text
    return out, events


def ask(base_url: str, bot: str, text: str, key: str = "x" * 32) -> str:
    return asyncio.run(ask_async(base_url, bot, text, key))[0]


def healthy(base: str) -> bool:
    """Whether the polybot at `base` answers /healthz (on the shared TLS context: a client of its
    own per poll would load the CA bundle each time)."""
    try:
        return httpx.get(base + "/healthz", timeout=1, verify=tls_context()).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def polybot_process(*args: str, project: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, list[str]]]:
    """Start `polybot <args> --port P --project DIR`; yield its base URL (once /healthz answers)
    and the list its output lines are collected into as they arrive."""
    port = free_port()
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "polybot", *args, "--project", str(project), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env,
    )
    base = f"http://127.0.0.1:{port}"
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                reader.join(timeout=2)
                raise RuntimeError("polybot exited early:\n" + "\n".join(lines))
            if healthy(base):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("polybot did not start")
            time.sleep(0.05)
        yield base, lines
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        reader.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def new_page(browser: Any, **options: Any) -> Iterator[Any]:
    """A page in a fresh context (its own cookies and storage), closed afterwards."""
    context = browser.new_context(**options)
    try:
        yield context.new_page()
    finally:
        context.close()


def default_sigint() -> None:
    """For Popen's preexec_fn: Ctrl-C as a terminal sends it, even when this run of the tests was
    started with SIGINT ignored (a shell's `cmd &`), which children would otherwise inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
