"""Load, soak and fault-mix benchmark (issue: Prove it) for one `polybot serve` process.

    python bench/load_bench.py [--concurrent 1000] [--soak 20000] [--faults 2000]

1. 1000 concurrent conversations, zero errors expected; throughput and time to first token (TTFT)
   compared with the fake provider's own TTFT measured directly at the same concurrency.
2. Soak: 20,000 requests in waves (sequential and concurrent); resident memory after warm-up vs at
   the end, growth target < 10 %.
3. Fault mix: 10 % of provider calls fail (429 / 500 / dropped mid-stream); every conversation
   must end in the whole reply or a clean error event: nothing hung, nothing truncated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stream_bench import BODY, free_port, start

HERE = Path(__file__).resolve().parent
PY = sys.executable
CHUNKS = 20
EXPECTED = "".join(f"w{i} " for i in range(CHUNKS))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def conversation(client: httpx.AsyncClient, url: str, auth: bool) -> dict[str, object]:
    """Outcome of one query: whole / error / truncated / hung, and its TTFT."""
    started = time.perf_counter()
    ttft = None
    text, event, ended, error = "", "", False, False
    try:
        async with client.stream("POST", url, json=BODY,
                                 headers={"Authorization": "Bearer x"} if auth else {}) as r:
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                    ended |= event == "done"
                    error |= event == "error"
                elif line.startswith("data: ") and event in ("text", "replace_response"):
                    piece = json.loads(line[6:])["text"]
                    ttft = ttft if ttft is not None else time.perf_counter() - started
                    text = piece if event == "replace_response" else text + piece
                elif line.startswith("data: {") and "choices" in line:  # the fake provider itself
                    data = json.loads(line[6:])
                    for choice in data["choices"]:
                        if choice["delta"].get("content"):
                            ttft = ttft if ttft is not None else time.perf_counter() - started
                            text += choice["delta"]["content"]
                elif line == "data: [DONE]":
                    ended = True
    except (httpx.TimeoutException, httpx.TransportError):
        return {"outcome": "hung", "ttft": ttft}
    if error:
        return {"outcome": "error", "ttft": ttft}
    if not ended or text != EXPECTED:
        return {"outcome": "truncated", "ttft": ttft}
    return {"outcome": "whole", "ttft": ttft}


async def wave(url: str, n: int, auth: bool = True, direct: bool = False) -> list[dict[str, object]]:
    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        if direct:
            async def call() -> dict[str, object]:
                started = time.perf_counter()
                ttft = None
                async with client.stream("POST", url, json={"model": "m", "messages": [], "stream": True}) as r:
                    async for line in r.aiter_lines():
                        if ttft is None and '"content"' in line:
                            ttft = time.perf_counter() - started
                return {"outcome": "whole", "ttft": ttft}
            return list(await asyncio.gather(*(call() for _ in range(n))))
        return list(await asyncio.gather(*(conversation(client, url, auth) for _ in range(n))))


def project(root: Path, primary: str, fallback: str) -> Path:
    (root / "bots" / "Load").mkdir(parents=True)
    (root / "providers.toml").write_text(
        f'[fake]\nkind = "openai"\napi_base = "{primary}"\napi_key_env = "FAKE_KEY"\ndefault_model = "m"\n'
        f'timeout = 20\n\n[fake2]\nkind = "openai"\napi_base = "{fallback}"\napi_key_env = "FAKE_KEY"\n'
        'default_model = "m"\ntimeout = 20\n')
    (root / "bots" / "Load" / "bot.toml").write_text('provider = "fake"\n\n[[fallback]]\nprovider = "fake2"\n')
    (root / "bots" / "Load" / "system.md.j2").write_text("You are {{ bot.name }}.\n")
    subprocess.run([PY, "-m", "polybot", "build", "--project", str(root)], check=True, capture_output=True)
    return root


def summary(results: list[dict[str, object]], seconds: float) -> dict[str, object]:
    ttfts = sorted(float(r["ttft"]) for r in results if r["ttft"] is not None)  # type: ignore[arg-type]
    outcomes = {k: sum(1 for r in results if r["outcome"] == k) for k in ("whole", "error", "truncated", "hung")}
    return {"requests": len(results), **outcomes, "seconds": round(seconds, 2),
            "per_second": round(len(results) / seconds, 1),
            "ttft_p50_ms": round(1000 * ttfts[len(ttfts) // 2], 1) if ttfts else None,
            "ttft_p99_ms": round(1000 * ttfts[int(len(ttfts) * 0.99) - 1], 1) if ttfts else None}


def run_serve(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = start([PY, "-m", "polybot", "serve", "--allow-without-key", "--host", "127.0.0.1", "--port", str(port),
                  "--project", str(root)], port, {"FAKE_KEY": "k"})
    return proc, f"http://127.0.0.1:{port}/Load"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrent", type=int, default=1000)
    parser.add_argument("--soak", type=int, default=20000)
    parser.add_argument("--faults", type=int, default=2000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="polybot-load-"))
    results: dict[str, object] = {}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        clean_port, faulty_port = free_port(), free_port()
        procs.append(start([PY, str(HERE / "peers" / "fake_openai.py"), str(clean_port), str(CHUNKS), "20"],
                           clean_port))
        procs.append(start([PY, str(HERE / "peers" / "fake_openai.py"), str(faulty_port), str(CHUNKS), "20",
                            "0.1"], faulty_port))
        clean = f"http://127.0.0.1:{clean_port}/v1"
        faulty = f"http://127.0.0.1:{faulty_port}/v1"

        # 1. concurrency, with the provider's own TTFT at the same concurrency for comparison
        direct = asyncio.run(wave(clean + "/chat/completions", args.concurrent, direct=True))
        proc, url = run_serve(project(tmp / "clean", clean, clean))
        procs.append(proc)
        asyncio.run(wave(url, 20))
        started = time.perf_counter()
        polybot = asyncio.run(wave(url, args.concurrent))
        results["concurrent"] = summary(polybot, time.perf_counter() - started)
        results["concurrent"]["provider_ttft_p50_ms"] = summary(direct, 1)["ttft_p50_ms"]  # type: ignore[index]
        results["concurrent"]["provider_ttft_p99_ms"] = summary(direct, 1)["ttft_p99_ms"]  # type: ignore[index]

        # 2. soak: waves of 1 (sequential) and 200 (concurrent) requests
        sizes = [1] * 50 + [200] * (args.soak // 200)
        done: list[dict[str, object]] = []
        warm_rss = None
        started = time.perf_counter()
        for size in sizes:
            done += asyncio.run(wave(url, size))
            if warm_rss is None and len(done) >= args.soak // 10:
                warm_rss = rss_mb(proc.pid)
        end_rss = rss_mb(proc.pid)
        results["soak"] = {**summary(done, time.perf_counter() - started),
                           "rss_after_warmup_mb": round(warm_rss or 0, 1),
                           "rss_end_mb": round(end_rss, 1),
                           "growth_pct": round(100 * (end_rss - (warm_rss or end_rss)) / (warm_rss or end_rss), 1)}
        proc.terminate()
        proc.wait(timeout=10)

        # 3. fault mix: primary and fallback both fail 10 % of calls
        proc, url = run_serve(project(tmp / "faulty", faulty, faulty))
        procs.append(proc)
        started = time.perf_counter()
        faults: list[dict[str, object]] = []
        for _ in range(args.faults // 200):
            faults += asyncio.run(wave(url, 200))
        results["fault_mix"] = summary(faults, time.perf_counter() - started)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "load.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
