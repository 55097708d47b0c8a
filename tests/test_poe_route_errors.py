"""The Poe route's rarer request types and fields (issue #26): a malformed one is a 400 naming the
field and showing the value received, never a 5xx; the well-formed ones are answered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from polybot.app import create_app
from polybot.manifest import load_manifest
from polybot.tls import tls_context
from tests.fakes.server import serve_in_thread

REPO = Path(__file__).resolve().parents[1]
BASE = {"version": "1.2", "user_id": "u", "conversation_id": "c", "message_id": "m"}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    server = create_app(load_manifest(REPO / "build" / "manifest.json"), REPO, allow_without_key=True,
                        environ={})
    with serve_in_thread(server.app) as url:
        yield url


def post(base: str, body: Any) -> httpx.Response:
    return httpx.post(f"{base}/Echo", content=json.dumps(body).encode(), timeout=30, verify=tls_context(),
                      headers={"content-type": "application/json", "authorization": "Bearer x"})


def query(**fields: Any) -> dict[str, Any]:
    return {**BASE, "type": "query", "query": HI, **fields}


MALFORMED: list[tuple[dict[str, Any], str]] = [
    ({**BASE, "type": "unknown_kind"}, "type: expected one of query, settings"),
    ({**BASE, "type": ["query"]}, "got ['query']"),
    ({"type": "settings", "version": 5}, "version: Input should be a valid string, got 5"),
    ({**BASE, "type": "report_feedback", "feedback_type": 5},
     "feedback_type: Input should be 'like' or 'dislike', got 5"),
    ({**BASE, "type": "report_reaction", "reaction": None}, "reaction: Input should be a valid string, got None"),
    ({**BASE, "type": "report_error", "message": 5, "metadata": {}}, "message: Input should be a valid string, got 5"),
    ({**BASE, "type": "report_error", "metadata": {}}, "message: Field required"),
    (query(tools=[5]), "tools.0: Input should be a valid dictionary or instance of ToolDefinition, got 5"),
    (query(tool_calls=[{"id": "1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]),
     "tool_calls.0.function.arguments: Input should be a valid string, got {'a': 1}"),
    (query(tool_results=[{"role": "tool", "name": "f", "tool_call_id": "1", "content": 5}]),
     "tool_results.0.content: Input should be a valid string, got 5"),
    (query(logit_bias={"a": "x"}), "logit_bias.a: "),
    (query(metadata=5), "metadata: Input should be a valid string, got 5"),
    (query(users=[5]), "users.0: "),
    (query(stop_sequences="x" * 500), "stop_sequences: Input should be a valid list, got 'xxxx"),
    (query(language_code=5), "language_code: Input should be a valid string, got 5"),
    (query(query=[{"role": "user", "content": "hi", "sender": {"id": 5}}]), "query.0.sender.id: "),
    (query(query=[{"role": "user", "content": "hi", "content_type": "text/html"}]),
     "query.0.content_type: Input should be 'text/markdown' or 'text/plain', got 'text/html'"),
    (query(query=[{"role": "user", "content": "hi", "attachments": [{"url": 5}]}]), "query.0.attachments.0.url: "),
]


@pytest.mark.parametrize("body,words", MALFORMED, ids=[str(i) for i in range(len(MALFORMED))])
def test_malformed_rarer_requests_are_400_naming_the_field(base: str, body: dict[str, Any], words: str) -> None:
    response = post(base, body)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert words in detail and "\n" not in detail and len(detail) < 400, detail


@pytest.mark.parametrize("body", [
    {**BASE, "type": "settings"},
    {**BASE, "type": "report_feedback", "feedback_type": "like"},
    {**BASE, "type": "report_reaction", "reaction": "\U0001f44d"},
    {**BASE, "type": "report_error", "message": "boom", "metadata": {}},
    query(skip_system_prompt=True, logit_bias={"42": 1.0}, stop_sequences=["END"], language_code="fr",
          metadata="meta", users=[{"id": "u", "name": "Ann"}]),
], ids=["settings", "report_feedback", "report_reaction", "report_error", "query extras"])
def test_well_formed_rarer_requests_are_answered(base: str, body: dict[str, Any]) -> None:
    assert post(base, body).status_code == 200


def test_no_rarer_request_gets_a_5xx(base: str) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    anything = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=3), max_leaves=6)
    fields = {"version": st.just("1.2") | anything, "user_id": st.just("u") | anything,
              "conversation_id": st.just("c") | anything, "message_id": st.just("m") | anything,
              "feedback_type": st.sampled_from(["like", "dislike"]) | anything,
              "reaction": st.text(max_size=4) | anything, "message": st.text(max_size=10) | anything,
              "metadata": st.dictionaries(st.text(max_size=5), anything, max_size=2) | anything,
              "tools": anything, "tool_calls": anything, "tool_results": anything, "logit_bias": anything,
              "users": anything, "stop_sequences": anything, "temperature": anything, "language_code": anything,
              "skip_system_prompt": anything, "query": st.just(HI) | anything}
    body = st.fixed_dictionaries(
        {"type": st.sampled_from(["settings", "report_feedback", "report_reaction", "report_error", "query"])
         | anything},
        optional=fields)

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(body)
    def one_request(sent: dict[str, Any]) -> None:
        response = post(base, sent)
        assert response.status_code in (200, 400), (sent, response.text)

    one_request()
