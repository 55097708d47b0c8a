"""Tool-round overhead: polybot's tool loop against a hand-written fastapi_poe + AsyncOpenAI loop.

    python bench/tool_bench.py [--rounds 3] [--conversations 200]

Both servers talk to the same fake provider (bench/peers/fake_openai_tools.py), which answers a
"plain" question at once and any other with one `get_time` call, then the answer. Conversations
run one after another (latency, not throughput). For each server, the cost of a tool round is the
median latency with one round minus the median latency with none; polybot's own added time per
round is that difference minus the peer's. Rounds alternate polybot / peer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from stream_bench import HERE, PY, free_port, start

QUESTION = {"version": "1.2", "type": "query", "user_id": "u", "conversation_id": "c", "message_id": "m"}


def project(root: Path, provider_url: str) -> Path:
    (root / "bots" / "Tools").mkdir(parents=True)
    (root / "providers.toml").write_text(f'[fake]\nkind = "openai"\napi_base = "{provider_url}"\n'
                                         'api_key_env = "FAKE_KEY"\ndefault_model = "m"\nmax_retries = 0\n')
    (root / "bots" / "Tools" / "bot.toml").write_text('provider = "fake"\ntools = ["get_time"]\n')
    (root / "bots" / "Tools" / "system.md.j2").write_text("You tell the time.\n")
    (root / "bots" / "Tools" / "hooks.py").write_text(
        'def get_time(zone: str) -> str:\n    """The time in a zone."""\n    return f"12:00 {zone}"\n')
    subprocess.run([PY, "-m", "polybot", "build", "--project", str(root)], check=True, capture_output=True)
    return root


async def latencies(url: str, text: str, n: int) -> list[float]:
    body = {**QUESTION, "query": [{"role": "user", "content": text}]}
    out = []
    async with httpx.AsyncClient(timeout=30) as client:
        for _ in range(n):
            started = time.perf_counter()
            async with client.stream("POST", url, json=body, headers={"Authorization": "Bearer x"}) as r:
                seen = [line async for line in r.aiter_lines()]
            assert "event: error" not in seen and any("noon" in line for line in seen), seen[-4:]
            out.append(time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conversations", type=int, default=200)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="polybot-tools-"))
    fake_port = free_port()
    fake = start([PY, str(HERE / "peers" / "fake_openai_tools.py"), str(fake_port)], fake_port)
    provider = f"http://127.0.0.1:{fake_port}/v1"
    root = project(tmp / "p", provider)
    servers = {
        "polybot": lambda port: [PY, "-m", "polybot", "serve", "--allow-without-key", "--host", "127.0.0.1",
                                 "--port", str(port), "--project", str(root)],
        "peer": lambda port: [PY, str(HERE / "peers" / "tool_peer.py"), str(port), provider],
    }
    paths = {"polybot": "/Tools", "peer": "/Tools"}
    samples: dict[str, dict[str, list[float]]] = {w: {"plain": [], "tool": []} for w in servers}
    try:
        for r in range(args.rounds):
            for who in (["polybot", "peer"] if r % 2 == 0 else ["peer", "polybot"]):
                port = free_port()
                proc = start(servers[who](port), port, {"FAKE_KEY": "k"})
                url = f"http://127.0.0.1:{port}{paths[who]}"
                try:
                    asyncio.run(latencies(url, "what time is it", 20))  # warm-up
                    for kind, text in (("plain", "plain: what time is it"), ("tool", "what time is it")):
                        samples[who][kind] += asyncio.run(latencies(url, text, args.conversations))
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    med = {w: {k: statistics.median(v) * 1000 for k, v in s.items()} for w, s in samples.items()}
    round_ms = {w: m["tool"] - m["plain"] for w, m in med.items()}
    results = {"median_ms": med, "tool_round_ms": round_ms,
               "polybot_added_ms_per_round": round_ms["polybot"] - round_ms["peer"],
               "conversations": args.conversations, "rounds": args.rounds}
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "tools.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
