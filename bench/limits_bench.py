"""The latency a limit check adds to a reply: no limits, in-process counters, Redis, side by side.

    python bench/limits_bench.py [--rounds 5] [--replies 2000]

One echo bot's `Runtime.respond` (the whole reply path, no HTTP) with every cap set (requests per
minute, tokens per day, bot and project spend per day, so a reply is one check with its reservation and one settlement),
against the same bot with no `[limits]`, alternating rounds in one run. Redis: a redis-server
started on a free port of 127.0.0.1 (`--save '' --appendonly no`). Reported: the median reply time
of each mode and what it adds to no limits, per round and overall (median of rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fastapi_poe as fp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from polybot.cli import main as polybot  # noqa: E402
from polybot.config import LimitsSettings, ModelPrice, ProjectSettings  # noqa: E402
from polybot.manifest import load_manifest  # noqa: E402
from polybot.runtime import Runtime, runtimes_from_manifest  # noqa: E402

LIMITS = LimitsSettings(user_requests_per_minute=10**9, user_tokens_per_day=10**12, bot_spend_per_day=1e9,
                        project_spend_per_day=1e9, prices={"echo/echo": ModelPrice(input=1, output=1)})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def runtime(root: Path, limits: LimitsSettings | None, redis: str | None = None) -> Runtime:
    manifest = load_manifest(root / "build" / "manifest.json")
    if limits is not None:
        manifest = manifest.model_copy(update={"settings": ProjectSettings(limits=limits.model_copy(
            update={"redis": redis}))})
    return runtimes_from_manifest(manifest, root, {})[0]


async def replies(bot: Runtime, count: int) -> list[float]:
    times = []
    for i in range(count):
        request = fp.QueryRequest(version="1.2", type="query", user_id=f"u{i % 50}", conversation_id="c",
                                  message_id="m", query=[fp.ProtocolMessage(role="user", content="hello there")])
        started = time.perf_counter()
        async for _ in bot.respond(request):
            pass
        times.append(time.perf_counter() - started)
    return times


async def run(root: Path, redis_url: str, rounds: int, count: int) -> None:
    import logging

    logging.getLogger("polybot.reply").setLevel(logging.WARNING)
    modes = {"none": runtime(root, None), "in-process": runtime(root, LIMITS),
             "redis": runtime(root, LIMITS, redis_url)}
    for bot in modes.values():
        await replies(bot, 50)  # warm: imports, the Redis connection, the scripts
    medians: dict[str, list[float]] = {m: [] for m in modes}
    for r in range(rounds):
        order = list(modes) if r % 2 == 0 else list(reversed(modes))
        for mode in order:
            medians[mode].append(statistics.median(await replies(modes[mode], count)) * 1e6)
        base = medians["none"][-1]
        print(f"round {r + 1}: " + ", ".join(f"{m} {medians[m][-1]:.0f} µs (+{medians[m][-1] - base:.0f})"
                                             for m in modes))
    base = statistics.median(medians["none"])
    print("median of rounds: " + ", ".join(
        f"{m} {statistics.median(v):.0f} µs (+{statistics.median(v) - base:.0f})" for m, v in medians.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--replies", type=int, default=2000)
    args = parser.parse_args()
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("redis-server is not installed (Debian: apt-get install redis-server)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "bots" / "Echo").mkdir(parents=True)
        (root / "bots" / "Echo" / "bot.toml").write_text('provider = "echo"\n')
        (root / "bots" / "Echo" / "system.md.j2").write_text("Hi.")
        assert polybot(["build", "--project", str(root)]) == 0
        port = free_port()
        proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            asyncio.run(run(root, f"redis://127.0.0.1:{port}/0", args.rounds, args.replies))
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
