"""Serving benchmarks (issue: Serving): cold start, resident memory, dev edit-to-served latency.

    python bench/serve_bench.py [--rounds 5] [--bots 100] [--memory-bots 1000] [--edits 15]

Peer: bench/peers/handwritten_app.py, the same number of fastapi_poe bots written by hand, importing
the three provider SDKs. Runs alternate between polybot and the peer so machine noise hits both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
PY = sys.executable
PROVIDERS = ("openai", "anthropic", "gemini")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_project(root: Path, n: int, providers: tuple[str, ...] = PROVIDERS) -> Path:
    (root / "bots" / "_shared").mkdir(parents=True)
    (root / "bots" / "_shared" / "style.j2").write_text("Be {{ vars.tone }}.\n")
    for i in range(n):
        folder = root / "bots" / f"Bot{i:04d}"
        folder.mkdir()
        provider = providers[i % len(providers)]
        (folder / "bot.toml").write_text(f'provider = "{provider}"\n[vars]\ntone = "kind"\n'
                                         f'[poe]\nintroduction_message = "Hi from Bot{i:04d}"\n')
        (folder / "system.md.j2").write_text('You are {{ bot.name }}, a helpful assistant.\n{% include "style.j2" %}\n')
    done = subprocess.run([PY, "-m", "polybot", "build", "--project", str(root)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return root


def wait_settings(proc: subprocess.Popen[bytes], port: int, bot: str, started: float) -> float:
    body = {"version": "1.2", "type": "settings"}
    while True:
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        try:
            r = httpx.post(f"http://127.0.0.1:{port}/{bot}", json=body, headers={"Authorization": "Bearer x"},
                           timeout=1)
            if r.status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.005)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_server(cmd: list[str], port: int, env: dict[str, str] | None = None) -> tuple[float, float, list[str]]:
    """(seconds to first settings answer, RSS MB then, provider SDK modules imported)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    try:
        elapsed = wait_settings(proc, port, "Bot0000", started)
        return elapsed, rss_mb(proc.pid), []
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def polybot_cmd(project: Path, port: int) -> list[str]:
    return [PY, "-m", "polybot", "serve", "--allow-without-key", "--host", "127.0.0.1", "--port", str(port),
            "--project", str(project)]


def peer_cmd(n: int, port: int) -> list[str]:
    return [PY, str(HERE / "peers" / "handwritten_app.py"), str(n), str(port)]


def cold_start(project: Path, n: int, rounds: int) -> dict[str, float]:
    ours, peers = [], []
    for _ in range(rounds):
        port = free_port()
        ours.append(run_server(polybot_cmd(project, port), port)[0])
        port = free_port()
        peers.append(run_server(peer_cmd(n, port), port)[0])
    return {"polybot_ms": statistics.median(ours) * 1000, "peer_ms": statistics.median(peers) * 1000,
            "ratio": statistics.median(ours) / statistics.median(peers)}


def memory(project: Path, n: int, rounds: int) -> dict[str, float]:
    ours, peers = [], []
    for _ in range(rounds):
        port = free_port()
        ours.append(run_server(polybot_cmd(project, port), port)[1])
        port = free_port()
        peers.append(run_server(peer_cmd(n, port), port)[1])
    return {"polybot_mb": statistics.median(ours), "peer_mb": statistics.median(peers),
            "ratio": statistics.median(ours) / statistics.median(peers)}


def only_used_sdks(tmp: Path) -> dict[str, bool]:
    """A project on OpenAI only: after serving a request, are the other SDKs imported?"""
    project = make_project(tmp / "openai-only", 3, ("openai",))
    code = (
        "import sys, asyncio\n"
        "from pathlib import Path\n"
        "import fastapi_poe as fp\n"
        "from polybot.manifest import load_manifest\n"
        "from polybot.app import create_app\n"
        f"root = Path({str(project)!r})\n"
        "server = create_app(load_manifest(root / 'build/manifest.json'), root, allow_without_key=True)\n"
        "rt = server.bots['Bot0000'].runtime\n"
        "req = fp.QueryRequest(version='1.2', type='query', query=[fp.ProtocolMessage(role='user', content='hi')],"
        " user_id='u', conversation_id='c', message_id='m')\n"
        "async def go():\n"
        "    async for _ in rt.respond(req): pass\n"
        "asyncio.run(go())\n"
        "print(' '.join(m for m in ('openai', 'anthropic', 'google.genai') if m in sys.modules))\n"
    )
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, env={**os.environ, "OPENAI_API_KEY": ""})
    loaded = out.stdout.split()
    return {"openai": "openai" in loaded, "anthropic": "anthropic" in loaded, "google.genai": "google.genai" in loaded}


def reply_text(client: httpx.Client, port: int, body: dict[str, object]) -> str:
    r = client.post(f"http://127.0.0.1:{port}/Latency", json=body, headers={"Authorization": "Bearer x"})
    return "".join(json.loads(line[6:]).get("text", "") for line in r.text.splitlines() if line.startswith("data: "))


def edit_latency(tmp: Path, edits: int) -> dict[str, float]:
    """Write a prompt file in `polybot dev`, poll until a reply shows the new prompt."""
    root = tmp / "dev"
    (root / "bots" / "Latency").mkdir(parents=True)
    (root / "bots" / "Latency" / "bot.toml").write_text('provider = "echo"\nparams = { echo = "full" }\n')
    prompt = root / "bots" / "Latency" / "system.md.j2"
    prompt.write_text("version 0")
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "polybot", "dev", "--port", str(port), "--project", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    body = {"version": "1.2", "type": "query", "query": [{"role": "user", "content": "hi"}],
            "user_id": "u", "conversation_id": "c", "message_id": "m"}
    samples = []
    try:
        wait_settings(proc, port, "Latency", time.perf_counter())
        with httpx.Client(timeout=5) as client:
            for i in range(1, edits + 1):
                time.sleep(0.3)
                started = time.perf_counter()
                prompt.write_text(f"version {i}")
                deadline = started + 10
                while f"version {i}" not in reply_text(client, port, body):
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"edit {i} was not served within 10 s")
                    time.sleep(0.002)
                samples.append(time.perf_counter() - started)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"median_ms": statistics.median(samples) * 1000, "max_ms": max(samples) * 1000, "edits": edits}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bots", type=int, default=100)
    parser.add_argument("--memory-bots", type=int, default=1000)
    parser.add_argument("--edits", type=int, default=15)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="polybot-bench-"))
    try:
        results = {
            "cold_start": cold_start(make_project(tmp / "p100", args.bots), args.bots, args.rounds),
            "memory": memory(make_project(tmp / "p1000", args.memory_bots), args.memory_bots, max(2, args.rounds // 2)),
            "sdks_imported_by_openai_only_project": only_used_sdks(tmp),
            "dev_edit_to_served": edit_latency(tmp, args.edits),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    (out / "serve.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
