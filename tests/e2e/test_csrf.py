"""Finding 1 (CSRF on the playground), in a real browser: a page served from another local port
posts to `polybot dev`, and the provider fake records no call. The playground page itself still can.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.e2e.helpers import polybot_process
from tests.e2e.test_playground import CHROMIUM
from tests.fakes.openai_wire import FakeOpenAI
from tests.fakes.server import serve_in_thread
from tests.fakes.wire import running

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

KEY = "sk-developer-key-never-spent-by-others"


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with running(FakeOpenAI()) as oa:
        yield oa


@pytest.fixture
def project(tmp_path: Path, fake: FakeOpenAI) -> Path:
    root = tmp_path / "project"
    (root / "bots" / "Spender").mkdir(parents=True)
    (root / "providers.toml").write_text(
        f'[openai]\nkind = "openai"\napi_base = "{fake.base_url}/v1"\napi_key_env = "OPENAI_API_KEY"\n'
        'default_model = "gpt-4o-mini"\ntimeout = 5\nmax_retries = 0\n')
    (root / "bots" / "Spender" / "bot.toml").write_text('provider = "openai"\n')
    (root / "bots" / "Spender" / "system.md.j2").write_text("You spend tokens.")
    return root


def hostile_page(target: str) -> str:
    """What a page on any site can do without CORS: a text/plain form whose body parses as JSON,
    and no-cors fetches (text/plain, and JSON that the browser cannot send without a preflight)."""
    body = json.dumps({"messages": [{"role": "user", "content": "spend"}], "pad": ""})
    name, value = body[:-2], '"}'  # text/plain sends name=value: together, `body` with "=" in "pad"
    return f"""<!doctype html><html><body>
<form id="f" method="POST" action="{target}/_polybot/chat/Spender" enctype="text/plain" target="sink">
  <input type="hidden" name='{html.escape(name)}' value='{html.escape(value)}'>
</form>
<iframe name="sink"></iframe>
<script>
  const sent = [
    fetch("{target}/_polybot/chat/Spender", {{method: "POST", mode: "no-cors",
          headers: {{"content-type": "text/plain"}}, body: {json.dumps(body)}}}),
    fetch("{target}/_polybot/prompt/Spender", {{method: "POST", mode: "no-cors", body: {json.dumps(body)}}}),
    fetch("{target}/Spender", {{method: "POST", mode: "no-cors", headers: {{"content-type": "text/plain"}},
          body: JSON.stringify({{version: "1.2", type: "query", query: [{{role: "user", content: "spend"}}],
          user_id: "u", conversation_id: "c", message_id: "m"}})}}),
    fetch("{target}/v1/chat/completions", {{method: "POST", mode: "no-cors",
          headers: {{"content-type": "text/plain"}},
          body: JSON.stringify({{model: "Spender", messages: [{{role: "user", content: "spend"}}]}})}}),
    new Promise(answered => document.querySelector("iframe").addEventListener("load", answered, {{once: true}})),
  ].map(p => p.catch(() => {{}}));
  document.getElementById("f").submit();
  Promise.all(sent).then(() => {{ document.title = "sent"; }});  // every request has had its answer
</script></body></html>"""


def test_a_page_on_another_port_cannot_spend_the_developers_keys(project: Path, fake: FakeOpenAI,
                                                                 browser: Any) -> None:
    with polybot_process("dev", project=project, env={"OPENAI_API_KEY": KEY}) as (base, output):
        evil = Starlette(routes=[Route("/", lambda request: HTMLResponse(hostile_page(base)))])
        context = browser.new_context()
        try:
            page: Any = context.new_page()
            with serve_in_thread(evil) as evil_url:
                assert evil_url != base
                page.goto(evil_url + "/")
                page.wait_for_function("document.title === 'sent'", timeout=15_000)
                time.sleep(0.2)  # a provider call one of them started would have reached the fake by now
            assert fake.requests == [], "a cross-site page made polybot dev call the provider"

            # The playground page itself (same origin, with its token) still reaches the provider.
            page.goto(base + "/")
            page.fill("#input", "hello")
            page.click("button[type=submit]")
            page.locator(".msg.bot", has_text="Hello world").wait_for(timeout=15_000)
            assert len(fake.requests) == 1
        finally:
            context.close()
    assert KEY not in "\n".join(output)


def test_allow_host_adds_a_name_whose_callers_need_a_key(project: Path) -> None:
    """`--allow-host` (which replaced `--open-playground`) never opens keyless bots or the playground."""
    import httpx

    from tests.e2e.helpers import query

    body = query("hi").model_dump(mode="json")
    with polybot_process("dev", "--allow-host", "tunnel.example.test", project=project,
                         env={"OPENAI_API_KEY": KEY, "POE_ACCESS_KEY_SPENDER": ""}) as (base, _):
        port = base.rsplit(":", 1)[1]
        tunnel = {"host": f"tunnel.example.test:{port}", "authorization": "Bearer x"}
        refused = httpx.post(base + "/Spender", json=body, headers=tunnel)
        assert refused.status_code == 403 and "POE_ACCESS_KEY_SPENDER" in refused.json()["detail"]
        assert httpx.get(base + "/", headers={"host": f"tunnel.example.test:{port}"}).status_code == 403
        assert httpx.get(base + "/healthz", headers={"host": f"other.example.test:{port}"}).status_code == 403
