"""Findings 2 and 7: who `polybot dev` and `serve` answer, and requests that are odd on purpose.

In-process through httpx.ASGITransport; a remote caller is simulated with `client=` and Host.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from polybot import security
from polybot.app import MAX_BODY_BYTES, BotServer
from polybot.cli import main
from polybot.livebuild import LiveBuild
from polybot.playground import TOKEN_HEADER, Playground
from polybot.security import DevAccess, binding_warning
from tests.fakes.openai_wire import FakeOpenAI
from tests.fakes.wire import running

PORT = 8080
KEY = "k" * 32
LOCAL = ("127.0.0.1", 50000)
REMOTE = ("10.0.0.5", 50000)


def query(text: str = "hi", parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "user", "content": text}
    if parameters is not None:
        message["parameters"] = parameters
    return {"version": "1.2", "type": "query", "query": [message], "user_id": "u", "conversation_id": "c",
            "message_id": "m"}


def write_bot(root: Path, name: str, toml: str = 'provider = "echo"\n', prompt: str = "You are a bot.") -> None:
    (root / "bots" / name).mkdir(parents=True, exist_ok=True)
    (root / "bots" / name / "bot.toml").write_text(toml)
    (root / "bots" / name / "system.md.j2").write_text(prompt)


def dev_server(root: Path, environ: dict[str, str], access: DevAccess | None = None) -> tuple[BotServer, Playground]:
    access = access or DevAccess(PORT)
    server = BotServer(environ, dev=access)
    workspace = LiveBuild(root, on_put=server.put, on_remove=server.remove)
    playground = Playground(workspace, access)
    playground.mount(server.app)
    result = workspace.refresh()
    assert not result.problems, [str(p) for p in result.problems]
    return server, playground


def client(server: BotServer, peer: tuple[str, int] = LOCAL, host: str = f"127.0.0.1:{PORT}") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=server.app, client=peer),
                             base_url=f"http://{host}", timeout=30)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_bot(tmp_path, "Open")  # no access key
    write_bot(tmp_path, "Keyed")
    return tmp_path


ENV = {"POE_ACCESS_KEY_KEYED": KEY}


# --- finding 2: dev routes ------------------------------------------------------------------------


@pytest.mark.parametrize("path,method", [("/Open", "POST"), ("/Keyed", "POST"), ("/healthz", "GET"),
                                         ("/", "GET"), ("/_polybot/state", "GET")])
async def test_dev_answers_only_its_own_host_names(project: Path, path: str, method: str) -> None:
    """DNS rebinding: the browser is on loopback, but the Host is the attacker's name."""
    server, _ = dev_server(project, ENV)
    async with client(server, host=f"rebind.attacker.test:{PORT}") as c:
        response = await c.request(method, path, json=query(), headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 403
    assert "--allow-host" in response.json()["detail"]
    for host in (f"127.0.0.1:{PORT}", f"localhost:{PORT}", f"[::1]:{PORT}"):
        async with client(server, host=host) as c:
            assert (await c.get("/healthz")).status_code == 200


async def test_keyless_dev_bots_answer_loopback_only(project: Path) -> None:
    server, _ = dev_server(project, ENV, DevAccess.for_binding("0.0.0.0", PORT))
    async with client(server) as c:  # this machine: any bearer, as before
        assert (await c.post("/Open", json=query(), headers={"authorization": "Bearer x"})).status_code == 200
    async with client(server, REMOTE, f"192.168.1.5:{PORT}") as c:  # the LAN, bound to 0.0.0.0
        refused = await c.post("/Open", json=query(), headers={"authorization": "Bearer x"})
        assert refused.status_code == 403 and "POE_ACCESS_KEY_OPEN" in refused.json()["detail"]
        assert (await c.post("/Keyed", json=query(), headers={"authorization": "Bearer x"})).status_code == 401
        ok = await c.post("/Keyed", json=query(), headers={"authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and "event: done" in ok.text
        assert (await c.get("/")).status_code == 403  # the playground stays on this machine
    async with client(server, LOCAL) as c:  # through a local proxy (a tunnel): not loopback any more
        forwarded = await c.post("/Open", json=query(), headers={"authorization": "Bearer x",
                                                                "x-forwarded-for": "203.0.113.9"})
        assert forwarded.status_code == 403


async def test_dev_openai_endpoint_without_a_key_answers_loopback_only(project: Path) -> None:
    server, _ = dev_server(project, {**ENV, "POLYBOT_API_KEY": ""}, DevAccess.for_binding("0.0.0.0", PORT))
    from polybot.openai_api import mount_openai

    mount_openai(server, open_without_key=True)
    chat = {"model": "Open", "messages": [{"role": "user", "content": "hi"}]}
    async with client(server) as c:
        assert (await c.post("/v1/chat/completions", json=chat)).status_code == 200
        assert (await c.get("/v1/models")).status_code == 200
    async with client(server, REMOTE, f"192.168.1.5:{PORT}") as c:
        assert (await c.post("/v1/chat/completions", json=chat)).status_code == 403
        assert (await c.get("/v1/models", headers={"authorization": "Bearer guess"})).status_code == 403
    server.environ = {**ENV, "POLYBOT_API_KEY": "api-key"}  # type: ignore[assignment]
    async with client(server, REMOTE, f"192.168.1.5:{PORT}") as c:
        ok = await c.post("/v1/chat/completions", json=chat, headers={"authorization": "Bearer api-key"})
        assert ok.status_code == 200, ok.text


def test_dev_bound_to_loopback_refuses_ip_hosts_and_allow_host_adds_names() -> None:
    local = DevAccess.for_binding("127.0.0.1", PORT)
    scope = {"type": "http", "headers": [(b"host", f"192.168.1.5:{PORT}".encode())], "client": REMOTE}
    assert not local.host_allowed(scope)
    tunnel = DevAccess.for_binding("127.0.0.1", PORT, ["dev.example.test"])
    named = {"type": "http", "headers": [(b"host", f"dev.example.test:{PORT}".encode())], "client": LOCAL}
    assert tunnel.host_allowed(named) and not tunnel.is_local(named)  # allowed, but needs keys
    assert not local.host_allowed({"headers": [(b"host", b"127.0.0.1:9999")]})  # another port


def test_binding_off_loopback_warns_and_names_keyless_bots() -> None:
    out = io.StringIO()
    binding_warning(DevAccess.for_binding("127.0.0.1", PORT), ["Open"], out)
    assert out.getvalue() == ""
    binding_warning(DevAccess.for_binding("0.0.0.0", PORT), ["Open"], out)
    assert "WARNING: bound off loopback" in out.getvalue()
    assert "no access key for Open" in out.getvalue()


def test_open_playground_flag_is_gone(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["dev", "--open-playground"])
    assert "--open-playground" in capsys.readouterr().err


async def test_playground_writes_need_json_same_origin_and_the_token(project: Path) -> None:
    server, playground = dev_server(project, ENV)
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
    good = {"content-type": "application/json", TOKEN_HEADER: playground.access.token}
    async with client(server) as c:
        page = await c.get("/")
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert playground.access.token in page.text
        assert (await c.post("/_polybot/chat/Open", content=body,
                             headers={**good, "content-type": "text/plain"})).status_code in (403, 415)
        assert (await c.post("/_polybot/chat/Open", content=body,
                             headers={"content-type": "application/json"})).status_code == 403
        for hostile in ({"origin": "http://127.0.0.1:9999"}, {"origin": "null"}, {"sec-fetch-site": "cross-site"},
                        {"sec-fetch-site": "same-site"}):
            refused = await c.post("/_polybot/chat/Open", content=body, headers={**good, **hostile})
            assert refused.status_code == 403, hostile
        same = await c.post("/_polybot/chat/Open", content=body,
                            headers={**good, "origin": f"http://127.0.0.1:{PORT}", "sec-fetch-site": "same-origin"})
        assert same.status_code == 200 and "event: done" in same.text


# --- finding 7: request handling --------------------------------------------------------------------

MALFORMED: list[bytes] = [
    b"", b"not json", b"{", b"null", b"[]", b'"query"', b"42", b"{}", b'{"type": 5}', b'{"type": null}',
    b'{"type": "query"}', b'{"type": "query", "version": "1.2", "query": "hi", "user_id": "u", '
    b'"conversation_id": "c", "message_id": "m"}',
    b'{"type": "query", "version": "1.2", "query": [5], "user_id": "u", "conversation_id": "c", "message_id": "m"}',
    b'{"type": "query", "version": "1.2", "query": [{"role": "user"}], "user_id": "u", "conversation_id": "c", '
    b'"message_id": "m"}',
    b'{"type": "settings"}', b'{"type": "report_feedback", "version": "1.2"}', b"\xff\xfe\x00",
    b"[" * 100_000 + b"]" * 100_000, b'{"type": "query", "query": {"a": 1}}',
]


@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
async def test_malformed_poe_bodies_get_400_with_one_line(project: Path, body: bytes,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    server, _ = dev_server(project, ENV)
    caplog.set_level(logging.DEBUG)
    async with client(server) as c:
        response = await c.post("/Keyed", content=body, headers={"authorization": f"Bearer {KEY}",
                                                                "content-type": "application/json"})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"messages": "x"}', b'{"messages": [5]}',
                                  b'{"messages": [{"content": 5}]}', b'{"params": []}', b"\xff",
                                  b'{"conversation_id": {}}'])
async def test_malformed_playground_bodies_get_400(project: Path, body: bytes) -> None:
    server, playground = dev_server(project, ENV)
    async with client(server) as c:
        for route in ("chat", "prompt"):
            response = await c.post(f"/_polybot/{route}/Open", content=body, headers={
                "content-type": "application/json", TOKEN_HEADER: playground.access.token})
            assert response.status_code == 400, response.text
            assert "\n" not in response.json()["detail"]


async def test_chunked_bodies_count_against_the_limit(project: Path) -> None:
    server, _ = dev_server(project, ENV)
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(MAX_BODY_BYTES // (1 << 20) + 4):
            sent += 1 << 20
            yield b" " * (1 << 20)

    async with client(server) as c:
        response = await c.post("/Keyed", content=chunks(), headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 413
    assert sent <= MAX_BODY_BYTES + 2 * (1 << 20)  # refused while streaming, not after reading it all


async def test_keys_are_compared_in_constant_time(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = security.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    server = BotServer(ENV)
    workspace = LiveBuild(project, on_put=server.put)
    workspace.refresh()
    async with client(server) as c:
        wrong = {"authorization": "Bearer " + "j" * 32}
        assert (await c.post("/Keyed", json=query(), headers=wrong)).status_code == 401
    assert calls and calls[0][1] == KEY.encode()


async def test_healthz_names_bots_only_to_trusted_callers(project: Path) -> None:
    serve = BotServer(ENV)
    LiveBuild(project, on_put=serve.put).refresh()
    async with client(serve, REMOTE, "bots.example.test") as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        known = await c.get("/healthz", headers={"authorization": f"Bearer {KEY}"})
        assert known.json()["bots"] == ["Keyed", "Open"]
    dev, _ = dev_server(project, ENV, DevAccess.for_binding("0.0.0.0", PORT))
    async with client(dev) as c:
        assert (await c.get("/healthz")).json()["bots"] == ["Keyed", "Open"]
    async with client(dev, REMOTE, f"192.168.1.5:{PORT}") as c:
        assert "bots" not in (await c.get("/healthz")).json()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with running(FakeOpenAI()) as oa:
        yield oa


def openai_bot(root: Path, fake: FakeOpenAI, name: str, extra: str = "") -> None:
    (root / "providers.toml").write_text(
        f'[openai]\nkind = "openai"\napi_base = "{fake.base_url}/v1"\napi_key_env = "OPENAI_API_KEY"\n'
        'default_model = "gpt-4o-mini"\ntimeout = 5\nmax_retries = 0\n')
    write_bot(root, name, 'provider = "openai"\ntemperature = 0.5\nmax_tokens = 200\n' + extra)


def sent(fake: FakeOpenAI) -> dict[str, Any]:
    body = fake.requests[-1].json
    assert isinstance(body, dict)
    return body


async def test_parameters_only_through_declared_controls_and_clamped(tmp_path: Path, fake: FakeOpenAI) -> None:
    openai_bot(tmp_path, fake, "Plain")
    openai_bot(tmp_path, fake, "Tuned", '[[controls]]\ncontrol = "slider"\nlabel = "T"\n'
               'parameter_name = "temperature"\n'
               'default_value = 0.5\nmin_value = 0\nmax_value = 1\nstep = 0.1\n')
    server, _ = dev_server(tmp_path, {})
    hostile = {"temperature": 7.5, "max_tokens": 99_999_999, "model": "gpt-4-expensive"}
    async with client(server) as c:
        await c.post("/Plain", json=query(parameters=hostile), headers={"authorization": "Bearer x"})
        body = sent(fake)
        assert body["temperature"] == 0.5 and body["model"] == "gpt-4o-mini"
        assert 99_999_999 not in (body.get("max_tokens"), body.get("max_completion_tokens"))
        await c.post("/Tuned", json=query(parameters=hostile), headers={"authorization": "Bearer x"})
        assert sent(fake)["temperature"] == 1
        await c.post("/Tuned", json=query(parameters={"temperature": "hot"}), headers={"authorization": "Bearer x"})
        assert sent(fake)["temperature"] == 0.5
        await c.post("/Plain", json=query(parameters={"max_tokens": 50}), headers={"authorization": "Bearer x"})
        assert 50 in (sent(fake).get("max_tokens"), sent(fake).get("max_completion_tokens"))  # lowering is fine


async def test_unencodable_text_is_cleaned_before_the_sdk(tmp_path: Path, fake: FakeOpenAI) -> None:
    openai_bot(tmp_path, fake, "Plain")
    server, _ = dev_server(tmp_path, {})
    body = json.dumps(query("bad \ud800 text")).encode()  # a lone surrogate, as JSON allows
    async with client(server) as c:
        response = await c.post("/Plain", content=body, headers={"authorization": "Bearer x",
                                                                 "content-type": "application/json"})
    assert "event: text" in response.text and "event: error" not in response.text
    assert len(fake.requests) == 1  # not blamed on the provider and retried
    assert sent(fake)["messages"][-1]["content"] == "bad \ufffd text"


# --- finding 3: a pathological render never blocks other conversations -------------------------------

PATHOLOGICAL = [
    '{% for i in "x"*99999 %}{% for m in messages %}{% endfor %}{% endfor %}',
    # 2**30 macro calls at query time (2**10 for the build's one-message sample): stops near the deadline
    "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}"
    "{{ f(messages|length // 100 + 10) }}",
]


@pytest.mark.parametrize("prompt", PATHOLOGICAL)
async def test_healthz_stays_fast_during_a_pathological_render(tmp_path: Path, prompt: str) -> None:
    write_bot(tmp_path, "Slow", prompt=prompt)
    server, _ = dev_server(tmp_path, {})
    conversation = query()
    conversation["query"] = [{"role": "user", "content": "hi"}] * 2000
    worst = 0.0
    done = False
    async with client(server) as c:

        async def poll() -> None:  # the loop's lateness: a blocked loop delays the request or the sleep
            nonlocal worst
            while not done:
                started = time.monotonic()
                assert (await c.get("/healthz")).status_code == 200
                await asyncio.sleep(0.01)
                worst = max(worst, time.monotonic() - started - 0.01)

        poller = asyncio.create_task(poll())
        await asyncio.sleep(0.05)
        started = time.monotonic()
        reply = (await c.post("/Slow", json=conversation, headers={"authorization": "Bearer x"})).text
        took = time.monotonic() - started
        done = True
        await poller
    print(f"render {took:.2f}s; worst /healthz latency during it: {worst * 1000:.0f} ms")
    assert "event: error" in reply and "system.md.j2" in reply
    assert took < 3.0  # the reply gives up at 1.25 s; the margin is for a loaded machine
    assert worst < 0.5, f"/healthz waited {worst:.2f}s during the render"


def test_allowed_params_clamps_each_control_kind() -> None:
    from polybot.controls import MAX_TEXT_PARAM, allowed_params

    controls = [
        {"control": "slider", "label": "T", "parameter_name": "temperature", "min_value": 0, "max_value": 1,
         "step": 0.1},
        {"control": "drop_down", "label": "M", "parameter_name": "model", "options": [{"value": "a", "name": "A"}]},
        {"control": "aspect_ratio", "label": "R", "parameter_name": "ratio",
         "options": [{"value": "1:1", "width": 1, "height": 1}]},
        {"control": "toggle_switch", "label": "S", "parameter_name": "short"},
        {"control": "text_field", "label": "N", "parameter_name": "note"},
    ]
    picked = {"temperature": 7.5, "model": "gpt-4-expensive", "ratio": "1:1", "short": "yes",
              "note": "n" * (MAX_TEXT_PARAM + 5), "top_p": 0.1, "max_tokens": 99_999_999}
    assert allowed_params(controls, picked) == {"temperature": 1, "ratio": "1:1", "note": "n" * MAX_TEXT_PARAM}
    assert allowed_params(controls, {"temperature": -3, "max_tokens": 100}, max_tokens=200) == \
        {"temperature": 0, "max_tokens": 100}
    assert allowed_params([], {"temperature": float("nan"), "max_tokens": 300}, max_tokens=200) == {}
