"""Two `polybot serve` processes sharing one real redis-server: under 200 concurrent requests the daily
spend cap holds (each reply reserves the most it can cost before it starts and settles to what it
cost after it, so the replies in flight see each other), the counter ends at the true total; Redis
killed mid-run fails open (one warning per process), and no reply hangs (docs/limits.md)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import redis as redis_py

from polybot.cli import main
from polybot.redisconn import DOWN_FOR
from tests.e2e.helpers import polybot_process
from tests.redisproc import redis_server

#: Echo at 0.01 USD a token: "ab c d" is (1 + 3) in + 3 out = 7 tokens, 0.07 USD; the cap is 20 of them.
#: A reply reserves as much: its prompt, "Hi." and "ab c d", is estimated at 9 // 3 + 1 = 4 tokens,
#: and max_tokens = 3 (echo answers 3 words whatever it is), so what it reserves is what it costs.
MESSAGE = "ab c d"
REPLY_COST = 0.07
CAP_REPLIES = 20
SETTINGS = f'''[limits]
bot_spend_per_day = {CAP_REPLIES * REPLY_COST - 0.01:.2f}

[limits.prices."echo/echo"]
input = 10000
output = 10000
'''


def project(root: Path) -> Path:
    root.mkdir()
    (root / "polybot.toml").write_text(SETTINGS)
    for name in ("Burst", "Window", "Outage"):
        (root / "bots" / name).mkdir(parents=True)
        (root / "bots" / name / "bot.toml").write_text('provider = "echo"\nmax_tokens = 3\n')
        (root / "bots" / name / "system.md.j2").write_text("Hi.")
    assert main(["build", "--project", str(root)]) == 0
    return root


async def burst(bases: list[str], bot: str, count: int, in_flight: int | None = None,
                during: float | None = None, action: object = None) -> list[int]:
    """`count` /v1 requests spread over `bases`, at most `in_flight` at once; their statuses."""
    gate = asyncio.Semaphore(in_flight or count)
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(timeout=15, limits=limits) as client:
        async def one(i: int) -> int:
            async with gate:
                response = await client.post(bases[i % len(bases)] + "/v1/chat/completions", json={
                    "model": bot, "messages": [{"role": "user", "content": MESSAGE}]})
                if response.status_code == 429:
                    assert int(response.headers["retry-after"]) >= 1
                    assert response.json()["error"]["code"] == "insufficient_quota"
                return response.status_code

        return list(await asyncio.gather(*(one(i) for i in range(count))))


def spent(url: str, bot: str) -> float:
    """What the bot's spend counter holds today."""
    client = redis_py.Redis.from_url(url)
    try:
        value = client.get(f"polybot:spend:bot:{bot}:{time.strftime('%Y-%m-%d', time.gmtime())}")
    finally:
        client.close()
    return float(value) if value is not None else 0.0


def test_two_serve_processes_share_the_cap(tmp_path: Path) -> None:
    root = project(tmp_path / "p")
    with redis_server(tmp_path) as redis:
        env = {"POLYBOT_REDIS_URL": redis.url}
        with polybot_process("serve", "--allow-without-key", project=root, env=env) as (one, out_one), \
                polybot_process("serve", "--allow-without-key", project=root, env=env) as (two, out_two):
            # 200 at once: each check reserves the reply's 0.07 before it starts (one Lua script, so
            # no two checks interleave), and the 21st sees 20 x 0.07 reserved, over the 1.39 cap. The
            # reservations are exact, so exactly 20 are answered, however many are in flight.
            statuses = asyncio.run(burst([one, two], "Burst", 200))
            answered = statuses.count(200)
            assert statuses.count(429) == 200 - answered
            windowed = asyncio.run(burst([one, two], "Window", 200, in_flight=16)).count(200)
            print(f"overspend: 200 at once {answered - CAP_REPLIES} replies, 16 in flight "
                  f"{windowed - CAP_REPLIES} replies, over a cap of {CAP_REPLIES}")
            if not any("is unreachable" in line for line in out_one + out_two):
                assert answered == windowed == CAP_REPLIES, (answered, windowed)
                # The counters end at the true total: every reply settled to what it cost.
                assert abs(spent(redis.url, "Burst") - answered * REPLY_COST) < 1e-6
                assert abs(spent(redis.url, "Window") - windowed * REPLY_COST) < 1e-6
            else:  # a loaded machine timed a Redis call out: those replies were answered unchecked (open)
                assert answered <= 200 and windowed <= 200
            # The cap holds afterwards on both processes (once Redis answers in time: a loaded machine
            # may have timed a call out, and an open policy answers for DOWN_FOR seconds after that).
            deadline = time.monotonic() + 3 * DOWN_FOR
            while (after := asyncio.run(burst([one, two], "Burst", 4))) != [429] * 4 and time.monotonic() < deadline:
                time.sleep(DOWN_FOR / 4)
            assert after == [429] * 4
            # Redis killed mid-run: fail open (the default), every request ends, none hangs.
            started = time.monotonic()

            async def outage() -> list[int]:
                requests = asyncio.ensure_future(burst([one, two], "Outage", 200, in_flight=20))
                await asyncio.sleep(0.05)
                redis.kill()
                return await requests

            statuses = asyncio.run(outage())
            assert set(statuses) <= {200, 429} and statuses.count(200) >= CAP_REPLIES
            assert time.monotonic() - started < 20
            assert asyncio.run(burst([one, two], "Burst", 4)) == [200] * 4  # open: answered unchecked
    for output in (out_one, out_two):
        warnings = [line for line in output if "is unreachable" in line]
        back = [line for line in output if "answers again" in line]
        assert len(warnings) <= len(back) + 1, warnings  # once per outage, not per request
        replies = [json.loads(line) for line in output if line.startswith('{"event": "reply"')]
        assert any(r["outcome"] == "limited" and r["attempts"] == 0 for r in replies)
    assert sum("is unreachable" in line for line in out_one + out_two) >= 1

