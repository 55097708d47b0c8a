"""`serve --workers 2` against one worker, with the CPU time of every process on the machine's side.

    python bench/workers_bench.py [--rounds 2] [--conversations 3000] [--concurrent 500]

One fake OpenAI endpoint (20 chunks x 20 ms); `polybot serve` with 1 then 2 workers (alternating
by round); the load generator (this process) runs `--conversations` Poe queries, `--concurrent`
at a time. For each run: throughput, TTFT p50, and the CPU seconds (user + system, from /proc)
used during the run by the load generator, the fake provider and each server process. On a
2-core machine the three share the cores, so the CPU split shows what a second worker can gain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
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
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def tree(pid: int) -> list[int]:
    """pid and its children (uvicorn's worker processes)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in children:
            found += tree(int(child))
    return found


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(url: str, total: int, concurrent: int) -> tuple[float, int, float]:
    limits = httpx.Limits(max_connections=concurrent + 10, max_keepalive_connections=concurrent + 10)
    gate = asyncio.Semaphore(concurrent)
    ttfts: list[float] = []
    failed = 0

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal failed
        async with gate:
            started = time.perf_counter()
            first, done = None, False
            try:
                async with client.stream("POST", url, json=BODY, headers={"Authorization": "Bearer x"}) as r:
                    async for line in r.aiter_lines():
                        if line == "event: text" and first is None:
                            first = time.perf_counter() - started
                        elif line == "event: done":
                            done = True
            except httpx.TransportError:
                pass
            if first is None or not done:
                failed += 1
            else:
                ttfts.append(first)

    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(client) for _ in range(total)))
        return time.perf_counter() - started, failed, statistics.median(ttfts) if ttfts else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--conversations", type=int, default=3000)
    parser.add_argument("--concurrent", type=int, default=500)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="polybot-workers-"))
    fake_port = free_port()
    fake = start([PY, str(HERE / "peers" / "fake_openai.py"), str(fake_port), "20", "20"], fake_port)
    root = project(tmp / "w", f"http://127.0.0.1:{fake_port}/v1")
    runs: dict[str, list[dict[str, float]]] = {"1": [], "2": []}
    try:
        for r in range(args.rounds):
            for workers in (("1", "2") if r % 2 == 0 else ("2", "1")):
                port = free_port()
                proc = start([PY, "-m", "polybot", "serve", "--allow-without-key", "--host", "127.0.0.1",
                              "--port", str(port), "--project", str(root), "--workers", workers],
                             port, {"FAKE_KEY": "k"})
                try:
                    url = f"http://127.0.0.1:{port}/Stream"
                    time.sleep(1.0 if workers == "2" else 0.2)  # let every worker start listening
                    asyncio.run(run(url, 50, 50))  # warm-up: each worker imports the SDK on first use
                    pids = tree(proc.pid)
                    before = {p: cpu_s(p) for p in pids} | {fake.pid: cpu_s(fake.pid)}
                    gen_before = self_cpu()
                    seconds, failed, ttft = asyncio.run(run(url, args.conversations, args.concurrent))
                    servers = {p: round(cpu_s(p) - before[p], 2) for p in pids}
                    row = {"seconds": round(seconds, 2), "per_second": round(args.conversations / seconds, 1),
                           "failed": failed, "ttft_p50_s": round(ttft, 3),
                           "cpu_server_processes_s": list(servers.values()),
                           "cpu_servers_total_s": round(sum(servers.values()), 2),
                           "cpu_fake_provider_s": round(cpu_s(fake.pid) - before[fake.pid], 2),
                           "cpu_load_generator_s": round(self_cpu() - gen_before, 2)}
                    print(f"round {r} workers={workers}: {row}", file=sys.stderr)
                    runs[workers].append(row)
                finally:
                    proc.terminate()
                    proc.wait(timeout=15)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    med = {w: {k: statistics.median(float(x[k]) for x in rows) for k in
               ("seconds", "per_second", "ttft_p50_s", "cpu_servers_total_s", "cpu_fake_provider_s",
                "cpu_load_generator_s")} for w, rows in runs.items()}
    results = {"conversations": args.conversations, "concurrent": args.concurrent, "runs": runs, "median": med,
               "throughput_2_over_1": med["2"]["per_second"] / med["1"]["per_second"]}
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "workers.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
