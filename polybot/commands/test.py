"""`polybot test [NAME...] [--record] [--junit PATH]`: run each bot's tests.toml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from polybot.bottests import junit, print_report, run_tests


@dataclass(frozen=True, slots=True)
class Options:
    project: Path
    names: list[str] = field(default_factory=list)
    record: bool = False
    junit: Path | None = None


def run(options: Options) -> int:
    root: Path = options.project
    report = run_tests(root, options.names, record=options.record)
    print_report(report)
    if options.junit:
        Path(options.junit).write_text(junit(report), "utf-8")
    return 1 if report.failed or report.problems else 0
