"""Every class of bad input ends in exact, located messages; nothing is written; no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from polybot.cli import main

GOOD_TOML = 'provider = "echo"\n'
GOOD_PROMPT = "You are {{ bot.name }}.\n"


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def bot(name: str = "Demo", toml: str = GOOD_TOML, prompt: str | None = GOOD_PROMPT,
        **extra: str) -> dict[str, str]:
    files = {f"bots/{name}/bot.toml": toml, **{f"bots/{name}/{k.replace('_', '.')}": v for k, v in extra.items()}}
    if prompt is not None:
        files[f"bots/{name}/system.md.j2"] = prompt
    return files


CASES: dict[str, tuple[dict[str, str], list[str]]] = {
    "unterminated string": (bot(toml='provider = "echo"\ndescription = "oops\n'), [
        "bots/Demo/bot.toml:2: TOML syntax error: Illegal character '\\n'"]),
    "unknown key with suggestion": (bot(toml='provider = "echo"\n\ntempreature = 1\n'), [
        "bots/Demo/bot.toml:3: unknown key 'tempreature' (did you mean 'temperature'?)"]),
    "wrong type": (bot(toml='provider = "echo"\ntemperature = "hot"\n'), [
        "bots/Demo/bot.toml:2: temperature: expected a number but received 'hot'"]),
    "out of range": (bot(toml='provider = "echo"\n\n\ntemperature = 5\n'), [
        "bots/Demo/bot.toml:4: temperature: must be at most 2, got 5"]),
    "max_tokens zero": (bot(toml='provider = "echo"\nmax_tokens = 0\n'), [
        "bots/Demo/bot.toml:2: max_tokens: must be greater than 0, got 0"]),
    "missing provider": (bot(toml='model = "x"\n'), [
        "bots/Demo/bot.toml: provider: missing required key; add `provider = ...`"]),
    "unknown provider": (bot(toml='description = "d"\nprovider = "opnai"\n'), [
        "bots/Demo/bot.toml:2: provider: unknown provider 'opnai' (did you mean 'openai'?); define it in "
        "providers.toml or use a built-in one (anthropic, deepseek, echo, fireworks, gemini, groq, mistral, "
        "ollama, openai, openrouter, poe, poe-api, together)"]),
    "unknown model": (
        {"providers.toml": '[local]\nkind = "openai"\napi_base = "http://127.0.0.1:1/v1"\ndefault_model = "a"\n'
                           'models = ["alpha-1", "beta-2"]\n',
         **bot(toml='provider = "local"\nmodel = "alpha-2"\n')}, [
            "bots/Demo/bot.toml:2: model: unknown model 'alpha-2' for provider 'local' (did you mean 'alpha-1'?); "
            "it offers alpha-1, beta-2"]),
    "bad fallback entry": (bot(toml='provider = "echo"\n\n[[fallback]]\nprovider = "openai"\n\n'
                                    '[[fallback]]\nprovider = "antropic"\n'), [
        "bots/Demo/bot.toml:7: fallback[1].provider: unknown provider 'antropic' (did you mean 'anthropic'?); "
        "define it in providers.toml or use a built-in one (anthropic, deepseek, echo, fireworks, gemini, groq, "
        "mistral, ollama, openai, openrouter, poe, poe-api, together)"]),
    "unknown key in a fallback": (bot(toml='provider = "echo"\n\n[[fallback]]\nprovider = "openai"\n\n'
                                           '[[fallback]]\nprovder = "x"\n'), [
        "bots/Demo/bot.toml:7: fallback[1]: unknown key 'provder' (did you mean 'provider'?)",
        "bots/Demo/bot.toml:6: fallback[1].provider: missing required key; add `provider = ...`"]),
    "schema and provider problems together": (bot(toml='provider = "opnai"\ntemperature = 9\n\n'
                                                       '[[fallback]]\nprovider = "antropic"\n'), [
        "bots/Demo/bot.toml:1: provider: unknown provider 'opnai' (did you mean 'openai'?); define it in "
        "providers.toml or use a built-in one (anthropic, deepseek, echo, fireworks, gemini, groq, mistral, "
        "ollama, openai, openrouter, poe, poe-api, together)",
        "bots/Demo/bot.toml:2: temperature: must be at most 2, got 9",
        "bots/Demo/bot.toml:5: fallback[0].provider: unknown provider 'antropic' (did you mean 'anthropic'?); "
        "define it in providers.toml or use a built-in one (anthropic, deepseek, echo, fireworks, gemini, groq, "
        "mistral, ollama, openai, openrouter, poe, poe-api, together)"]),
    "poe table unknown key": (bot(toml='provider = "echo"\n[poe]\nintro_message = "hi"\n'), [
        "bots/Demo/bot.toml:3: poe: unknown key 'intro_message' (did you mean 'introduction_message'?)"]),
    "missing prompt": (bot(prompt=None), [
        "bots/Demo/system.md.j2: missing: every bot needs a system prompt template (create it, even if it is "
        "one line)"]),
    "missing bot.toml": ({"bots/Demo/system.md.j2": "x"}, [
        "bots/Demo/bot.toml: missing: every bot folder needs a bot.toml (create one with `polybot new NAME`)"]),
    "jinja syntax error": (bot(prompt="line one\n{% if %}\n"), [
        "bots/Demo/system.md.j2:2: template syntax error: Expected an expression, got 'end of statement block'"]),
    "undefined variable": (bot(prompt="a\nb {{ tone }}\n"), [
        "bots/Demo/system.md.j2:2: undefined variable 'tone': the context has bot, conversation_id, language_code, "
        "messages, "
        "now, params, user_id, users, vars; add it to [vars] and use vars.tone, or return it from context() in "
        "hooks.py"]),
    "undefined var attribute": (bot(toml='provider = "echo"\n[vars]\ntone = "x"\n', prompt="a\n{{ vars.mood }}\n"), [
        "bots/Demo/system.md.j2:2: template error: undefined variable: 'dict object' has no attribute 'mood'"]),
    "missing include": (bot(prompt='a\n{% include "footer.j2" %}\n'), [
        "bots/Demo/system.md.j2:2: template 'footer.j2' not found in bots/Demo/ or bots/_shared/"]),
    "hooks syntax error": (bot(hooks_py="def context(request):\n    return {\n"), [
        "bots/Demo/hooks.py:2: syntax error in hooks.py: '{' was never closed"]),
    "hooks import error": (bot(hooks_py="import os\nimport not_a_module_anywhere\n"), [
        "bots/Demo/hooks.py:2: hooks.py failed to import: ModuleNotFoundError: No module named "
        "'not_a_module_anywhere'"]),
    "context hook raises": (bot(hooks_py="def context(request):\n    return {'x': 1 / 0}\n"), [
        "bots/Demo/hooks.py:2: context() failed: ZeroDivisionError: division by zero"]),
    "duplicate names": ({**bot("Alpha"), **bot("ALPHA")}, [
        "bots/Alpha: duplicate bot name: 'Alpha' and 'ALPHA' differ only in case; Poe names are "
        "case-insensitive, rename one folder"]),
    "invalid names": ({**bot("Bad Name!"), **bot("abc")}, [
        "bots/Bad Name!: invalid bot name 'Bad Name!': Poe bot names are 4-20 characters of letters, digits, "
        "'-', '_' or '.'; rename the folder",
        "bots/abc: invalid bot name 'abc': Poe bot names are 4-20 characters of letters, digits, '-', '_' or "
        "'.'; rename the folder"]),
    "broken providers.toml syntax": ({"providers.toml": '[local]\nkind = "openai\n', **bot()}, [
        "providers.toml:2: TOML syntax error: Illegal character '\\n'"]),
    "providers.toml unknown key and kind": (
        {"providers.toml": '[local]\nkind = "opnai"\napi_bse = "x"\n', **bot()}, [
            "providers.toml:2: local.kind: unknown kind 'opnai' (did you mean 'openai'?); expected one of anthropic, "
            "echo, gemini, openai, poe",
            "providers.toml:3: local: unknown key 'api_bse' (did you mean 'api_base'?)"]),
    "bad control": (bot(toml='provider = "echo"\n[[controls]]\ncontrol = "slider"\nlabel = "T"\n'
                             'parameter_name = "t"\nmin_value = 0\n'), [
        "bots/Demo/bot.toml:2: controls[0].max_value: missing required key; add `max_value = ...`",
        "bots/Demo/bot.toml:2: controls[0].step: missing required key; add `step = ...`"]),
}


@pytest.mark.parametrize("files,expected", CASES.values(), ids=CASES.keys())
def test_located_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, str],
                        expected: list[str]) -> None:
    write(tmp_path, files)
    assert main(["build", "--project", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert sorted(err.splitlines()) == sorted(expected)
    assert not (tmp_path / "build" / "manifest.json").exists()


def test_every_problem_in_every_bot_is_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, {**bot("Alpha", toml='provider = "echo"\ntemperature = 9\n', prompt="{{ nope }}"),
                     **bot("Bravo", toml='provider = "echo"\nvarz = 1\n'), **bot("Charlie")})
    assert main(["build", "--project", str(tmp_path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "bots/Alpha/bot.toml", "bots/Alpha/system.md.j2", "bots/Bravo/bot.toml"]
