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
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
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


async def one(client: httpx.AsyncClient, url: str, expect: int) -> float | None:
    """Time to the first text event, None for a failed conversation (an error event, no `done`)."""
    started = time.perf_counter()
    first = None
    try:
        async with client.stream("POST", url, json=BODY, headers={"Authorization": "Bearer x"}) as r:
            async for line in r.aiter_lines():
                if line == "event: text":
                    first = first if first is not None else time.perf_counter() - started
                elif line == "event: error":
                    return None
                elif line == "event: done":
                    return first
    except httpx.TransportError:
        pass
    return None


async def load(url: str, conversations: int, expect: int) -> tuple[float, int, float]:
    """Wall time, failed conversations, median time to first token."""
    limits = httpx.Limits(max_connections=conversations + 10, max_keepalive_connections=conversations + 10)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(one(client, url, expect) for _ in range(conversations)))
        ttfts = [t for t in results if t is not None]
        return (time.perf_counter() - started, results.count(None),
                statistics.median(ttfts) if ttfts else float("nan"))


def project(root: Path, provider_url: str) -> Path:
    (root / "bots" / "Stream").mkdir(parents=True)
    (root / "providers.toml").write_text(f'[fake]\nkind = "openai"\napi_base = "{provider_url}"\n'
                                         'api_key_env = "FAKE_KEY"\ndefault_model = "m"\nmax_retries = 0\n')
    (root / "bots" / "Stream" / "bot.toml").write_text('provider = "fake"\n')
    (root / "bots" / "Stream" / "system.md.j2").write_text("You are a helpful assistant.\n")
    subprocess.run([PY, "-m", "polybot", "build", "--project", str(root)], check=True, capture_output=True)
    return root


def scenario(name: str, conversations: int, chunks: int, delay_ms: float, rounds: int, tmp: Path,
             with_sync: bool, who_runs: tuple[str, ...] = ("polybot", "peer", "floor"),
             variants: dict[str, str] | None = None) -> dict[str, object]:
    """`variants`: other polybot source trees (name -> directory, e.g. an earlier commit), run alike."""
    variants = variants or {}
    fake_port = free_port()
    fake = start([PY, str(HERE / "peers" / "fake_openai.py"), str(fake_port), str(chunks), str(delay_ms)], fake_port)
    provider_url = f"http://127.0.0.1:{fake_port}/v1"
    root = project(tmp / name, provider_url)
    times: dict[str, list[float]] = {"polybot": [], "peer": [], "floor": [], "seed_sync": [],
                                     **{v: [] for v in variants}}
    ttft: dict[str, list[float]] = {k: [] for k in times}
    errors: dict[str, int] = {k: 0 for k in times}
    try:
        servers = {
            "polybot": lambda port: [PY, "-m", "polybot", "serve", "--allow-without-key", "--host", "127.0.0.1",
                                     "--port", str(port), "--project", str(root)],
            "peer": lambda port: [PY, str(HERE / "peers" / "openai_peer.py"), str(port), provider_url],
            "seed_sync": lambda port: [PY, str(HERE / "peers" / "openai_peer.py"), str(port), provider_url, "--sync"],
            "floor": lambda port: [PY, str(HERE / "peers" / "floor.py"), str(port), provider_url],
        }
        order = list(who_runs) + list(variants) + (["seed_sync"] if with_sync else [])
        env = {v: {"PYTHONPATH": path} for v, path in variants.items()}
        for v in variants:
            servers[v] = servers["polybot"]
        for r in range(rounds):
            for who in (order if r % 2 == 0 else list(reversed(order))):
                if who == "seed_sync" and r > 0:
                    continue  # one run is enough to show what blocking the loop costs
                port = free_port()
                proc = start(servers[who](port), port, {"FAKE_KEY": "k", **env.get(who, {})})
                try:
                    asyncio.run(load(f"http://127.0.0.1:{port}/Stream", 5, chunks))  # warm-up
                    elapsed, failed, first = asyncio.run(load(f"http://127.0.0.1:{port}/Stream", conversations,
                                                              chunks))
                    print(f"{name} round {r} {who}: {elapsed:.2f} s, TTFT p50 {first:.2f} s, {failed} failed",
                          file=sys.stderr)
                    times[who].append(elapsed)
                    ttft[who].append(first)
                    errors[who] += failed
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    med_ttft = {k: statistics.median(v) for k, v in ttft.items() if v}
    ratios = {f"ratio_polybot_to_{k}": med["polybot"] / med[k] for k in med if k != "polybot"}
    ratios.update({f"ttft_ratio_polybot_to_{k}": med_ttft["polybot"] / med_ttft[k] for k in med_ttft if k != "polybot"})
    return {"conversations": conversations, "chunks": chunks, "delay_ms": delay_ms, "rounds": rounds,
            "median_s": med, "ttft_p50_median_s": med_ttft, "runs_s": times, "errors": errors, **ratios}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["a", "b", "c"], action="append",
                        help="a: 200 x 20 x 20 ms (+ seed-style), b: 100 x 200 x 0 ms, c: 1000 x 20 x 20 ms")
    parser.add_argument("--out", default="stream.json")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=DIR",
                        help="also run polybot from DIR (e.g. `git archive` of an earlier commit)")
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant)
    only = args.only or ["a", "b", "c"]
    tmp = Path(tempfile.mkdtemp(prefix="polybot-stream-"))
    results = {}
    try:
        if "a" in only:
            results["200x20chunks_20ms"] = scenario("a", 200, 20, 20, args.rounds, tmp, with_sync=True,
                                                    variants=variants)
        if "b" in only:
            results["100x200chunks_0ms"] = scenario("b", 100, 200, 0, args.rounds, tmp, with_sync=False,
                                                    variants=variants)
        if "c" in only:
            results["1000x20chunks_20ms"] = scenario("c", 1000, 20, 20, args.rounds, tmp, with_sync=False,
                                                     variants=variants)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
