"""Build benchmark (issue: Bot projects): 1000 generated bots, polybot vs the hand-written floor.

    python bench/build_bench.py [--bots 1000] [--rounds 5]

The floor is the least code that does the same work by hand: parse each bot.toml with tomllib,
validate it with a pydantic model, render each template in one sandboxed Jinja environment, write
build/prompts/<Name>.md and a JSON manifest. Each round runs the floor, a cold polybot build (empty
output folder) and a polybot rebuild with nothing changed, in a fresh process each, alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
PROVIDERS = ("openai", "anthropic", "gemini")

FLOOR = r'''
import json, sys, time, tomllib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from jinja2 import ChoiceLoader, DictLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field

class Bot(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str
    model: str | None = None
    description: str = ""
    version: str = "1.0.0"
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0)
    params: dict[str, Any] = {}
    vars: dict[str, Any] = {}
    fallback: list[dict[str, Any]] = []
    poe: dict[str, Any] = {}

started = time.perf_counter()
root, out = Path(sys.argv[1]), Path(sys.argv[2])
shared = {p.name: p.read_text() for p in (root / "bots" / "_shared").glob("*.j2")}
env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
now = datetime(2025, 1, 1, tzinfo=timezone.utc)
manifest = {}
(out / "prompts").mkdir(parents=True, exist_ok=True)
for folder in sorted((root / "bots").iterdir()):
    if folder.name.startswith("_"):
        continue
    config = Bot.model_validate(tomllib.loads((folder / "bot.toml").read_text()))
    prompt = (folder / "system.md.j2").read_text()
    env.loader = ChoiceLoader([DictLoader({"system.md.j2": prompt}), DictLoader(shared)])
    text = env.from_string(prompt).render(bot={"name": folder.name, "description": config.description},
                                          vars=config.vars, now=now, messages=[], params={})
    (out / "prompts" / f"{folder.name}.md").write_text(text)
    manifest[folder.name] = {**config.model_dump(mode="json"), "template": prompt}
(out / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=2))
print(time.perf_counter() - started)
'''

POLYBOT = r'''
import sys, time
from pathlib import Path
from polybot.build import build  # imports are outside the timing, as they are for the floor
started = time.perf_counter()
result = build(Path(sys.argv[1]), Path(sys.argv[2]))
print(result.rendered)
print(time.perf_counter() - started)
'''


def generate(root: Path, n: int) -> None:
    (root / "bots" / "_shared").mkdir(parents=True)
    (root / "bots" / "_shared" / "style.j2").write_text(
        "Be {{ vars.tone }}. Today is {{ now.strftime('%A') }}.\n")
    for i in range(n):
        folder = root / "bots" / f"Bot{i:04d}"
        folder.mkdir()
        provider = PROVIDERS[i % 3]
        fallback = PROVIDERS[(i + 1) % 3]
        (folder / "bot.toml").write_text(
            f'provider = "{provider}"\ndescription = "Bot number {i}"\ntemperature = 0.{i % 10}\n'
            f'max_tokens = {500 + i}\n\n[vars]\ntone = "kind"\ntopic = "topic {i}"\n\n'
            f'[[fallback]]\nprovider = "{fallback}"\n\n[poe]\nintroduction_message = "Hi from Bot{i:04d}"\n')
        (folder / "system.md.j2").write_text(
            "You are {{ bot.name }}: {{ bot.description }}.\nYou know about {{ vars.topic }}.\n"
            '{% include "style.j2" %}\n')


rendered: list[int] = []


def timed(code: str, root: Path, out: Path) -> float:
    done = subprocess.run([PY, "-c", code, str(root), str(out)], capture_output=True, text=True, check=True)
    lines = done.stdout.strip().splitlines()
    if len(lines) > 1:
        rendered.append(int(lines[-2]))
    return float(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bots", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="polybot-build-"))
    try:
        generate(tmp / "project", args.bots)
        partial = tmp / "project" / "bots" / "_shared" / "other.j2"
        partial.write_text("Be other.\n")
        for i in range(0, args.bots, 10):  # every tenth bot includes a second partial too
            prompt = tmp / "project" / "bots" / f"Bot{i:04d}" / "system.md.j2"
            prompt.write_text(prompt.read_text() + '{% include "other.j2" %}\n')
        old = time.time_ns() - 3600 * 10**9  # sources last changed an hour ago: their stats are trusted
        for path in (tmp / "project").rglob("*"):
            os.utime(path, ns=(old, old))
        floor, cold, warm, edited = [], [], [], []
        for r in range(args.rounds):
            shutil.rmtree(tmp / "floor", ignore_errors=True)
            floor.append(timed(FLOOR, tmp / "project", tmp / "floor"))
            shutil.rmtree(tmp / "build", ignore_errors=True)
            cold.append(timed(POLYBOT, tmp / "project", tmp / "build"))
            warm.append(timed(POLYBOT, tmp / "project", tmp / "build"))
            partial.write_text(f"Be other {r}.\n")
            edited.append(timed(POLYBOT, tmp / "project", tmp / "build"))
            assert rendered[-1] == args.bots // 10, rendered[-1]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    f, c, w = statistics.median(floor), statistics.median(cold), statistics.median(warm)
    e = statistics.median(edited)
    results = {"bots": args.bots, "rounds": args.rounds, "floor_ms": f * 1000, "cold_ms": c * 1000,
               "no_change_ms": w * 1000, "edited_partial_ms": e * 1000, "edited_partial_rendered": args.bots // 10,
               "cold_ratio": c / f, "no_change_ratio": w / f, "edited_partial_ratio": e / f}
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "build.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
