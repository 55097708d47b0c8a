"""Added latency at a steady 100 requests/s: polybot and the hand-written bot over the provider itself.

    python bench/latency_bench.py [--rounds 3] [--rate 100] [--seconds 10]

Open-loop load (a request starts every 1/rate s, whatever the others are doing) against the fake
OpenAI endpoint directly, through polybot, and through bench/peers/openai_peer.py, alternating.
Each request's latency is the time to its last event; the added latency is a server's p50 / p99
minus the provider's own p50 / p99 in the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_bench import BODY, PY, free_port, project, start

HERE = Path(__file__).resolve().parent
DIRECT = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "stream": True}


async def measure(url: str, direct: bool, rate: float, seconds: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    failed = 0

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal failed
        started = time.perf_counter()
        ok = False
        try:
            async with client.stream("POST", url, json=DIRECT if direct else BODY,
                                     headers={"Authorization": "Bearer x"}) as r:
                async for line in r.aiter_lines():
                    ok |= line in ("event: done", "data: [DONE]")
        except httpx.TransportError:
            pass
        if ok:
            latencies.append(time.perf_counter() - started)
        else:
            failed += 1

    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for _ in range(20):  # warm-up
            await one(client)
        latencies.clear()
        tasks = []
        begin = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(client)))
        await asyncio.gather(*tasks)
    return latencies, failed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="polybot-latency-"))
    fake_port = free_port()
    fake = start([PY, str(HERE / "peers" / "fake_openai.py"), str(fake_port), str(args.chunks), "0"], fake_port)
    provider_url = f"http://127.0.0.1:{fake_port}/v1"
    root = project(tmp / "l", provider_url)
    servers = {
        "polybot": lambda port: [PY, "-m", "polybot", "serve", "--allow-without-key", "--host", "127.0.0.1",
                                 "--port", str(port), "--project", str(root)],
        "peer": lambda port: [PY, str(HERE / "peers" / "openai_peer.py"), str(port), provider_url],
    }
    added: dict[str, dict[str, list[float]]] = {w: {"p50_ms": [], "p99_ms": []} for w in servers}
    own: dict[str, list[float]] = {"p50_ms": [], "p99_ms": []}
    failed = {w: 0 for w in servers}
    try:
        for r in range(args.rounds):
            direct, _ = asyncio.run(measure(provider_url + "/chat/completions", True, args.rate, args.seconds))
            base50, base99 = pct(direct, 0.5), pct(direct, 0.99)
            own["p50_ms"].append(1000 * base50)
            own["p99_ms"].append(1000 * base99)
            for who in (list(servers) if r % 2 == 0 else list(reversed(servers))):
                port = free_port()
                proc = start(servers[who](port), port, {"FAKE_KEY": "k"})
                try:
                    lat, bad = asyncio.run(measure(f"http://127.0.0.1:{port}/Stream", False, args.rate, args.seconds))
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
                failed[who] += bad
                added[who]["p50_ms"].append(1000 * (pct(lat, 0.5) - base50))
                added[who]["p99_ms"].append(1000 * (pct(lat, 0.99) - base99))
                print(f"round {r} {who}: +{added[who]['p50_ms'][-1]:.2f} ms p50, "
                      f"+{added[who]['p99_ms'][-1]:.2f} ms p99 (provider {1000 * base50:.2f} / {1000 * base99:.2f} ms)",
                      file=sys.stderr)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    results = {"rate": args.rate, "seconds": args.seconds, "chunks": args.chunks, "rounds": args.rounds,
               "provider_ms": {k: statistics.median(v) for k, v in own.items()},
               "added_ms": {w: {k: statistics.median(v) for k, v in d.items()} for w, d in added.items()},
               "failed": failed}
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "latency.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
