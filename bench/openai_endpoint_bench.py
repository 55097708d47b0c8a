"""OpenAI-compatible endpoint benchmark (issue 17): the Chat Completions path vs the Poe path.

    python bench/openai_endpoint_bench.py [--rounds 5]

Same fake provider, project and load as bench/stream_bench.py: one `polybot serve` process per
measurement streaming from bench/peers/fake_openai.py through AsyncOpenAI; N concurrent streamed
conversations, either Poe queries at POST /Stream or streamed Chat Completions at
POST /v1/chat/completions (with `Authorization: Bearer $POLYBOT_API_KEY`, so the key check is
measured). Rounds alternate poe / openai; the ratio is of median wall times.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from stream_bench import BODY, PY, free_port, project, start  # noqa: E402

API_KEY = "bench-key"
CHAT = {"model": "Stream", "stream": True, "messages": [{"role": "user", "content": "hello"}]}


async def poe_one(client: httpx.AsyncClient, base: str) -> bool:
    texts = 0
    async with client.stream("POST", base + "/Stream", json=BODY, headers={"Authorization": "Bearer x"}) as r:
        async for line in r.aiter_lines():
            if line == "event: text":
                texts += 1
            elif line == "event: error":
                return False
    return texts >= 1


async def openai_one(client: httpx.AsyncClient, base: str) -> bool:
    texts, done = 0, False
    async with client.stream("POST", base + "/v1/chat/completions", json=CHAT,
                             headers={"Authorization": f"Bearer {API_KEY}"}) as r:
        if r.status_code != 200:
            return False
        async for line in r.aiter_lines():
            if line.startswith('data: {"error"'):
                return False
            if line.startswith("data: {"):
                texts += 1
            elif line == "data: [DONE]":
                done = True
    return done and texts >= 1


async def load(path: str, base: str, conversations: int) -> tuple[float, int]:
    one = poe_one if path == "poe" else openai_one
    limits = httpx.Limits(max_connections=conversations + 10, max_keepalive_connections=conversations + 10)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(one(client, base) for _ in range(conversations)))
        return time.perf_counter() - started, results.count(False)


def scenario(name: str, conversations: int, chunks: int, delay_ms: float, rounds: int, tmp: Path) -> dict[str, object]:
    fake_port = free_port()
    fake = start([PY, str(HERE / "peers" / "fake_openai.py"), str(fake_port), str(chunks), str(delay_ms)], fake_port)
    root = project(tmp / name, f"http://127.0.0.1:{fake_port}/v1")
    times: dict[str, list[float]] = {"poe": [], "openai": []}
    errors = {k: 0 for k in times}
    try:
        for r in range(rounds):
            for path in (["poe", "openai"] if r % 2 == 0 else ["openai", "poe"]):
                port = free_port()
                proc = start([PY, "-m", "polybot", "serve", "--allow-without-key", "--host", "127.0.0.1",
                              "--port", str(port), "--project", str(root)], port,
                             {"FAKE_KEY": "k", "POLYBOT_API_KEY": API_KEY})
                base = f"http://127.0.0.1:{port}"
                try:
                    asyncio.run(load(path, base, 5))  # warm-up
                    elapsed, failed = asyncio.run(load(path, base, conversations))
                    times[path].append(elapsed)
                    errors[path] += failed
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"conversations": conversations, "chunks": chunks, "delay_ms": delay_ms, "rounds": rounds,
            "median_s": med, "errors": errors, "ratio_openai_to_poe": med["openai"] / med["poe"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="polybot-openai-bench-"))
    try:
        results = {
            "200x20chunks_20ms": scenario("a", 200, 20, 20, args.rounds, tmp),
            "100x200chunks_0ms": scenario("b", 100, 200, 0, args.rounds, tmp),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "openai_endpoint.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
