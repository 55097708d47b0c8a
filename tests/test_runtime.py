"""A compiled bot answering queries: hooks, prompt context, Poe conversation mapping, failures."""

from __future__ import annotations

from pathlib import Path

import fastapi_poe as fp
import pytest

from polybot.conversation import to_messages
from polybot.livebuild import LiveBuild
from polybot.providers.base import Image, Message, merge_turns, without_images
from polybot.runtime import Runtime


def make_bot(root: Path, name: str, toml: str, prompt: str, hooks: str | None = None) -> None:
    folder = root / "bots" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bot.toml").write_text(toml)
    (folder / "system.md.j2").write_text(prompt)
    if hooks is not None:
        (folder / "hooks.py").write_text(hooks)


def runtime(root: Path, name: str) -> Runtime:
    workspace = LiveBuild(root)
    result = workspace.refresh()
    assert not result.problems, [str(p) for p in result.problems]
    return workspace.runtimes[name]


def request(*turns: tuple[str, str], **extra: object) -> fp.QueryRequest:
    return fp.QueryRequest(version="1.2", type="query", user_id="u42", conversation_id="c7", message_id="m",
                           query=[fp.ProtocolMessage(role=r, content=c) for r, c in turns],  # type: ignore[arg-type]
                           **extra)  # type: ignore[arg-type]


async def reply(rt: Runtime, req: fp.QueryRequest) -> tuple[str, list[object]]:
    events = [e async for e in rt.respond(req)]
    text = "".join(e.text for e in events if isinstance(e, fp.PartialResponse) and not isinstance(e, fp.MetaResponse))
    return text, events


FULL = 'provider = "echo"\nparams = { echo = "full" }\n'


async def test_context_and_template_see_request_values(tmp_path: Path) -> None:
    make_bot(tmp_path, "Ctx1", FULL + '[vars]\ntone = "dry"\n',
             "{{ bot.name }} {{ vars.tone }} {{ user_id }} {{ conversation_id }} {{ messages|length }} "
             "{{ now.tzinfo is not none }} {{ greeting }}",
             hooks="def context(request):\n    return {'greeting': 'hi ' + request.user_id}\n")
    text, _ = await reply(runtime(tmp_path, "Ctx1"), request(("user", "a"), ("bot", "b"), ("user", "c")))
    assert text.startswith("[system]\nCtx1 dry u42 c7 3 True hi u42\n\n[user]\na\n\n[assistant]\nb\n\n[user]\nc")


async def test_message_text_is_never_rendered_as_a_template(tmp_path: Path) -> None:
    make_bot(tmp_path, "Safe", FULL, "Last: {{ messages[-1].content }}")
    text, _ = await reply(runtime(tmp_path, "Safe"), request(("user", "{{ 7*7 }} {% raw %}")))
    assert "Last: {{ 7*7 }} {% raw %}" in text
    assert "49" not in text


async def test_messages_hook_rewrites_provider_bound_turns(tmp_path: Path) -> None:
    hooks = ("from polybot import Message\n"
             "def messages(messages, request):\n"
             "    return [Message('user', m.text.upper()) for m in messages if m.role == 'user']\n")
    make_bot(tmp_path, "Shout", FULL, "sys", hooks=hooks)
    text, _ = await reply(runtime(tmp_path, "Shout"), request(("user", "hello"), ("bot", "x"), ("user", "more")))
    assert text == "[system]\nsys\n\n[user]\nHELLO\n\n[user]\nMORE"


async def test_respond_hook_replaces_the_provider_call(tmp_path: Path) -> None:
    hooks = ("async def respond(request, bot):\n"
             "    yield 'code '\n"
             "    async for event in bot.complete(request):\n"
             "        yield event\n")
    make_bot(tmp_path, "Coded", 'provider = "echo"\n', "sys", hooks=hooks)
    text, _ = await reply(runtime(tmp_path, "Coded"), request(("user", "and echo")))
    assert text == "code and echo"


