"""The rest of the Poe platform: feedback, reactions and error reports reach hooks.py; tools and
hooks attach files to the reply."""

from __future__ import annotations

from pathlib import Path

import fastapi_poe as fp
import httpx
import pytest

from polybot.app import BotServer
from polybot.livebuild import LiveBuild
from tests.test_runtime import make_bot, request, runtime

HOOKS = '''
SEEN = []

def on_feedback(report):
    SEEN.append(("feedback", report.feedback_type, report.message_id))

async def on_reaction(report):
    SEEN.append(("reaction", report.reaction))

def on_error(report):
    raise ValueError("hook bug")
'''


async def post(app: object, body: dict[str, object]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as client:
        return await client.post("/Report", json=body, headers={"Authorization": "Bearer x"})


async def test_feedback_reactions_and_errors_reach_the_hooks(tmp_path: Path, caplog: object) -> None:
    import logging
    import sys

    make_bot(tmp_path, "Report", 'provider = "echo"\n', "p", hooks=HOOKS)
    server = BotServer(environ={})
    workspace = LiveBuild(tmp_path, on_put=server.put)
    workspace.refresh()
    base = {"version": "1.2", "message_id": "m1", "user_id": "u1", "conversation_id": "c1"}
    caplog.set_level(logging.WARNING)  # type: ignore[attr-defined]
    assert (await post(server.app, {**base, "type": "report_feedback", "feedback_type": "like"})).status_code == 200
    assert (await post(server.app, {**base, "type": "report_reaction", "reaction": "heart"})).status_code == 200
    response = await post(server.app, {"version": "1.2", "type": "report_error", "message": "bad event",
                                       "metadata": {}})
    assert response.status_code == 200
    assert sys.modules["polybot_hooks_Report"].SEEN == [("feedback", "like", "m1"), ("reaction", "heart")]
    messages = [r.getMessage() for r in caplog.records]  # type: ignore[attr-defined]
    assert any("Poe reported an error with a reply of Report: bad event" in m for m in messages)
    assert any(m.startswith("bots/Report/hooks.py:11: on_error() failed: ValueError: hook bug") for m in messages)


async def test_a_respond_hook_can_attach_files(tmp_path: Path) -> None:
    make_bot(tmp_path, "Drawer", 'provider = "echo"\n', "p", hooks='''
import polybot

async def respond(request, bot):
    yield "Here is your picture."
    yield polybot.File("https://cdn.example/cat.png", "image/png", "cat.png")
''')
    rt = runtime(tmp_path, "Drawer")
    events = [e async for e in rt.respond(request(("user", "draw a cat")))]
    files = [e.attachment for e in events if isinstance(e, fp.PartialResponse) and e.attachment]
    assert [(f.url, f.name) for f in files] == [("https://cdn.example/cat.png", "cat.png")]


PRICED = '''provider = "echo"
[poe]
rate_card = "1 point per reply, plus tokens"
cost_label = "Priced"
[poe.pricing]
per_reply = 0.001
prompt = 0.000002
completion = 0.00001
'''


def priced_request(text: str) -> fp.QueryRequest:
    return request(("user", text), bot_query_id="bq-1")


async def test_a_priced_reply_is_authorized_then_captured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.poe_costs import FakeCosts
    from tests.fakes.server import serve_in_thread

    costs = FakeCosts()
    monkeypatch.setenv("POE_ACCESS_KEY_PRICED", "k" * 32)
    make_bot(tmp_path, "Priced", PRICED, "Be brief.")
    rt = runtime(tmp_path, "Priced")
    assert rt.settings().rate_card == "1 point per reply, plus tokens" and rt.settings().cost_label == "Priced"
    with serve_in_thread(costs.app) as url:
        monkeypatch.setenv("POLYBOT_POE_BASE_URL", url + "/bot/")
        events = [e async for e in rt.respond(priced_request("one two three"))]
    assert "".join(e.text for e in events) == "one two three"
    (auth, query, body), (capture, _, captured) = costs.calls
    assert (auth, capture, query, body["access_key"]) == ("authorize", "capture", "bq-1", "k" * 32)
    # echo reports 5 input tokens (2 prompt words + 3) and 3 output: 0.001 + 5 * 0.000002 + 3 * 0.00001 USD
    assert captured["amounts"][0]["amount_usd_milli_cents"] == 104
    assert body["amounts"][0]["amount_usd_milli_cents"] >= 104


async def test_insufficient_funds_end_the_reply_before_any_provider_call(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.poe_costs import FakeCosts
    from tests.fakes.server import serve_in_thread

    costs = FakeCosts(funds=0)
    monkeypatch.setenv("POE_ACCESS_KEY_PRICED", "k" * 32)
    make_bot(tmp_path, "Priced", PRICED, "Be brief.")
    rt = runtime(tmp_path, "Priced")
    with serve_in_thread(costs.app) as url:
        monkeypatch.setenv("POLYBOT_POE_BASE_URL", url + "/bot/")
        events = [e async for e in rt.respond(priced_request("hello"))]
    assert len(events) == 1 and isinstance(events[0], fp.ErrorResponse)
    assert (events[0].error_type, events[0].allow_retry) == ("insufficient_fund", False)
    assert [c[0] for c in costs.calls] == ["authorize"]


async def test_nothing_is_charged_outside_poe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYBOT_POE_BASE_URL", "http://127.0.0.1:9")  # would fail loudly if called
    make_bot(tmp_path, "Priced", PRICED, "Be brief.")
    events = [e async for e in runtime(tmp_path, "Priced").respond(request(("user", "hi")))]
    assert "".join(e.text for e in events) == "hi"


LAYOUT = '''provider = "echo"

[[controls]]
control = "toggle_switch"
label = "Short answers"
parameter_name = "short"
default_value = true

[[parameter_controls.sections]]
name = "Image"
collapsed_by_default = true

[[parameter_controls.sections.controls]]
control = "aspect_ratio"
label = "Shape"
parameter_name = "aspect"
default_value = "1:1"
options = [{ value = "1:1", width = 1, height = 1 }, { value = "16:9", width = 16, height = 9 }]

[[parameter_controls.sections.tabs]]
name = "Advanced"

[[parameter_controls.sections.tabs.controls]]
control = "slider"
label = "Steps"
parameter_name = "steps"
min_value = 1
max_value = 50
step = 1
default_value = 20

[[parameter_controls.sections.tabs.controls]]
control = "condition"
condition = { comparator = "gt", left = { parameter_name = "steps" }, right = { literal = 30 } }
controls = [{ control = "text_field", label = "Why so many?", parameter_name = "reason", default_value = "" }]
'''


def test_settings_carry_sections_tabs_conditions_and_aspect_ratio(tmp_path: Path) -> None:
    make_bot(tmp_path, "Layout", LAYOUT, "{{ params.short }} {{ params.aspect }} {{ params.steps }}")
    rt = runtime(tmp_path, "Layout")
    controls = rt.settings().parameter_controls
    assert controls is not None
    first, image = controls.sections
    assert [c.parameter_name for c in first.controls or []] == ["short"]  # type: ignore[union-attr]
    assert (image.name, image.collapsed_by_default) == ("Image", True)
    assert image.controls[0].control == "aspect_ratio"  # type: ignore[index]
    tab = (image.tabs or [])[0]
    assert tab.name == "Advanced" and tab.controls[1].control == "condition"
    assert (tmp_path / "build").exists() is False
    from polybot.controls import default_params

    assert default_params(rt.spec.controls) == {"short": True, "aspect": "1:1", "steps": 20, "reason": ""}


def test_a_layout_mistake_is_located(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from polybot.cli import main

    make_bot(tmp_path, "Layout", LAYOUT.replace('comparator = "gt"', 'comparator = "bigger"'), "p")
    assert main(["build", "--project", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err == ("bots/Layout/bot.toml:34: parameter_controls.sections[0].tabs[0].controls[1].condition.comparator: "
                   "expected one of 'eq', 'ne', 'gt', 'ge', 'lt' or 'le' but received 'bigger'\n")
