"""`polybot test`: each bot's `tests.toml`, run through the same path as a Poe query (SPEC §8).

Replies come from recordings (polybot/recordings.py), so the tests run offline in CI; `--record`
calls the real providers and writes them. Every failure is one located line,
`bots/<Name>/tests.toml:LINE: ...`.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import escape, quoteattr

from pydantic import BaseModel, ConfigDict, Field, field_validator

from polybot.compiler import Compiler
from polybot.config import locate, parse_toml, validate_model
from polybot.errors import PolybotError, Problem, did_you_mean, sorted_problems

TESTS_FILE = "tests.toml"


class BotTest(BaseModel):
    """One `[[test]]` of tests.toml."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    history: list[tuple[Literal["user", "bot"], str]] = []
    ask: str
    params: dict[str, Any] = {}
    prompt_contains: list[str] = []
    contains: list[str | list[str]] = []  # a list inside: any one of them
    not_contains: list[str] = []
    matches: str | None = None
    #: A criterion in words, graded by the judge bot named in bot.toml's `[test] judge`.
    judge: str | None = None

    @field_validator("matches")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @property
    def calls_provider(self) -> bool:
        return bool(self.contains or self.not_contains or self.matches is not None or self.judge)


class TestsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    test: list[BotTest] = Field(default_factory=list)


@dataclass(slots=True)
class Outcome:
    bot: str
    name: str
    line: int | None
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures


@dataclass(slots=True)
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)  # unused recordings, file errors
    written: list[Path] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(not o.passed for o in self.outcomes)


def load_tests(path: Path, rel: str) -> tuple[list[tuple[BotTest, int | None]], list[Problem]]:
    text = path.read_text("utf-8")
    data, problems = parse_toml(text, rel)
    if data is None:
        return [], problems
    parsed, found = validate_model(TestsFile, data, text, rel)
    if parsed is None:
        return [], problems + found
    return [(t, locate(text, ("test", i))) for i, t in enumerate(parsed.test)], problems


def run_tests(root: Path, names: Sequence[str] = (), *, record: bool = False,
              compiler: Compiler | None = None) -> Report:
    """Run the tests of `names` (default: every bot with a tests.toml); `compiler`: one that just
    compiled these sources, whose bots are reused."""
    from polybot.recordings import RECORDINGS_DIR, RecordingPool, Session
    from polybot.runtime import Runtime

    compiler = compiler or Compiler(root)
    compiled = compiler.compile()
    pool = RecordingPool(compiled.project.providers, Session(root, record))
    runtimes = {bot.name: Runtime(bot.spec, compiler.library, pool, bot.hooks, root)
                for bot in compiled.bots if bot.spec is not None}
    report = Report()
    wanted = list(names) or sorted(p.parent.name for p in (root / "bots").glob(f"*/{TESTS_FILE}"))
    for name in wanted:
        if not (root / "bots" / name).is_dir():
            known = [p.name for p in (root / "bots").iterdir() if p.is_dir() and not p.name.startswith("_")]
            raise PolybotError([f"no bot named {name!r}{did_you_mean(name, known)}"])
    bad = [p for p in compiled.problems if any(p.path.startswith(f"bots/{n}/") for n in wanted)]
    if bad or compiled.problems and (not names or any(n not in runtimes for n in wanted)):
        raise PolybotError(sorted_problems(bad or compiled.problems))

    async def run_all() -> None:
        try:
            for name in wanted:
                rel = f"bots/{name}/{TESTS_FILE}"
                path = root / rel
                if not path.is_file():
                    report.problems.append(Problem(rel, None, f"missing: {name} has no tests (add {rel})"))
                    continue
                tests, problems = load_tests(path, rel)
                report.problems += problems
                session = Session(root / "bots" / name / RECORDINGS_DIR, record)
                pool.session = session
                runtime = runtimes[name]
                judge = runtimes.get(runtime.spec.judge or "")
                if runtime.spec.judge and judge is None:
                    hint = did_you_mean(runtime.spec.judge, runtimes)
                    report.problems.append(Problem(f"bots/{name}/bot.toml", None,
                                                   f"[test] judge: no bot named {runtime.spec.judge!r}{hint}"))
                for test, line in tests:
                    report.outcomes.append(await _run_one(runtime, test, name, line, session, judge))
                report.written += session.written
                for stale in session.unused():
                    if record:
                        stale.unlink()
                    else:
                        report.problems.append(Problem(stale.relative_to(root).as_posix(), None,
                                                       "unused recording (its request changed or its test is "
                                                       f"gone); `polybot test {name} --record` removes it"))
        finally:
            await pool.aclose()

    asyncio.run(run_all())
    return report


async def _ask(runtime: Any, request: Any) -> tuple[str, str | None]:
    """The reply's text (replacements applied) and the error that ended it, if any."""
    import fastapi_poe as fp

    from polybot.reliability import ToolActivity

    text = ""
    error = None
    async for event in runtime.respond(request):
        if isinstance(event, ToolActivity) or isinstance(event, fp.MetaResponse):
            continue
        if isinstance(event, fp.ErrorResponse):
            error = event.text
        elif event.is_replace_response:
            text = event.text
        else:
            text += event.text
    return text, error


