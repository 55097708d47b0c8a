"""`polybot test` (SPEC §8): tests.toml beside each bot, replies from recordings, located failures."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from polybot.bottests import junit, run_tests
from polybot.commands import test as test_command
from tests.fakes.openai_wire import FakeOpenAI
from tests.fakes.wire import Reply, running
from tests.test_runtime import make_bot

ECHO_TESTS = '''[[test]]
name = "echoes"
ask = "What is 2 + 2?"
prompt_contains = ["You repeat"]
contains = ["2 + 2", ["4", "What"]]
not_contains = ["5"]
matches = '\\d \\+ \\d'

[[test]]
name = "remembers history"
history = [["user", "Hi"], ["bot", "Hello!"]]
ask = "again"
contains = ["again"]
'''


def run(root: Path, *names: str, record: bool = False, junit_path: Path | None = None) -> int:
    options = test_command.Options(project=root, names=list(names), record=record, junit=junit_path)
    return test_command.run(options)


def test_echo_tests_pass_offline_with_no_recordings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_bot(tmp_path, "Echo", 'provider = "echo"\n', "You repeat what you hear.")
    (tmp_path / "bots/Echo/tests.toml").write_text(ECHO_TESTS)
    assert run(tmp_path) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["PASS  Echo: echoes", "PASS  Echo: remembers history", "2 passed, 0 failed"]
    assert not (tmp_path / "bots/Echo/recordings").exists()


def test_each_failure_is_one_located_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_bot(tmp_path, "Echo", 'provider = "echo"\n', "You repeat what you hear.")
    (tmp_path / "bots/Echo/tests.toml").write_text(ECHO_TESTS + '''
[[test]]
ask = "one two"
prompt_contains = ["Answer briefly"]
contains = ["three"]
matches = '^two'
''')
    assert run(tmp_path, "Echo") == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-2:] == ["FAIL  Echo: one two", "2 passed, 1 failed"]
    assert captured.err.splitlines() == [
        "bots/Echo/tests.toml:15: one two: the rendered prompt does not contain 'Answer briefly'",
        "bots/Echo/tests.toml:15: one two: the reply does not contain 'three': 'one two'",
        "bots/Echo/tests.toml:15: one two: the reply does not match '^two': 'one two'",
    ]


def test_a_broken_tests_file_is_located(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_bot(tmp_path, "Echo", 'provider = "echo"\n', "p")
    (tmp_path / "bots/Echo/tests.toml").write_text('[[test]]\nask = "hi"\ncontians = ["x"]\nmatches = "(("\n')
    assert run(tmp_path) == 1
    err = capsys.readouterr().err.splitlines()
    assert "bots/Echo/tests.toml:3: test[0]: unknown key 'contians' (did you mean 'contains'?)" in err
    assert any(line.startswith("bots/Echo/tests.toml:4: test[0].matches: not a valid regular expression")
               for line in err)


def test_record_then_replay_offline_and_stale_after_a_prompt_change(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    make_bot(tmp_path, "Sums", 'provider = "fake"\n', "Answer briefly.")
    (tmp_path / "bots/Sums/tests.toml").write_text('[[test]]\nask = "What is 2 + 2?"\ncontains = ["4"]\n')
    monkeypatch.setenv("FAKE_KEY", "sk-secret-recording-key")
    with running(FakeOpenAI(default=Reply(chunks=["It", " is", " 4."]))) as fake:
        (tmp_path / "providers.toml").write_text(
            f'[fake]\nkind = "openai"\napi_base = "{fake.base_url}/v1"\napi_key_env = "FAKE_KEY"\n'
            'default_model = "gpt-4o-mini"\nheaders = { "X-Team" = "bots" }\n')
        assert run(tmp_path, record=True) == 0
        assert len(fake.requests) == 1
        files = list((tmp_path / "bots/Sums/recordings").glob("*.json"))
        first = files[0].read_bytes()
        assert run(tmp_path, record=True) == 0  # recording again gives the same bytes
        assert files[0].read_bytes() == first
    assert b"sk-secret" not in first and b"X-Team" not in first and b'"It"' in first
    capsys.readouterr()

    assert run(tmp_path) == 0  # the fake is gone: the reply comes from the recording
    assert capsys.readouterr().out.splitlines()[-1] == "1 passed, 0 failed"

    (tmp_path / "bots/Sums/system.md.j2").write_text("Answer in one word.")
    assert run(tmp_path) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == ("bots/Sums/tests.toml:1: What is 2 + 2?: no recording of its provider request "
                      "(fake/gpt-4o-mini); record it with `polybot test Sums --record` (calls the real provider)")
    assert err[1] == (f"bots/Sums/recordings/{files[0].name}: unused recording (its request changed or its test "
                      "is gone); `polybot test Sums --record` removes it")


def test_junit_report(tmp_path: Path) -> None:
    make_bot(tmp_path, "Echo", 'provider = "echo"\n', "You repeat what you hear.")
    (tmp_path / "bots/Echo/tests.toml").write_text('[[test]]\nask = "a & b"\ncontains = ["c"]\n')
    report = run_tests(tmp_path)
    xml = junit(report)
    assert '<testsuite name="polybot" tests="1" failures="1">' in xml
    assert "the reply does not contain &apos;c&apos;: &apos;a &amp; b&apos;" in xml or \
        "the reply does not contain 'c': 'a &amp; b'" in xml
    path = tmp_path / "junit.xml"
    assert run(tmp_path, junit_path=path) == 1
    assert re.sub(r'time="[^"]*"', "", path.read_text()) == re.sub(r'time="[^"]*"', "", xml)


def test_the_example_bots_tests_pass_offline(capsys: pytest.CaptureFixture[str]) -> None:
    repo = Path(__file__).resolve().parents[1]
    assert run(repo) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.splitlines()[-1].endswith("0 failed")


def test_build_check_fails_when_a_bot_test_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from polybot.cli import main

    make_bot(tmp_path, "Echo", 'provider = "echo"\n', "You repeat what you hear.")
    (tmp_path / "bots/Echo/tests.toml").write_text('[[test]]\nask = "hi"\ncontains = ["hi"]\n')
    assert main(["build", "--project", str(tmp_path)]) == 0
    assert main(["build", "--check", "--project", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "bot tests pass (1 test)"
    (tmp_path / "bots/Echo/tests.toml").write_text('[[test]]\nask = "hi"\ncontains = ["bye"]\n')
    assert main(["build", "--check", "--project", str(tmp_path)]) == 1
    assert "bots/Echo/tests.toml:1: hi: the reply does not contain 'bye': 'hi'" in capsys.readouterr().err


def test_a_judge_bot_grades_a_criterion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_bot(tmp_path, "Echo", 'provider = "echo"\n[test]\njudge = "Judge"\n', "You repeat what you hear.")
    # A code-defined judge: PASS when the reply is a question.
    make_bot(tmp_path, "Judge", 'provider = "echo"\n', "You grade.", hooks='''
async def respond(request, bot):
    reply = request.query[-1].content.split("The reply:\\n", 1)[1].split("\\n\\nAnswer with", 1)[0]
    yield "PASS\\nit is a question" if reply.endswith("?") else "FAIL\\nthe reply is not a question"
''')
    (tmp_path / "bots/Echo/tests.toml").write_text(
        '[[test]]\nask = "Are you there?"\njudge = "asks a question back"\n\n'
        '[[test]]\nask = "I am here."\njudge = "asks a question back"\n')
    assert run(tmp_path, "Echo") == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[:2] == ["PASS  Echo: Are you there?", "FAIL  Echo: I am here."]
    assert captured.err.splitlines() == [
        "bots/Echo/tests.toml:5: I am here.: the judge says it does not meet 'asks a question back': "
        "the reply is not a question"]


def test_build_check_tests_the_bots_it_compiled_without_compiling_again(tmp_path: Path) -> None:
    """hooks.py is imported, and context() run, once per `build --check`, bot tests included; the
    tests still see the hook's context."""
    from polybot.cli import main

    calls = tmp_path / "calls.txt"
    hooks = (f"import pathlib\nCALLS = pathlib.Path({str(calls)!r})\nCALLS.write_text(CALLS.read_text() + 'import\\n' "
             "if CALLS.exists() else 'import\\n')\n\ndef context(request):\n"
             "    CALLS.write_text(CALLS.read_text() + 'context\\n')\n    return {'mood': 'calm'}\n")
    make_bot(tmp_path, "Echo", 'provider = "echo"\n', "You are {{ mood }}.", hooks)
    (tmp_path / "bots/Echo/tests.toml").write_text('[[test]]\nask = "hi"\nprompt_contains = ["You are calm."]\n')
    assert main(["build", "--project", str(tmp_path)]) == 0
    calls.unlink()
    assert main(["build", "--check", "--project", str(tmp_path)]) == 0
    lines = calls.read_text().splitlines()
    assert lines.count("import") == 1
    assert lines.count("context") == 2  # the build's sample render, then the test's own query
