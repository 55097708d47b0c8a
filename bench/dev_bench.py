"""Dev-loop benchmark (issue #25, fleet scale): `polybot dev` over 1000 generated bots.

    python bench/dev_bench.py [--bots 1000] [--rounds 2] [--edits 5]

Measures, with a real `polybot dev` process driven over HTTP (httpx, Poe queries on 127.0.0.1):
spawn -> first reply of a bot; then, for each kind of edit (a bot's prompt, its bot.toml, the shared
partial every prompt includes, providers.toml), write -> the first reply that shows the edit
(polling the served bot). Also counts the lines of the start banner. Results in bench/out/dev.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
PY = sys.executable
BODY = {"version": "1.2", "type": "query", "query": [{"role": "user", "content": "hi"}],
        "user_id": "u", "conversation_id": "c", "message_id": "m"}


def providers(full: bool) -> str:
    return f'[mine]\nkind = "echo"\ndefault_model = "echo"\nparams = {{ echo = "{"full" if full else "last"}" }}\n'


def generate(root: Path, n: int) -> None:
    (root / "bots" / "_shared").mkdir(parents=True)
    (root / "providers.toml").write_text(providers(True))
    (root / "bots" / "_shared" / "style.j2").write_text("Be {{ vars.tone }}. style 0\n")
    for i in range(n):
        folder = root / "bots" / f"Bot{i:04d}"
        folder.mkdir()
        (folder / "bot.toml").write_text(f'provider = "mine"\ndescription = "Bot number {i}"\n\n'
                                         f'[vars]\ntone = "kind"\ntopic = "topic 0"\n')
        (folder / "system.md.j2").write_text("You are {{ bot.name }}, on {{ vars.topic }}. prompt 0\n"
                                             '{% include "style.j2" %}\n')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reply(client: httpx.Client, port: int, bot: str) -> str:
    r = client.post(f"http://127.0.0.1:{port}/{bot}", json=BODY, headers={"Authorization": "Bearer x"})
    if r.status_code != 200:
        return ""
    return "".join(json.loads(line[6:]).get("text", "") for line in r.text.splitlines()
                   if line.startswith("data: ") and line[6:].startswith("{"))


def until(client: httpx.Client, port: int, bot: str, shows: Callable[[str], bool], started: float) -> float:
    deadline = started + 20
    while not shows(text := reply(client, port, bot)):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{bot}: the edit was not served within 20 s; it answers {text!r}")
        time.sleep(0.002)
    return time.perf_counter() - started


def one_run(root: Path, edits: int) -> dict[str, object]:
    port = free_port()
    log = root.parent / "dev.log"
    started = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen([PY, "-m", "polybot", "dev", "--port", str(port), "--project", str(root)],
                                stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    samples: dict[str, list[float]] = {"prompt": [], "bot.toml": [], "partial": [], "providers.toml": []}
    try:
        with httpx.Client(timeout=10) as client:
            deadline = started + 60
            while True:
                try:
                    if "prompt 0" in reply(client, port, "Bot0500"):
                        break
                except httpx.TransportError:
                    pass
                if time.perf_counter() > deadline or proc.poll() is not None:
                    raise RuntimeError("dev did not answer within 60 s")
                time.sleep(0.005)
            first = time.perf_counter() - started
            time.sleep(3)  # let the background compile finish, as a developer's first edit would
            for i in range(1, edits + 1):
                for kind in samples:
                    time.sleep(0.5)
                    t = time.perf_counter()
                    if kind == "prompt":
                        (root / "bots/Bot0100/system.md.j2").write_text(
                            f"You are {{{{ bot.name }}}}, on {{{{ vars.topic }}}}. prompt {i}\n"
                            '{% include "style.j2" %}\n')
                        samples[kind].append(until(client, port, "Bot0100", lambda s, i=i: f"prompt {i}" in s, t))
                    elif kind == "bot.toml":
                        (root / "bots/Bot0200/bot.toml").write_text(
                            f'provider = "mine"\ndescription = "Bot number 200"\n\n[vars]\ntone = "kind"\n'
                            f'topic = "topic {i}"\n')
                        samples[kind].append(until(client, port, "Bot0200", lambda s, i=i: f"topic {i}" in s, t))
                    elif kind == "partial":
                        (root / "bots/_shared/style.j2").write_text(f"Be {{{{ vars.tone }}}}. style {i}\n")
                        samples[kind].append(until(client, port, "Bot0300", lambda s, i=i: f"style {i}" in s, t))
                    else:  # echo only the message, then the whole request again (which the others check)
                        for full in (False, True):
                            (root / "providers.toml").write_text(providers(full))
                            samples[kind].append(until(client, port, "Bot0400",
                                                       lambda s, full=full: ("[system]" in s) == full, t))
                            time.sleep(0.5)
                            t = time.perf_counter()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    banner = [line for line in log.read_text().splitlines() if not line.startswith("reply:")]
    banner = banner[:banner.index(next(line for line in banner if line.startswith("playground:"))) + 1]
    return {"first_reply_s": first, "banner_lines": len(banner), **{k: v for k, v in samples.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bots", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--edits", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="polybot-dev-"))
    runs = []
    try:
        for _ in range(args.rounds):
            shutil.rmtree(tmp / "project", ignore_errors=True)
            generate(tmp / "project", args.bots)
            runs.append(one_run(tmp / "project", args.edits))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results: dict[str, object] = {"bots": args.bots, "rounds": args.rounds, "edits": args.edits,
                                  "first_reply_s": statistics.median(float(r["first_reply_s"]) for r in runs),  # type: ignore[arg-type]
                                  "banner_lines": runs[0]["banner_lines"]}
    for kind in ("prompt", "bot.toml", "partial", "providers.toml"):
        every = [x for r in runs for x in r[kind]]  # type: ignore[attr-defined]
        results[f"{kind}_median_ms"] = statistics.median(every) * 1000
        results[f"{kind}_max_ms"] = max(every) * 1000
    results["runs"] = runs
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "dev.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