JUDGE_PROMPT = """Grade a chatbot's reply against one criterion.

Criterion: {criterion}

The user asked:
{ask}

The reply:
{reply}

Answer with PASS or FAIL on the first line, then one sentence saying why."""


async def _run_one(runtime: Any, test: BotTest, bot: str, line: int | None, session: Any,
                   judge: Any = None) -> Outcome:
    import fastapi_poe as fp

    from polybot.conversation import query_request
    from polybot.runtime import chosen_params

    started = time.monotonic()
    outcome = Outcome(bot, test.name or test.ask, line)
    query = [fp.ProtocolMessage(role=role, content=text) for role, text in test.history]
    query.append(fp.ProtocolMessage(role="user", content=test.ask, parameters=dict(test.params)))
    request = query_request(query, user_id="polybot-test", message_id="polybot-test",
                            conversation_id=f"test-{uuid.uuid5(uuid.NAMESPACE_URL, bot + (test.name or ''))}")
    if test.prompt_contains:
        try:
            prompt = runtime.render_prompt(request, chosen_params(runtime.spec, request))
        except Exception as exc:  # noqa: BLE001 - a located template error, reported as the failure
            outcome.failures.append(f"the prompt does not render: {exc}")
            return outcome
        for needle in test.prompt_contains:
            if needle not in prompt:
                outcome.failures.append(f"the rendered prompt does not contain {needle!r}")
    if test.calls_provider:
        missing_before = len(session.missing)
        text, error = await _ask(runtime, request)
        verdict = None
        if test.judge and judge is not None and error is None and len(session.missing) == missing_before:
            ask = query_request([fp.ProtocolMessage(role="user", content=JUDGE_PROMPT.format(
                criterion=test.judge, ask=test.ask, reply=text))], user_id="polybot-test",
                conversation_id=request.conversation_id + "-judge", message_id="polybot-judge")
            verdict, error = await _ask(judge, ask)
        if len(session.missing) > missing_before:
            outcome.failures.append(f"no recording of its provider request ({session.missing[-1]}); record it "
                                    f"with `polybot test {bot} --record` (calls the real provider)")
        elif error is not None:
            outcome.failures.append(f"the reply ended in an error: {error}")
        else:
            _check_reply(test, text, outcome)
            if verdict is not None and not verdict.lstrip().upper().startswith("PASS"):
                reason = verdict.strip().splitlines()[-1] if verdict.strip() else "no verdict"
                outcome.failures.append(f"the judge says it does not meet {test.judge!r}: {reason}")
            elif test.judge and judge is None:
                outcome.failures.append("has a `judge` check but bot.toml names no [test] judge bot")
    outcome.seconds = time.monotonic() - started
    return outcome


def _check_reply(test: BotTest, text: str, outcome: Outcome) -> None:
    short = text if len(text) <= 120 else text[:117] + "..."
    for needle in test.contains:
        options = [needle] if isinstance(needle, str) else needle
        if not any(o in text for o in options):
            wanted = repr(options[0]) if len(options) == 1 else "one of " + ", ".join(map(repr, options))
            outcome.failures.append(f"the reply does not contain {wanted}: {short!r}")
    for needle in test.not_contains:
        if needle in text:
            outcome.failures.append(f"the reply contains {needle!r}: {short!r}")
    if test.matches is not None and not re.search(test.matches, text):
        outcome.failures.append(f"the reply does not match {test.matches!r}: {short!r}")


def junit(report: Report) -> str:
    """The report as JUnit XML, for CI dashboards."""
    cases = []
    for o in report.outcomes:
        body = "".join(f"<failure message={quoteattr(f)}>{escape(f)}</failure>" for f in o.failures)
        cases.append(f'  <testcase classname={quoteattr("bots." + o.bot)} name={quoteattr(o.name)} '
                     f'time="{o.seconds:.3f}">{body}</testcase>')
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name="polybot" tests="{len(report.outcomes)}" '
            f'failures="{report.failed}">\n' + "\n".join(cases) + "\n</testsuite>\n")


def print_report(report: Report, out: Any = None) -> None:
    out = out or sys.stdout
    for o in report.outcomes:
        print(f"{'PASS' if o.passed else 'FAIL'}  {o.bot}: {o.name}", file=out)
    for o in report.outcomes:
        for failure in o.failures:
            where = f"bots/{o.bot}/{TESTS_FILE}" + (f":{o.line}" if o.line else "")
            print(f"{where}: {o.name}: {failure}", file=sys.stderr)
    for problem in report.problems:
        print(str(problem), file=sys.stderr)
    passed = len(report.outcomes) - report.failed
    summary = f"{passed} passed, {report.failed} failed"
    if report.written:
        summary += f"; wrote {len(report.written)} recording{'s' if len(report.written) != 1 else ''}"
    print(summary, file=out)
