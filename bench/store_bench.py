"""What the reply store adds: added latency at a steady 100 requests/s, `polybot serve` with the store
off and on, side by side in one run (alternating order each round).

    python bench/store_bench.py [--rounds 3] [--rate 100] [--seconds 10]

latency_bench.py's open-loop load and measure: each request's latency is the time to its last
event; a server's added p50 / p99 is its p50 / p99 minus the fake provider's own in the same round.
"off" has `[logs] enabled = false`; "store" keeps every reply (serve's default: no message text);
"content" keeps message text too. After each run the store's row count is checked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency_bench import measure, pct
from stream_bench import PY, free_port, project, start

HERE = Path(__file__).resolve().parent
VARIANTS = {"off": "[logs]\nenabled = false\n", "store": "", "content": "[logs]\ncontent = true\n"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="polybot-store-"))
    fake_port = free_port()
    fake = start([PY, str(HERE / "peers" / "fake_openai.py"), str(fake_port), str(args.chunks), "0"], fake_port)
    provider_url = f"http://127.0.0.1:{fake_port}/v1"
    roots = {}
    for name, settings in VARIANTS.items():
        (tmp / name).mkdir()
        (tmp / name / "polybot.toml").write_text(settings)
        roots[name] = project(tmp / name, provider_url)  # builds with polybot.toml in place
    added: dict[str, dict[str, list[float]]] = {w: {"p50_ms": [], "p99_ms": []} for w in VARIANTS}
    own: dict[str, list[float]] = {"p50_ms": [], "p99_ms": []}
    failed = {w: 0 for w in VARIANTS}
    stored = {w: 0 for w in VARIANTS}
    try:
        for r in range(args.rounds):
            direct, _ = asyncio.run(measure(provider_url + "/chat/completions", True, args.rate, args.seconds))
            base50, base99 = pct(direct, 0.5), pct(direct, 0.99)
            own["p50_ms"].append(1000 * base50)
            own["p99_ms"].append(1000 * base99)
            order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
            for who in order:
                port = free_port()
                cmd = [PY, "-m", "polybot", "serve", "--allow-without-key", "--host", "127.0.0.1", "--port",
                       str(port), "--project", str(roots[who])]
                proc = start(cmd, port, {"FAKE_KEY": "k"})
                try:
                    # 2 s at the rate first, not measured: one-time costs (the store's writer imports
                    # genai-prices, 0.35-1.5 s of CPU, when it prices the first reply) stay out of the steady state.
                    asyncio.run(measure(f"http://127.0.0.1:{port}/Stream", False, args.rate, 2))
                    lat, bad = asyncio.run(measure(f"http://127.0.0.1:{port}/Stream", False, args.rate, args.seconds))
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
                failed[who] += bad
                db = roots[who] / ".polybot" / "logs.db"
                if db.exists():
                    with sqlite3.connect(db) as conn:
                        stored[who] = conn.execute("SELECT count(*) FROM replies").fetchone()[0]
                added[who]["p50_ms"].append(1000 * (pct(lat, 0.5) - base50))
                added[who]["p99_ms"].append(1000 * (pct(lat, 0.99) - base99))
                print(f"round {r} {who}: +{added[who]['p50_ms'][-1]:.2f} ms p50, +{added[who]['p99_ms'][-1]:.2f} ms "
                      f"p99 (provider {1000 * base50:.2f} / {1000 * base99:.2f} ms), {stored[who]} rows stored",
                      file=sys.stderr)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    results = {"rate": args.rate, "seconds": args.seconds, "chunks": args.chunks, "rounds": args.rounds,
               "provider_ms": {k: statistics.median(v) for k, v in own.items()},
               "added_ms": {w: {k: statistics.median(v) for k, v in d.items()} for w, d in added.items()},
               "store_minus_off_p99_ms": {w: statistics.median(a - b for a, b in zip(added[w]["p99_ms"],
                                                                                   added["off"]["p99_ms"],
                                                                                   strict=True))
                                          for w in ("store", "content")},
               "rows_stored": stored, "failed": failed}
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "store.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