async def test_hook_failure_is_a_located_error_event(tmp_path: Path) -> None:
    hooks = ("def context(request):\n"
             "    if request.query[-1].content == 'boom':\n"
             "        raise ValueError('kaboom')\n"
             "    return {}\n")
    make_bot(tmp_path, "Hooky", 'provider = "echo"\n', "sys", hooks=hooks)
    _, events = await reply(runtime(tmp_path, "Hooky"), request(("user", "boom")))
    error = events[-1]
    assert isinstance(error, fp.ErrorResponse)
    assert error.text == "bots/Hooky/hooks.py:3: context() failed: ValueError: kaboom"
    assert error.allow_retry is False


async def test_respond_hook_failure_is_located(tmp_path: Path) -> None:
    hooks = "async def respond(request, bot):\n    yield 'partial'\n    raise RuntimeError('nope')\n"
    make_bot(tmp_path, "Resp", 'provider = "echo"\n', "sys", hooks=hooks)
    _, events = await reply(runtime(tmp_path, "Resp"), request(("user", "x")))
    assert isinstance(events[-1], fp.ErrorResponse)
    assert events[-1].text == "bots/Resp/hooks.py:3: respond() failed: RuntimeError: nope"


async def test_template_runtime_error_is_located(tmp_path: Path) -> None:
    make_bot(tmp_path, "Divide", 'provider = "echo"\n',
             "line one\n{% if messages|length > 1 %}{{ 1 // 0 }}{% endif %}")
    rt = runtime(tmp_path, "Divide")
    _, events = await reply(rt, request(("user", "a"), ("bot", "b"), ("user", "c")))
    assert isinstance(events[-1], fp.ErrorResponse)
    assert events[-1].text.startswith("bots/Divide/system.md.j2:2: template error: ZeroDivisionError")


async def test_templates_cannot_reach_python_internals_or_environment(tmp_path: Path) -> None:
    make_bot(tmp_path, "Evil", 'provider = "echo"\n', "{{ bot.__class__.__mro__ }}")
    problems = LiveBuild(tmp_path).refresh().problems
    assert [str(p) for p in problems] == [
        "bots/Evil/system.md.j2:1: template error: access to attribute '__class__' of 'dict' object is unsafe."]
    # Only reached at request time: refused then too, as a located error event.
    make_bot(tmp_path, "Evil", 'provider = "echo"\n',
             "ok\n{% if messages|length > 1 %}{{ now.__class__.__subclasses__() }}{% endif %}")
    rt = runtime(tmp_path, "Evil")
    _, events = await reply(rt, request(("user", "a"), ("bot", "b"), ("user", "c")))
    assert isinstance(events[-1], fp.ErrorResponse)
    assert events[-1].text.startswith("bots/Evil/system.md.j2:2: template error: access to attribute '__class__'")


async def test_poe_system_messages_join_the_system_prompt(tmp_path: Path) -> None:
    make_bot(tmp_path, "Sys1", FULL, "Base prompt.")
    text, _ = await reply(runtime(tmp_path, "Sys1"), request(("system", "Poe says be brief."), ("user", "q")))
    assert text == "[system]\nBase prompt.\n\nPoe says be brief.\n\n[user]\nq"


async def test_bot_info_and_suggested_replies_meta(tmp_path: Path) -> None:
    make_bot(tmp_path, "Meta1", 'provider = "echo"\ndescription = "d"\n[poe]\nsuggested_replies = true\n', "s")
    _, events = await reply(runtime(tmp_path, "Meta1"), request(("user", "Bot Info ")))
    assert isinstance(events[0], fp.MetaResponse) and events[0].suggested_replies is True
    assert '"name": "Meta1"' in events[1].text  # type: ignore[attr-defined]


