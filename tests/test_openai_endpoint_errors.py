"""/v1 never answers 500 (issue #26): every malformed body is a 400 in OpenAI's error shape whose
`param` names the field, and the real `openai` SDK raises BadRequestError with that param."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from polybot.app import create_app
from polybot.manifest import load_manifest
from polybot.tls import tls_context
from tests.fakes.server import serve_in_thread

REPO = Path(__file__).resolve().parents[1]
USER = {"role": "user", "content": "hi"}


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = create_app(load_manifest(REPO / "build" / "manifest.json"), REPO, allow_without_key=True,
                        environ={})
    with serve_in_thread(server.app) as url:
        yield url


def post(base: str, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{base}/v1/chat/completions", content=content, timeout=30, verify=tls_context(),
                      headers={"content-type": "application/json"})


def call(tool_calls: Any) -> list[dict[str, Any]]:
    return [{"role": "assistant", "content": "x", "tool_calls": tool_calls},
            {"role": "tool", "content": "r", "tool_call_id": "c1"}]


FUNCTION = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}

#: (body, param, words the message must hold)
MALFORMED: list[tuple[Any, str | None, str]] = [
    ({"model": "Echo", "messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role", "['user']"),
    ({"model": "Echo", "messages": [{"role": {"a": 1}, "content": "hi"}]}, "messages[0].role", "{'a': 1}"),
    ({"model": "Echo", "messages": [{"role": 5, "content": "hi"}]}, "messages[0].role", "received 5"),
    ({"model": "Echo", "messages": call("abc")}, "messages[0].tool_calls", "'abc'"),
    ({"model": "Echo", "messages": call([1, 2])}, "messages[0].tool_calls[0]", "received 1"),
    ({"model": "Echo", "messages": [*call([1]), USER][2:] + call([1])}, "messages[1].tool_calls[0]", "received 1"),
    ({"model": "Echo", "messages": call([{**FUNCTION, "function": {"name": "f", "arguments": {"a": 1}}}])},
     "messages[0].tool_calls[0].function.arguments", "{'a': 1}"),
    ({"model": "Echo", "messages": call([{**FUNCTION, "function": "f"}])}, "messages[0].tool_calls[0].function", "'f'"),
    ({"model": "Echo", "messages": call([{**FUNCTION, "id": 7}])}, "messages[0].tool_calls[0].id", "received 7"),
    ({"model": "Echo", "messages": call([{**FUNCTION, "function": {"name": None}}])},
     "messages[0].tool_calls[0].function.name", "None"),
    ({"model": "Echo", "messages": [{"role": "tool", "content": "r", "tool_call_id": 5}]},
     "messages[0].tool_call_id", "received 5"),
    ({"model": "Echo", "messages": [{"role": "user", "content": "hi", "name": 5}]}, "messages[0].name", "5"),
    ({"model": "Echo", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
     "messages[0].content[0].text", "5"),
    ({"model": "Echo", "messages": [{"role": "system", "content": [{"text": "x"}]}]}, "messages[0].content[0]",
     "content part"),
    ({"model": "Echo", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "received 5"),
    ({"model": "Echo", "messages": ["hi"]}, "messages[0]", "'hi'"),
    ({"model": "Echo", "messages": []}, "messages", "at least 1"),
    ({"messages": [USER]}, "model", "required"),
    ({"model": 5, "messages": [USER]}, "model", "received 5"),
    ({"model": "Echo", "messages": [USER], "temperature": "NaN"}, "temperature", "finite"),
    ({"model": "Echo", "messages": [USER], "stop": [1]}, "stop", "[1]"),
    ({"model": "Echo", "messages": [USER], "tool_choice": 5}, "tool_choice", "received 5"),
    ({"model": "Echo", "messages": [USER], "tools": [5]}, "tools[0]", "received 5"),
    ({"model": "Echo", "messages": [USER], "stream_options": "yes"}, "stream_options", "'yes'"),
    ({"model": "Echo", "messages": [{"role": "user", "content": "x" * 500, "name": ["x" * 500]}]},
     "messages[0].name", "..."),
    (b"[" * 100_000 + b"]" * 100_000, None, "deeper than 64"),
    (b'{"model": "Echo", "messages": [{"role": "user", "content": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}",
     None, "deeper than 64"),
    (b'{"model": "Echo", "messages": [{"role": "user", "content": ' + b"[" * 500 + b"]" * 500 + b"}]}",
     None, "deeper than 64"),
    (b"\xff", None, "not UTF-8"),
    (b'{"model": "Echo",', None, "line 1 column"),
    (b"[]", None, "received list"),
]


@pytest.mark.parametrize("body,param,words", MALFORMED, ids=[str(i) for i in range(len(MALFORMED))])
def test_malformed_bodies_are_400_naming_the_field(base: str, body: Any, param: str | None, words: str) -> None:
    for stream in (False, True):
        sent = {**body, "stream": stream} if isinstance(body, dict) else body
        response = post(base, sent)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
        assert error["param"] == param
        assert words in error["message"], error["message"]
        assert len(error["message"]) < 400 and "Traceback" not in error["message"]
        if param is not None:
            assert error["message"].startswith(f"{param}: ")


def test_the_sdk_sees_a_bad_request_with_its_param(base: str) -> None:
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="Echo", messages=call([{**FUNCTION, "function": {  # type: ignore[arg-type]
            "name": "f", "arguments": {"a": 1}}}]))
    assert info.value.param == "messages[0].tool_calls[0].function.arguments"  # type: ignore[attr-defined]


@pytest.mark.parametrize("method,path,status", [
    ("POST", "/v1/models", 405), ("GET", "/v1/chat/completions", 405), ("DELETE", "/v1/models/Echo", 405),
    ("GET", "/v1/embeddings", 404), ("POST", "/v1/completions", 404), ("GET", "/v1/models/Nope", 404),
])
def test_other_routes_and_methods_answer_in_openais_shape(base: str, method: str, path: str, status: int) -> None:
    response = httpx.request(method, f"{base}{path}", content=b"{", timeout=30, verify=tls_context())
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_models_retrieve(base: str) -> None:
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
    assert client.models.retrieve("echo").id == "Echo"


def test_no_request_the_schema_allows_or_breaks_gets_a_5xx(base: str) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    anything = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3), max_leaves=8)
    text = st.text(max_size=30)
    part = st.one_of(st.fixed_dictionaries({"type": st.just("text"), "text": text | anything}),
                     st.fixed_dictionaries({"type": st.just("image_url"),
                                            "image_url": st.fixed_dictionaries({"url": st.sampled_from([
                                                "https://x/cat.png", "data:image/png;base64,iVBO", "ftp://x"])})
                                            | anything}),
                     anything)
    function = st.fixed_dictionaries({"name": text | anything, "arguments": st.just("{}") | text | anything})
    tool_call = st.fixed_dictionaries({"id": text | anything, "type": st.just("function"),
                                       "function": function | anything}) | anything
    message = st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"]) | anything},
        optional={"content": text | st.lists(part, max_size=3) | anything, "name": text | anything,
                  "tool_calls": st.lists(tool_call, max_size=2) | anything, "tool_call_id": text | anything})
    tool = st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
        {"name": text, "parameters": st.just({"type": "object"}) | anything})}) | anything
    body = st.fixed_dictionaries(
        {"model": st.sampled_from(["Echo", "echo", "Nope"]) | anything, "messages": st.lists(message, max_size=4)},
        optional={"stream": st.booleans() | anything, "temperature": st.floats() | anything,
                  "max_tokens": st.integers() | anything, "stop": text | st.lists(text, max_size=5) | anything,
                  "n": st.integers(-1, 3) | anything, "tools": st.lists(tool, max_size=2) | anything,
                  "tool_choice": st.sampled_from(["none", "auto"]) | anything,
                  "stream_options": st.fixed_dictionaries({"include_usage": st.booleans() | anything}) | anything,
                  "user": text | anything, "tone": anything})

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body)
    def one_request(sent: dict[str, Any]) -> None:
        response = post(base, json.dumps(sent, allow_nan=True).encode())
        assert response.status_code < 500, (sent, response.text)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert set(error) == {"message", "type", "param", "code"}, error
            assert isinstance(error["message"], str) and "Traceback" not in error["message"]

    one_request()
