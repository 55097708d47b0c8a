"""`polybot build [--out DIR] [--check]`: validate every bot and write the build."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from polybot.build import build, display_path
from polybot.compiler import Compiler


@dataclass(frozen=True, slots=True)
class Options:
    project: Path
    out: Path | None = None
    check: bool = False


def run(options: Options) -> int:
    root: Path = options.project
    out: Path = (options.out if options.out is not None else root / "build").resolve()
    result = build(root, out, check=options.check)
    n = len(result.manifest.bots)
    rel = display_path(out, root)
    if options.check:
        print(f"{rel}/ is up to date ({n} bot{'' if n == 1 else 's'})")
        return check_bot_tests(root, result.compiler)
    else:
        print(f"built {n} bot{'' if n == 1 else 's'} into {rel}/ "
              f"({result.rendered} rendered, {n - result.rendered} unchanged)")
    return 0


def check_bot_tests(root: Path, compiler: Compiler) -> int:
    """`build --check` also runs every bot's tests.toml, offline from recordings (SPEC §8), on the
    bots the check just compiled (a fresh compile, so each carries its hooks) instead of a second compile."""
    from polybot.bottests import TESTS_FILE, print_report, run_tests

    if not any((root / "bots").glob(f"*/{TESTS_FILE}")):
        return 0
    report = run_tests(root, compiler=compiler)
    if report.failed or report.problems:
        print_report(report)
        return 1
    count = len(report.outcomes)
    print(f"bot tests pass ({count} test{'s' if count != 1 else ''})")
    return 0
