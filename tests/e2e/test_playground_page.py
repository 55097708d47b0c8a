"""The playground page grown up (issue 15), in Debian's headless Chromium through Playwright: Markdown
rendered and sanitised, multi-line input, stop, the bot's controls, attachments, tool calls collapsed,
the trace panel, tests run from the page, and side-by-side comparison.

One `polybot dev` serves a project for the whole module; each test opens its own page. Screenshots
go to one folder of pytest's temporary directory (`playground-screenshots0`; pytest keeps the last
three runs), named after what they show.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polybot.cli import main
from tests.e2e.helpers import new_page, polybot_process
from tests.e2e.test_playground import CHROMIUM
from tests.fakes.server import serve_in_thread
from tests.fakes.tool_wire import Call, ToolFake, Turn

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

KEY = "sk-playground-key-never-shown"

SLOW_HOOKS = '''
import asyncio
from pathlib import Path

async def respond(request, bot):
    i = 0
    try:
        for i in range(100):
            yield f"word{i} "
            await asyncio.sleep(0.1)
    finally:  # outside bots/, so that dev does not reload
        (Path(__file__).parents[2] / "slow-ended.txt").write_text(str(i))
'''

TOOL_HOOKS = '''
def get_weather(city: str) -> dict:
    """Current weather for a city."""
    return {"city": city, "temp": 21, "sky": "clear"}
'''

FULL_TOML = '''provider = "echo"
params = { echo = "full" }

[[parameter_controls.sections]]
name = "Style"

[[parameter_controls.sections.controls]]
control = "drop_down"
label = "Tone"
parameter_name = "tone"
default_value = "calm"
options = [{ value = "calm", name = "Calm" }, { value = "pirate", name = "Pirate" }]

[[parameter_controls.sections.controls]]
control = "condition"
condition = { comparator = "eq", left = { parameter_name = "tone" }, right = { literal = "pirate" } }
controls = [{ control = "text_field", label = "Parrot", parameter_name = "parrot", default_value = "" }]

[[parameter_controls.sections.controls]]
control = "slider"
label = "Verses"
parameter_name = "verses"
default_value = 2
min_value = 1
max_value = 5
step = 1
'''

ECHO_TESTS = '''[[test]]
name = "echoes"
ask = "hello"
contains = ["hello"]

[[test]]
name = "says bye"
ask = "hello"
contains = ["bye"]
'''


@pytest.fixture(scope="module")
def fake() -> Iterator[ToolFake]:
    f = ToolFake()
    with serve_in_thread(f.app) as url:
        f.base_url = url  # type: ignore[attr-defined]
        yield f


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, fake: ToolFake) -> Path:
    root = tmp_path_factory.mktemp("playground-project")
    (root / "providers.toml").write_text(
        f'[main]\nkind = "openai"\napi_base = "{fake.base_url}/v1"\napi_key_env = "TOOLS_KEY"\n'  # type: ignore[attr-defined]
        'default_model = "gpt-4o"\nmax_retries = 0\ntimeout = 10\n')
    bots = {
        "Echo": ('provider = "echo"\n[poe]\nintroduction_message = "Say something"\n', "You are the echo bot.", None),
        "Full": (FULL_TOML, "Tone: {{ params.tone }}. Verses: {{ params.verses }}."
                            "{% if params.parrot %} Parrot: {{ params.parrot }}.{% endif %}", None),
        "Poet": ('provider = "echo"\nparams = { echo = "full" }\n', "You write poems about the sea.", None),
        "Slow": ('provider = "echo"\n', "You take your time.", SLOW_HOOKS),
        "Tooly": ('provider = "main"\ntools = ["get_weather"]\n', "You use tools.", TOOL_HOOKS),
    }
    for name, (toml, prompt, hooks) in bots.items():
        (root / "bots" / name).mkdir(parents=True)
        (root / "bots" / name / "bot.toml").write_text(toml)
        (root / "bots" / name / "system.md.j2").write_text(prompt)
        if hooks:
            (root / "bots" / name / "hooks.py").write_text(hooks)
    (root / "bots/Echo/tests.toml").write_text(ECHO_TESTS)
    assert main(["build", "--project", str(root)]) == 0  # the "last build" side-by-side compares with
    return root


@pytest.fixture(scope="module")
def dev(project: Path) -> Iterator[tuple[str, list[str]]]:
    with polybot_process("dev", project=project, env={"TOOLS_KEY": KEY}) as running:
        yield running


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("playground-screenshots")


@pytest.fixture
def page(dev: tuple[str, list[str]], browser: Any) -> Iterator[Any]:
    for tab in new_page(browser, viewport={"width": 1400, "height": 900}):
        tab.goto(dev[0] + "/")
        yield tab


def pick(page: Any, bot: str) -> None:
    page.locator(f".bot[data-bot={bot}]").click()
    page.locator(".bot.active", has_text=bot).wait_for()


def send(page: Any, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")  # Enter sends; Shift+Enter is a new line


MARKDOWN = """# Title
Some **bold**, *slanted* and `code`, a snake_case_name.

