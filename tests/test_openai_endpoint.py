"""The OpenAI-compatible endpoint, driven by the real openai SDK (OpenAI and AsyncOpenAI).

polybot's app runs in-process on 127.0.0.1; its provider is a fake OpenAI endpoint speaking the real
wire format, so every reply goes SDK -> polybot -> real AsyncOpenAI adapter -> fake and back.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import fastapi_poe as fp
import httpx
import openai
import pytest
from starlette.requests import Request

from polybot.app import create_app
from polybot.cli import main
from polybot.manifest import load_manifest
from polybot.tls import tls_context
from tests.fakes.openai_wire import FakeOpenAI
from tests.fakes.server import serve_in_thread
from tests.fakes.wire import Reply, running

KEY = "pk-project-key-0123456789"
KEYED_KEY = "pk-keyed-bot-key-987654321"
ACCESS = "a" * 32
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


class ScriptedOpenAI(FakeOpenAI):
    """FakeOpenAI with scripted finish reasons, and a flag raised when a stream is closed early."""

    def __init__(self) -> None:
        super().__init__()
        self.finishes: deque[str] = deque()
        self.cut = threading.Event()
        self.sent = 0

    def end_events(self, reply: Reply, request: Request) -> list[bytes]:
        events = super().end_events(reply, request)
        finish = self.finishes.popleft() if self.finishes else "stop"
        events[0] = events[0].replace(b'"finish_reason": "stop"', f'"finish_reason": "{finish}"'.encode())
        return events

    async def _events(self, reply: Reply, request: Request) -> AsyncIterator[bytes]:
        finished = False
        try:
            async for event in super()._events(reply, request):
                self.sent += 1
                yield event
            finished = True
        finally:
            if not finished:
                self.cut.set()


def write_project(root: Path, provider_url: str) -> None:
    (root / "providers.toml").write_text(
        f'[fake]\nkind = "openai"\napi_base = "{provider_url}/v1"\ndefault_model = "m"\n'
        "timeout = 5\nmax_retries = 0\nvision = true\n")
    bots = {
        "Sturdy": ('provider = "fake"\ntemperature = 0.3\n', "You are sturdy."),
        "Echo": ('provider = "echo"\n', "You echo."),
        "Tuned": ('provider = "echo"\nparams = { echo = "full" }\nmax_tokens = 50\n\n[[controls]]\n'
                  'control = "drop_down"\nlabel = "Tone"\nparameter_name = "tone"\ndefault_value = "plain"\n'
                  'options = [{ value = "plain", name = "Plain" }, { value = "pirate", name = "Pirate" }]\n',
                  "Tone: {{ params.tone }}"),
        "Keyed": ('provider = "echo"\n\n[openai_api]\nkey_env = "KEYED_API_KEY"\n', "Keyed."),
        "Backed": ('provider = "fake"\n\n[[fallback]]\nprovider = "echo"\n', "You are backed."),
    }
    for name, (toml, prompt) in bots.items():
        (root / "bots" / name).mkdir(parents=True)
        (root / "bots" / name / "bot.toml").write_text(toml)
        (root / "bots" / name / "system.md.j2").write_text(prompt)
    assert main(["build", "--project", str(root)]) == 0


ENVIRON = {"POLYBOT_API_KEY": KEY, "KEYED_API_KEY": KEYED_KEY,
           **{f"POE_ACCESS_KEY_{n.upper()}": ACCESS for n in ("Sturdy", "Echo", "Tuned", "Keyed", "Backed")}}


@pytest.fixture(scope="module")
def fake() -> Iterator[ScriptedOpenAI]:
    with running(ScriptedOpenAI()) as f:
        yield f


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, fake: ScriptedOpenAI) -> Path:
    root = tmp_path_factory.mktemp("openai-endpoint")
    write_project(root, fake.base_url)
    return root


@pytest.fixture(scope="module")
def base(project: Path) -> Iterator[str]:
    server = create_app(load_manifest(project / "build" / "manifest.json"), project, environ=ENVIRON)
    with serve_in_thread(server.app) as url:
        yield url


@pytest.fixture(autouse=True)
def fresh(fake: ScriptedOpenAI) -> None:
    fake.queue.clear()
    fake.finishes.clear()
    fake.cut.clear()
    fake.sent = 0


@pytest.fixture
def client(base: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0,
                       http_client=openai.DefaultHttpxClient(verify=tls_context())) as c:
        yield c


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


# --- replies ---------------------------------------------------------------------------------------


def test_a_non_streamed_reply_runs_the_bot(client: openai.OpenAI, fake: ScriptedOpenAI) -> None:
    fake.push(Reply(chunks=["Hello", " from", " the bot"], usage=(12, 3)))
    reply = client.chat.completions.create(model="Sturdy", messages=[
        {"role": "system", "content": "Answer in English."},
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"}])
    assert reply.object == "chat.completion" and reply.model == "Sturdy"
    assert reply.choices[0].message.content == "Hello from the bot"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (12, 3, 15)
    sent = fake.requests[-1].json
    # The bot's prompt, with the client's system message appended as Poe's own system text is.
    assert sent["messages"] == [
        {"role": "system", "content": "You are sturdy.\n\nAnswer in English."},
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How are you?"}]
    assert sent["temperature"] == 0.3  # the bot pins its temperature, as on Poe


async def test_a_streamed_reply_with_usage(base: str, fake: ScriptedOpenAI) -> None:
    fake.push(Reply(chunks=["one", " two", " three"], usage=(7, 3)))
    async with openai.AsyncOpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0) as client:
        stream = await client.chat.completions.create(model="Sturdy", messages=user("count"), stream=True,
                                                      stream_options={"include_usage": True})
        chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (7, 3)
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_a_stream_without_include_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="Echo", messages=user("a b"), stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def streamed(client: openai.OpenAI, model: str, text: str) -> tuple[str, str | None, str | None]:
    """(content, refusal, finish_reason) of a streamed reply."""
    content, refusal, finish = "", None, None
    for chunk in client.chat.completions.create(model=model, messages=user(text), stream=True):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            refusal = choice.delta.refusal or refusal
            finish = choice.finish_reason or finish
    return content, refusal, finish


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(("finish", "expected"), [("stop", "stop"), ("length", "length"),
                                                  ("content_filter", "content_filter")])
def test_finish_reasons(client: openai.OpenAI, fake: ScriptedOpenAI, stream: bool, finish: str,
                        expected: str) -> None:
    fake.push(Reply(chunks=["partial", " answer"]))
    fake.finishes.append(finish)
    if stream:
        content, refusal, got = streamed(client, "Sturdy", "go")
    else:
        reply = client.chat.completions.create(model="Sturdy", messages=user("go"))
        message = reply.choices[0].message
        content, refusal, got = message.content or "", message.refusal, reply.choices[0].finish_reason
    assert got == expected
    # The Poe notice about a truncated reply is left out: finish_reason says it.
    assert "cut short" not in content
    if expected == "content_filter":
        assert refusal is not None and "declined" in refusal
    else:
        assert content == "partial answer" and refusal is None


def test_a_tool_call_the_bot_does_not_declare_is_an_error(client: openai.OpenAI, fake: ScriptedOpenAI) -> None:
    fake.push(Reply(chunks=["thinking"]))
    fake.finishes.append("tool_calls")
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="Sturdy", messages=user("weather?"))
    assert caught.value.status_code == 500 and "declares no tools" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"


def test_an_image(client: openai.OpenAI, fake: ScriptedOpenAI) -> None:
    reply = client.chat.completions.create(model="Sturdy", messages=[{"role": "user", "content": [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": PNG}}]}])
    assert reply.choices[0].message.content == "Hello world"
    assert fake.requests[-1].json["messages"][-1]["content"] == [
        {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": PNG}}]


def test_temperature_max_tokens_and_stop_are_mapped(client: openai.OpenAI, fake: ScriptedOpenAI) -> None:
    client.chat.completions.create(model="Sturdy", messages=user("hi"), max_tokens=20, stop="END")
    sent = fake.requests[-1].json
    assert (sent["max_tokens"], sent["stop"]) == (20, ["END"])
    client.chat.completions.create(model="Sturdy", messages=user("hi"), max_completion_tokens=30, stop=["A", "B"])
    sent = fake.requests[-1].json
    assert (sent["max_tokens"], sent["stop"]) == (30, ["A", "B"])


def test_control_values_arrive_as_extra_body_fields(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="Tuned", messages=user("hi"), extra_body={"tone": "pirate"})
    assert "Tone: pirate" in (reply.choices[0].message.content or "")
    reply = client.chat.completions.create(model="Tuned", messages=user("hi"))
    assert "Tone: plain" in (reply.choices[0].message.content or "")


def test_the_bots_max_tokens_caps_the_clients(base: str, project: Path) -> None:
    from polybot.openai_api import ChatCompletionRequest, to_query
    from polybot.runtime import runtimes_from_manifest

    runtime = next(r for r in runtimes_from_manifest(load_manifest(project / "build" / "manifest.json"), project)
                   if r.spec.name == "Tuned")
    query = to_query(ChatCompletionRequest(model="Tuned", messages=user("hi"), max_tokens=500), runtime)
    assert query.query[-1].parameters == {"max_tokens": 50}


def test_the_same_bot_answers_poe_and_openai_clients_alike(client: openai.OpenAI, base: str) -> None:
    async def poe() -> str:
        text = ""
        request = fp.QueryRequest(version="1.2", type="query", query=[fp.ProtocolMessage(role="user",
                                  content="the same words")], user_id="u", conversation_id="c", message_id="m")
        async for m in fp.stream_request(request, "Sturdy", ACCESS, base_url=base + "/", num_tries=1):
            text = m.text if m.is_replace_response else text + m.text
        return text

    poe_text = asyncio.run(poe())
    reply = client.chat.completions.create(model="Sturdy", messages=user("the same words"))
    assert poe_text == reply.choices[0].message.content == "Hello world"
    echo = client.chat.completions.create(model="Echo", messages=user("the same words"))
    assert echo.choices[0].message.content == "the same words"


def test_models_lists_the_bots_a_key_opens(base: str, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["Backed", "Echo", "Sturdy", "Tuned"]
    with openai.OpenAI(base_url=base + "/v1", api_key=KEYED_KEY, max_retries=0) as keyed:
        assert [m.id for m in keyed.models.list()] == ["Keyed"]
        assert keyed.chat.completions.create(model="Keyed", messages=user("yes")).choices[0].message.content == "yes"


# --- errors ----------------------------------------------------------------------------------------


def test_a_wrong_key_is_401(base: str) -> None:
    with openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError) as caught:
            bad.chat.completions.create(model="Sturdy", messages=user("hi"))
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
    assert "wrong" not in caught.value.message
    assert httpx.post(base + "/v1/chat/completions", json={"model": "Sturdy", "messages": user("x")}).status_code == 401


def test_an_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="NoSuchBot", messages=user("hi"))
    assert caught.value.code == "model_not_found"
    # Another bot's key opens nothing here: that bot is hidden the same way.
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="Keyed", messages=user("hi"))


def test_model_names_match_without_regard_to_case(client: openai.OpenAI) -> None:
    assert client.chat.completions.create(model="echo", messages=user("hi")).choices[0].message.content == "hi"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_provider_429_is_passed_through_with_retry_after(client: openai.OpenAI, fake: ScriptedOpenAI,
                                                           stream: bool) -> None:
    fake.push(Reply(fault="429", retry_after=7))
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="Sturdy", messages=user("hi"), stream=stream)
    assert caught.value.status_code == 429 and caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "7"


def test_a_provider_5xx_is_passed_through(client: openai.OpenAI, fake: ScriptedOpenAI) -> None:
    fake.push(Reply(fault="529", retry_after=2))
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="Sturdy", messages=user("hi"))
    assert caught.value.status_code == 529 and caught.value.response.headers["retry-after"] == "2"


def test_a_failure_mid_stream_ends_it_with_an_error_event(client: openai.OpenAI, fake: ScriptedOpenAI) -> None:
    fake.push(Reply(chunks=["half", " a", " reply"], fault="drop", fault_after=1))
    got = ""
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="Sturdy", messages=user("hi"), stream=True):
            got += "".join(c.delta.content or "" for c in chunk.choices)
    assert got == "half" and "cut off" in caught.value.message


def test_a_failure_before_the_reply_of_a_whole_request_is_502(client: openai.OpenAI, fake: ScriptedOpenAI) -> None:
    fake.push(Reply(chunks=["half", " a", " reply"], fault="drop", fault_after=1))
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="Sturdy", messages=user("hi"))
    assert caught.value.status_code == 502  # never a silently truncated reply


def test_a_failover_mid_reply_is_whole_when_not_streamed(client: openai.OpenAI, fake: ScriptedOpenAI) -> None:
    fake.push(Reply(chunks=["half", " a", " reply"], fault="drop", fault_after=1))
    reply = client.chat.completions.create(model="Backed", messages=user("from the fallback"))
    assert reply.choices[0].message.content == "from the fallback"


def test_a_failover_after_text_was_streamed_ends_the_stream_with_an_error(client: openai.OpenAI,
                                                                         fake: ScriptedOpenAI) -> None:
    fake.push(Reply(chunks=["half", " a", " reply"], fault="drop", fault_after=1))
    got = ""
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="Backed", messages=user("from the fallback"), stream=True):
            got += "".join(c.delta.content or "" for c in chunk.choices)
    # Never two replies glued together: what was streamed stays, and the client is told to retry.
    assert got == "half" and "retry" in caught.value.message


def test_bad_requests_are_400(client: openai.OpenAI, base: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="Sturdy", messages=[{"role": "robot", "content": "x"}])
    assert caught.value.param == "messages[0].role"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="Sturdy", messages=user("x"), n=2)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="Sturdy", messages=[])
    response = httpx.post(base + "/v1/chat/completions", content=b"{not json",
                          headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    # Without a key, a bad request is first of all unauthorized.
    assert httpx.post(base + "/v1/chat/completions", content=b"{not json").status_code == 401


# --- cancel ----------------------------------------------------------------------------------------


async def test_cancelling_mid_stream_closes_the_provider_stream(base: str, fake: ScriptedOpenAI) -> None:
    fake.push(Reply(chunks=["tick"] * 100, delay=0.05))
    async with openai.AsyncOpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0) as client:
        stream = await client.chat.completions.create(model="Sturdy", messages=user("go on"), stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        await stream.close()
    assert await asyncio.to_thread(fake.cut.wait, 5), "the provider stream was not closed"
    assert fake.sent < 50


# --- tools -----------------------------------------------------------------------------------------

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}


def test_malformed_client_tools_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="Sturdy", messages=user("x"), tools=[{"type": "function"}])
    assert caught.value.param == "tools[0]"
    # tool_choice "none" asks for no tool: served.
    reply = client.chat.completions.create(model="Echo", messages=user("plain"), tools=[WEATHER],
                                           tool_choice="none")
    assert reply.choices[0].message.content == "plain"


class ToolCallingOpenAI(ScriptedOpenAI):
    """The first request is answered with a get_weather tool call, the next with text."""

    def chunk_event(self, text: str, request: Request) -> bytes:
        if text.startswith("{"):
            call = {"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": text}}
            return self._chunk(request, [{"index": 0, "delta": {"tool_calls": [call]}, "logprobs": None,
                                          "finish_reason": None}])
        return super().chunk_event(text, request)


def test_a_client_supplied_tool_round_trip(tmp_path: Path) -> None:
    with running(ToolCallingOpenAI()) as fake:
        write_project(tmp_path, fake.base_url)
        server = create_app(load_manifest(tmp_path / "build" / "manifest.json"), tmp_path, environ=ENVIRON)
        with serve_in_thread(server.app) as url, \
                openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0) as client:
            fake.push(Reply(chunks=['{"city": "Paris"}']))
            fake.finishes.append("tool_calls")
            first = client.chat.completions.create(model="Sturdy", messages=user("Weather in Paris?"),
                                                   tools=[WEATHER])  # type: ignore[list-item]
            assert first.choices[0].finish_reason == "tool_calls"
            calls = first.choices[0].message.tool_calls or []
            assert [(c.function.name, json.loads(c.function.arguments)) for c in calls  # type: ignore[union-attr]
                    ] == [("get_weather", {"city": "Paris"})]
            # Streamed, the same call arrives as a tool_calls delta and finish_reason "tool_calls".
            fake.push(Reply(chunks=['{"city": "Oslo"}']))
            fake.finishes.append("tool_calls")
            chunks = list(client.chat.completions.create(model="Sturdy", messages=user("Weather in Oslo?"),
                                                         tools=[WEATHER], stream=True))  # type: ignore[list-item]
            deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
            assert deltas and deltas[0][0].function.arguments == '{"city": "Oslo"}'  # type: ignore[index,union-attr]
            assert chunks[-1].choices[0].finish_reason == "tool_calls"
            fake.push(Reply(chunks=["It is sunny in Paris."]))
            second = client.chat.completions.create(model="Sturdy", tools=[WEATHER], messages=[
                *user("Weather in Paris?"), first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"}])
            assert second.choices[0].message.content == "It is sunny in Paris."
            assert fake.requests[-1].json["messages"][-1] == {"role": "tool", "tool_call_id": "call_1",
                                                               "content": "sunny"}


# --- keys in serve ---------------------------------------------------------------------------------


def test_serve_does_not_expose_the_endpoint_without_a_key(project: Path) -> None:
    from starlette.testclient import TestClient

    environ = {k: v for k, v in ENVIRON.items() if k != "POLYBOT_API_KEY"}
    server = create_app(load_manifest(project / "build" / "manifest.json"), project, environ=environ)
    with TestClient(server.app) as http:
        response = http.post("/v1/chat/completions", json={"model": "Echo", "messages": user("hi")})
        assert response.status_code == 401 and "POLYBOT_API_KEY is not set" in response.json()["error"]["message"]
    opened = create_app(load_manifest(project / "build" / "manifest.json"), project, environ=environ,
                        allow_without_key=True)
    with TestClient(opened.app) as http:
        response = http.post("/v1/chat/completions", json={"model": "Echo", "messages": user("hi")})
        assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "hi"


@pytest.mark.parametrize(("error", "status", "retry_after", "expected"), [
    (fp.ErrorResponse(text="too long", allow_retry=False, error_type="user_message_too_long"), 400, None,
     (400, "context_length_exceeded", None)),
    (fp.ErrorResponse(text="busy", allow_retry=True), 429, 0.2, (429, "rate_limit_exceeded", "1")),
    (fp.ErrorResponse(text="down", allow_retry=True), 503, None, (503, None, None)),
    (fp.ErrorResponse(text="timed out", allow_retry=True), None, None, (502, "upstream_error", None)),
    (fp.ErrorResponse(text="OPENAI_API_KEY is not set", allow_retry=False), None, None, (500, "bot_error", None)),
])
def test_how_a_failed_reply_maps_to_an_http_error(error: fp.ErrorResponse, status: int | None,
                                                  retry_after: float | None,
                                                  expected: tuple[int, str | None, str | None]) -> None:
    from polybot.openai_api import _Reply
    from polybot.reliability import ReplyInfo

    reply = _Reply(None, None, "Bot", info=ReplyInfo(status=status, retry_after=retry_after),  # type: ignore[arg-type]
                   error=error)
    failure = reply.failure()
    assert (failure.status, failure.body["error"]["code"], failure.headers.get("retry-after")) == expected


def test_serve_needs_no_poe_access_key_for_an_api_bot(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    (tmp_path / "bots" / "Public").mkdir(parents=True)
    (tmp_path / "bots" / "Public" / "bot.toml").write_text(
        'provider = "echo"\n\n[poe]\nkind = "api"\n\n[poe.pricing]\nprompt = "0.1"\ncompletion = "0.2"\n')
    (tmp_path / "bots" / "Public" / "system.md.j2").write_text("Hi.")
    assert main(["build", "--project", str(tmp_path)]) == 0
    server = create_app(load_manifest(tmp_path / "build" / "manifest.json"), tmp_path,
                        environ={"POLYBOT_API_KEY": KEY})
    with TestClient(server.app) as http:
        reply = http.post("/v1/chat/completions", json={"model": "Public", "messages": user("hi")},
                          headers={"authorization": f"Bearer {KEY}"})
        assert reply.json()["choices"][0]["message"]["content"] == "hi"
        # Its Poe path, which has no access key, answers no one.
        poe = http.post("/Public", json={"version": "1.2", "type": "query", "query": [], "user_id": "u",
                                         "conversation_id": "c", "message_id": "m"},
                        headers={"authorization": "Bearer anything"})
        assert poe.status_code == 401


def test_a_slow_first_token_starts_the_stream_with_keep_alives(base: str, client: openai.OpenAI, fake: ScriptedOpenAI,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import polybot.openai_api

    monkeypatch.setattr(polybot.openai_api, "FIRST_TOKEN_WAIT", 0.05)
    monkeypatch.setattr(polybot.openai_api, "KEEP_ALIVE", 0.05)
    fake.push(Reply(chunks=["slow", " start"], delay=0.2))
    with httpx.stream("POST", base + "/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                      json={"model": "Sturdy", "stream": True, "messages": user("hi")}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert ": keep-alive" in lines and lines[-1] == "data: [DONE]"
    fake.push(Reply(chunks=["slow", " start"], delay=0.2))
    assert streamed(client, "Sturdy", "hi") == ("slow start", None, "stop")


async def test_cancelling_before_the_first_token_closes_the_provider_stream(base: str, fake: ScriptedOpenAI,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import polybot.openai_api

    monkeypatch.setattr(polybot.openai_api, "FIRST_TOKEN_WAIT", 0.05)
    fake.push(Reply(chunks=["late"] * 5, delay=1.0))
    async with openai.AsyncOpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0) as client:
        stream = await client.chat.completions.create(model="Sturdy", messages=user("go on"), stream=True)
        async for chunk in stream:
            assert chunk.choices[0].delta.role == "assistant"
            break
        await stream.close()
    assert await asyncio.to_thread(fake.cut.wait, 5), "the provider stream was not closed"
    assert fake.sent < 4


@pytest.mark.parametrize("command", ["serve", "dev"])
def test_polybot_serve_and_dev_answer_chat_completions(project: Path, command: str) -> None:
    from tests.e2e.helpers import polybot_process

    with polybot_process(command, project=project, env=ENVIRON) as (base, output), \
            openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0) as client:
        reply = client.chat.completions.create(model="Echo", messages=user("from the command line"))
        assert reply.choices[0].message.content == "from the command line"
        if command == "serve":
            assert any("OpenAI-compatible endpoint: /v1/chat/completions" in line for line in output)
