"""Test-suite benchmark (issue #12: "the suite <= 45 s on this 2-core machine").

    python bench/suite_bench.py [--rounds 3] [--ref COMMIT]

Runs the README's test command (`python3 -m pytest`, with the addopts pyproject.toml sets) in this
checkout, and with --ref also in a worktree of COMMIT, alternating, so that both see the same
machine. Reports each run's wall time and CPU (user + sys of pytest and everything it started),
then the medians and the ratio. The worktree's own polybot is put first on PYTHONPATH, so that its
subprocesses run its code, not this checkout's.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_suite(root: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, pytest's last line) of one run of the suite in `root`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider"], cwd=root, env=env,
                          capture_output=True, text=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = done.stdout.strip().splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return wall, cpu, "; ".join([lines[-1] if lines else f"exit {done.returncode}", *failed])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ref", help="a commit to run side by side with this checkout")
    args = parser.parse_args()
    trees: list[tuple[str, Path, dict[str, str]]] = [("this checkout", REPO, dict(os.environ))]
    scratch = tempfile.TemporaryDirectory(prefix="suite-bench-")
    if args.ref:
        tree = Path(scratch.name) / "ref"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), args.ref], cwd=REPO, check=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))}
        trees.insert(0, (args.ref, tree, env))
    results: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in trees}
    try:
        for round_ in range(1, args.rounds + 1):
            for name, root, env in trees:
                wall, cpu, last = run_suite(root, env)
                results[name].append((wall, cpu))
                print(f"round {round_}  {name:>14}: wall {wall:5.1f} s  cpu {cpu:5.1f} s  ({last})", flush=True)
    finally:
        if args.ref:
            subprocess.run(["git", "worktree", "remove", "--force", str(trees[0][1])], cwd=REPO, check=False)
        scratch.cleanup()
    medians = {name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
               for name, runs in results.items()}
    for name, (wall, cpu) in medians.items():
        print(f"median  {name:>14}: wall {wall:5.1f} s  cpu {cpu:5.1f} s")
    if args.ref:
        (ref_wall, ref_cpu), (wall, cpu) = medians[args.ref], medians["this checkout"]
        print(f"this checkout / {args.ref}: wall {wall / ref_wall:.2f}x  cpu {cpu / ref_cpu:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