- one
- two

1. first
2. second

> thinking out loud

| a | b |
|---|---|
| 1 | 2 |

[safe](https://example.com/x) [bad](javascript:window.__pwned=1) <script>window.__pwned=2</script>
<img src=x onerror="window.__pwned=3"> ![pic](javascript:window.__pwned=4) <a href="javascript:alert(1)">a</a>

```py
print("<b>hi</b>")
```"""


def test_markdown_is_rendered_the_way_poe_does_and_sanitised(page: Any, shots: Path) -> None:
    pick(page, "Echo")
    page.locator(".msg.bot", has_text="Say something").wait_for()
    page.fill("#input", "line one")
    page.press("#input", "Shift+Enter")
    assert page.input_value("#input") == "line one\n"  # multi-line input: Shift+Enter does not send
    send(page, MARKDOWN)
    reply = page.locator(".reply .msg.bot")
    reply.locator("pre code").wait_for()
    assert reply.locator("h1").inner_text() == "Title"
    assert reply.locator("strong").inner_text() == "bold"
    assert reply.locator("em").inner_text() == "slanted"
    assert reply.locator("p code").inner_text() == "code"
    assert "snake_case_name" in reply.inner_text()
    assert reply.locator("ul > li").all_inner_texts() == ["one", "two"]
    assert reply.locator("ol > li").all_inner_texts() == ["first", "second"]
    assert reply.locator("blockquote").inner_text() == "thinking out loud"
    assert reply.locator("td").all_inner_texts() == ["1", "2"]
    assert reply.locator("pre code").inner_text() == 'print("<b>hi</b>")'
    safe = reply.locator("a", has_text="safe")
    assert safe.get_attribute("href") == "https://example.com/x"
    assert safe.get_attribute("rel") == "noopener noreferrer" and safe.get_attribute("target") == "_blank"
    # The attempts do nothing: no script, image, bold or javascript: link is made, and nothing ran.
    assert reply.locator("script, img, b, iframe, [onerror]").count() == 0
    assert reply.locator("a").count() == 1
    assert page.locator('a[href^="javascript"]').count() == 0
    assert "<script>window.__pwned=2</script>" in reply.inner_text()
    assert "bad" in reply.inner_text()  # an unsafe link keeps its text
    assert page.evaluate("window.__pwned") is None
    page.screenshot(path=str(shots / "markdown.png"), full_page=True)


HOSTILE = [
    "[x](JavaScript:alert(1))", "[x]( javascript:alert(1) )", "[x](java\tscript:alert(1))", "[x](vbscript:msgbox)",
    "[x](data:text/html,<script>alert(1)</script>)", "<javascript:alert(1)>",
    "![x](data:image/svg+xml,<svg onload=alert(1)>)",
    "![x](http://tracker.example/p.gif)", "[![x](javascript:alert(1))](javascript:alert(2))",
    "[x](javascript&#58;alert(1))",
    "<iframe src=javascript:alert(1)></iframe>", "<style>*{display:none}</style>", "**<b onmouseover=alert(1)>x</b>**",
    "`<script>alert(1)</script>`", "```\n</code></pre><script>alert(1)</script>\n```",
]


def test_hostile_markdown_makes_no_unsafe_element(page: Any) -> None:
    """The renderer itself, on inputs that break naive sanitisers: every link it makes is http(s) or
    mailto, every image is same-origin or https, and no element comes from the text."""
    made = page.evaluate("""(cases) => cases.map((text) => {
        const box = document.createElement("div");
        markdown(box, text);
        return { tags: [...box.querySelectorAll("*")].map((n) => n.tagName.toLowerCase()),
                 hrefs: [...box.querySelectorAll("a")].map((a) => a.href),
                 srcs: [...box.querySelectorAll("img")].map((i) => i.src),
                 attrs: [...box.querySelectorAll("*")].flatMap((n) => [...n.attributes].map((a) => a.name)) };
    })""", HOSTILE)
    origin = page.evaluate("location.origin")
    for text, out in zip(HOSTILE, made, strict=True):
        assert set(out["tags"]) <= {"p", "a", "img", "strong", "code", "pre", "span", "br"}, (text, out)
        assert all(h.startswith(("http://", "https://", "mailto:")) for h in out["hrefs"]), (text, out)
        assert all(src.startswith(("https://", origin)) for src in out["srcs"]), (text, out)
        assert set(out["attrs"]) <= {"href", "rel", "target", "src", "alt", "class", "referrerpolicy"}, (text, out)


def test_stop_ends_a_reply_midway(page: Any, shots: Path, project: Path) -> None:
    pick(page, "Slow")
    assert page.locator("#stop").is_disabled()
    send(page, "take your time")
    body = page.locator(".reply .msg.bot")
    body.locator("text=word3").wait_for()
    assert page.locator("#stop").is_enabled()
    page.click("#stop")
    page.locator(".reply .stopped", has_text="Stopped.").wait_for()
    shown = body.inner_text()
    time.sleep(0.3)  # three more words, had it not stopped
    assert body.inner_text() == shown and "word99" not in shown  # nothing more arrives
    assert page.locator("#stop").is_disabled()
    ended = project / "slow-ended.txt"  # the bot's stream was closed on the server too, at once
    assert ended.is_file() and int(ended.read_text()) < 30
    page.screenshot(path=str(shots / "stopped.png"))
    # The conversation goes on: the partial reply is part of the history sent next.
    pick(page, "Echo")
    send(page, "still here")
    page.locator(".reply .msg.bot", has_text="still here").wait_for()


def test_the_bots_own_controls_are_inputs(page: Any, shots: Path) -> None:
    pick(page, "Full")
    controls = page.locator("#controls")
    controls.locator("legend", has_text="Style").wait_for()
    parrot = controls.locator("label", has_text="Parrot")
    assert not parrot.is_visible()  # shown only when Tone is Pirate (a condition)
    controls.locator("label", has_text="Tone").locator("select").select_option("pirate")
    parrot.wait_for(state="visible")
    parrot.locator("input").fill("Polly")
    controls.locator("input[type=range]").fill("4")
    page.locator("#prompt", has_text="Tone: pirate. Verses: 4. Parrot: Polly.").wait_for()
    send(page, "a poem please")
    page.locator(".reply .msg.bot", has_text="Tone: pirate. Verses: 4. Parrot: Polly.").wait_for()
    page.screenshot(path=str(shots / "controls.png"))


def test_attachments_reach_the_bot_as_poe_sends_them(page: Any, shots: Path) -> None:
    pick(page, "Full")
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    page.set_input_files("#attach-input", files=[
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello notes"},
        {"name": "cat.png", "mimeType": "image/png", "buffer": png}])
    page.locator("#pending .chip", has_text="cat.png").wait_for()
    send(page, "What is attached?")
    assert page.locator("#pending .chip").count() == 0
    page.locator(".msg.user .chip", has_text="notes.txt").wait_for()
    reply = page.locator(".reply .msg.bot")
    reply.locator("text=hello notes").wait_for()  # the text file's parsed_content
    assert "<attachment name='notes.txt'>" in reply.inner_text()
    page.locator(".reply details.trace > summary").click()
    page.locator(".reply details.requests summary").click()
    sent = page.locator(".reply details.requests pre").inner_text()
    assert "/_polybot/files/" in sent and "cat.png" in sent  # the image, as a URL polybot dev serves
    page.screenshot(path=str(shots / "attachments.png"))


def test_tool_calls_are_collapsed_and_the_trace_tells_the_whole_reply(page: Any, shots: Path,
                                                                      fake: ToolFake) -> None:
    fake.turns.extend([Turn(calls=[Call("w1", "get_weather", {"city": "Paris"})]), Turn(text="It is **21** degrees.")])
    pick(page, "Tooly")
    send(page, "Weather in Paris?")
    reply = page.locator(".reply")
    reply.locator(".msg.bot strong", has_text="21").wait_for()
    tool = reply.locator("details.tool")
    assert tool.count() == 1 and tool.get_attribute("open") is None  # collapsed
    assert 'get_weather({"city": "Paris"})' in tool.locator("summary").inner_text()
    result = tool.locator("pre", has_text='"sky": "clear"')
    assert not result.is_visible()
    tool.locator("summary").click()
    result.wait_for(state="visible")

    trace = reply.locator("details.trace")
    trace.locator("> summary").click()
    facts = trace.locator("dl").inner_text()
    for fact in ("main / gpt-4o", "finish reason", "stop", "provider calls", "time to first token", "duration",
                 "1 in 1 round(s): get_weather", "input", "output"):
        assert fact in facts, fact
    assert trace.locator("dt:text-is('provider calls') + dd").inner_text() == "2"  # one per tool round, no retry
    trace.locator("details.prompt summary").click()
    assert trace.locator("details.prompt pre").inner_text() == "You use tools."
    trace.locator("details.requests summary").click()
    sent = trace.locator("details.requests pre").inner_text()
    assert sent.count('"system": "You use tools."') == 2 and '"kind": "openai"' in sent
    assert KEY not in page.content()
    page.screenshot(path=str(shots / "tool-and-trace.png"), full_page=True)


def test_a_bots_tests_run_from_the_page(page: Any, shots: Path) -> None:
    pick(page, "Slow")
    assert page.locator("#run-tests").is_disabled()  # no tests.toml
    pick(page, "Echo")
    page.click("#run-tests")
    page.locator("#tests-summary", has_text="1 passed, 1 failed").wait_for(timeout=30_000)
    assert page.locator("#tests li.pass").all_inner_texts() == ["echoes"]
    failed = page.locator("#tests li.fail")
    assert "says bye" in failed.inner_text() and "tests.toml:6" in failed.inner_text()
    page.screenshot(path=str(shots / "tests.png"))


def test_side_by_side_two_bots_and_the_edited_prompt_against_the_last_build(page: Any, shots: Path,
                                                                            project: Path) -> None:
    pick(page, "Echo")
    page.select_option("#compare", "bot:Poet")
    send(page, "same question")
    columns = page.locator(".row .reply")
    columns.nth(1).locator(".msg.bot", has_text="You write poems about the sea.").wait_for()
    assert columns.count() == 2
    assert columns.locator("h4").all_inner_texts() == ["Echo", "Poet"]
    assert columns.nth(0).locator(".msg.bot").inner_text() == "same question"
    page.screenshot(path=str(shots / "compare-bots.png"))

    (project / "bots/Poet/system.md.j2").write_text("You write poems about rivers.")
    pick(page, "Poet")
    page.locator("#prompt", has_text="rivers").wait_for()
    page.select_option("#compare", "build")
    send(page, "a poem")
    columns = page.locator(".row .reply")
    columns.nth(0).locator(".msg.bot", has_text="rivers").wait_for()
    columns.nth(1).locator(".msg.bot", has_text="the sea").wait_for()
    assert columns.locator("h4").all_inner_texts() == ["Poet (source)", "Poet (last build)"]
    page.screenshot(path=str(shots / "compare-build.png"))
