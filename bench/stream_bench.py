"""Streaming benchmark (issue: Providers): concurrent conversations through polybot vs a hand-written bot.

    python bench/stream_bench.py [--rounds 5]

Both servers stream from the same fake OpenAI endpoint (bench/peers/fake_openai.py) through the
official AsyncOpenAI SDK. Scenarios: 200 concurrent conversations of 20 chunks x 20 ms, and 100 of
200 chunks with no delay. Peer: bench/peers/openai_peer.py (and its --sync seed-style variant).
Rounds alternate polybot / peer; the ratio is of median wall times.
"""

from __future__ import annotations

import argparse
import asyncio
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
BODY = {"version": "1.2", "type": "query", "query": [{"role": "user", "content": "hello"}],
        "user_id": "u", "conversation_id": "c", "message_id": "m"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{cmd} did not start") from None
            time.sleep(0.05)


async def one(client: httpx.AsyncClient, url: str, expect: int) -> bool:
    texts = 0
    async with client.stream("POST", url, json=BODY, headers={"Authorization": "Bearer x"}) as r:
        async for line in r.aiter_lines():
            if line == "event: text":
                texts += 1
            elif line == "event: error":
                return False
    return texts >= 1


async def load(url: str, conversations: int, expect: int) -> tuple[float, int]:
    limits = httpx.Limits(max_connections=conversations + 10, max_keepalive_connections=conversations + 10)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(one(client, url, expect) for _ in range(conversations)))
        return time.perf_counter() - started, results.count(False)


def project(root: Path, provider_url: str) -> Path:
    (root / "bots" / "Stream").mkdir(parents=True)
    (root / "providers.toml").write_text(f'[fake]\nkind = "openai"\napi_base = "{provider_url}"\n'
                                         'api_key_env = "FAKE_KEY"\ndefault_model = "m"\nmax_retries = 0\n')
    (root / "bots" / "Stream" / "bot.toml").write_text('provider = "fake"\n')
    (root / "bots" / "Stream" / "system.md.j2").write_text("You are a helpful assistant.\n")
    subprocess.run([PY, "-m", "polybot", "build", "--project", str(root)], check=True, capture_output=True)
    return root


def scenario(name: str, conversations: int, chunks: int, delay_ms: float, rounds: int, tmp: Path,
             with_sync: bool) -> dict[str, object]:
    fake_port = free_port()
    fake = start([PY, str(HERE / "peers" / "fake_openai.py"), str(fake_port), str(chunks), str(delay_ms)], fake_port)
    provider_url = f"http://127.0.0.1:{fake_port}/v1"
    root = project(tmp / name, provider_url)
    times: dict[str, list[float]] = {"polybot": [], "peer": [], "seed_sync": []}
    errors: dict[str, int] = {k: 0 for k in times}
    try:
        servers = {
            "polybot": lambda port: [PY, "-m", "polybot", "serve", "--allow-without-key", "--host", "127.0.0.1",
                                     "--port", str(port), "--project", str(root)],
            "peer": lambda port: [PY, str(HERE / "peers" / "openai_peer.py"), str(port), provider_url],
            "seed_sync": lambda port: [PY, str(HERE / "peers" / "openai_peer.py"), str(port), provider_url, "--sync"],
        }
        order = ["polybot", "peer"] + (["seed_sync"] if with_sync else [])
        for r in range(rounds):
            for who in (order if r % 2 == 0 else list(reversed(order))):
                if who == "seed_sync" and r > 0:
                    continue  # one run is enough to show what blocking the loop costs
                port = free_port()
                proc = start(servers[who](port), port, {"FAKE_KEY": "k"})
                try:
                    asyncio.run(load(f"http://127.0.0.1:{port}/Stream", 5, chunks))  # warm-up
                    elapsed, failed = asyncio.run(load(f"http://127.0.0.1:{port}/Stream", conversations, chunks))
                    times[who].append(elapsed)
                    errors[who] += failed
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    return {"conversations": conversations, "chunks": chunks, "delay_ms": delay_ms, "rounds": rounds,
            "median_s": med, "errors": errors, "ratio_polybot_to_peer": med["polybot"] / med["peer"],
            **({"ratio_seed_sync_to_peer": med["seed_sync"] / med["peer"]} if "seed_sync" in med else {})}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="polybot-stream-"))
    try:
        results = {
            "200x20chunks_20ms": scenario("a", 200, 20, 20, args.rounds, tmp, with_sync=True),
            "100x200chunks_0ms": scenario("b", 100, 200, 0, args.rounds, tmp, with_sync=False),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "stream.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