def test_conversation_mapping_keeps_every_turn_and_adapters_merge() -> None:
    query = [
        fp.ProtocolMessage(role="bot", content="intro"),
        fp.ProtocolMessage(role="user", content="one"),
        fp.ProtocolMessage(role="user", content="   "),
        fp.ProtocolMessage(role="user", content="two", attachments=[
            fp.Attachment(url="https://x/cat.png", content_type="image/png", name="cat.png",
                          parsed_content="A cat on a mat"),
            fp.Attachment(url="https://x/a.txt", content_type="text/plain", name="a.txt", parsed_content="ABC"),
            fp.Attachment(url="https://x/v.mp3", content_type="audio/mpeg", name="v.mp3"),
            fp.Attachment(url="https://x/d.svg", content_type="image/svg+xml", name="d.svg"),
        ]),
        fp.ProtocolMessage(role="system", content="sys"),
        fp.ProtocolMessage(role="bot", content="answer", sender=fp.Sender(name="OtherBot")),
        fp.ProtocolMessage(role="bot", content="mine", sender=fp.Sender(name="Me")),
    ]
    two = ("two\n\n<image name='cat.png' description>\nA cat on a mat\n</image>"
           "\n\n<attachment name='a.txt'>\nABC\n</attachment>"
           "\n\n[attachment 'v.mp3' (audio/mpeg) not sent: the model cannot read this audio]"
           "\n\n[attachment 'd.svg' (image/svg+xml) not sent: the model cannot read this file type]")
    cat = Image("https://x/cat.png", "image/png", "cat.png")
    messages = to_messages(query, "Me")
    assert messages == [
        Message("assistant", "intro"), Message("user", "one"), Message("user", two, (cat,)),
        Message("assistant", "answer", name="OtherBot"), Message("assistant", "mine"),
    ]
    # Alternating providers (Anthropic, Gemini) merge for themselves, keeping other senders' names.
    assert merge_turns(messages) == [
        Message("user", "one\n\n" + two, (cat,)),
        Message("assistant", "[OtherBot]: answer\n\nmine"),
    ]
    assert without_images(messages, "m")[2].text.endswith("[image 'cat.png' not shown: model m does not take images]")


@pytest.mark.parametrize("picked,expected", [("gpt-4o", "gpt-4o"), ("evil-model", "gpt-4o-mini")])
def test_model_control_only_picks_allowed_options(picked: str, expected: str) -> None:
    from polybot.manifest import BotSpec
    from polybot.runtime import _override_model

    spec = BotSpec.model_validate({
        "name": "Pick", "description": "", "version": "1", "provider": "openai", "model": "gpt-4o-mini",
        "temperature": None, "max_tokens": None, "params": {}, "vars": {}, "fallback": [], "poe": {},
        "access_key_env": "K", "templates": {}, "hooks": None, "hash": "h",
        "controls": [{"control": "drop_down", "label": "Model", "parameter_name": "model",
                      "options": [{"value": "gpt-4o", "name": "4o"}, {"value": "gpt-4o-mini", "name": "mini"}]}],
    })
    assert _override_model(spec, {"model": picked}) == expected


async def test_dev_keeps_every_bot_on_the_last_good_shared_partial(tmp_path: Path) -> None:
    (tmp_path / "bots/_shared").mkdir(parents=True)
    (tmp_path / "bots/_shared/style.j2").write_text("Style one.")
    for name in ("Alpha", "Bravo"):
        make_bot(tmp_path, name, FULL, '{% include "style.j2" %}')
    workspace = LiveBuild(tmp_path)
    assert not workspace.refresh().problems

    (tmp_path / "bots/_shared/style.j2").write_text("Broken {% if %}")
    broken = workspace.refresh()
    assert [str(p) for p in broken.problems][0].startswith("bots/_shared/style.j2:1: template syntax error")
    assert sorted(broken.kept) == ["Alpha", "Bravo"] and broken.updated == []
    text, _ = await reply(workspace.runtimes["Alpha"], request(("user", "hi")))
    assert text.startswith("[system]\nStyle one.")

    (tmp_path / "bots/_shared/style.j2").write_text("Style two.")
    fixed = workspace.refresh()
    assert not fixed.problems and sorted(fixed.updated) == ["Alpha", "Bravo"]
    text, _ = await reply(workspace.runtimes["Bravo"], request(("user", "hi")))
    assert text.startswith("[system]\nStyle two.")
