"""Hypothesis-driven Poe requests against the app: always a valid Poe event stream, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from polybot.app import create_app
from polybot.manifest import load_manifest
from polybot.tls import tls_context
from tests.fakes.server import serve_in_thread

REPO = Path(__file__).resolve().parents[1]
VALID_EVENTS = {"text", "replace_response", "error", "done", "meta", "suggested_reply", "json", "file", "data"}

@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    server = create_app(load_manifest(REPO / "build" / "manifest.json"), REPO, allow_without_key=True,
                        environ={})
    with serve_in_thread(server.app) as url:
        yield url


def test_any_conversation_gets_a_valid_event_stream(base_url: str) -> None:
    # Imported here, not at the top: hypothesis takes 0.7 s to import, paid only by the worker that runs this.
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    text = st.one_of(st.text(max_size=200), st.just(""), st.just("{{ 7 * 7 }}{% for x in range(9) %}"),
                     st.text(alphabet="\u202e\u0000\ud7ff\U0001f600\n\t ", max_size=50), st.just("x" * 100_000),
                     st.just("bot info"))
    attachment = st.fixed_dictionaries({
        "url": st.one_of(st.just("not a url"), st.just("http://127.0.0.1:1/x.png"), st.text(max_size=30)),
        "content_type": st.sampled_from(["image/png", "text/plain", "application/pdf", "", "image/"]),
        "name": st.text(max_size=20),
    }, optional={"parsed_content": st.one_of(st.none(), st.text(max_size=100))})
    message = st.fixed_dictionaries({
        "role": st.sampled_from(["user", "bot", "system", "tool"]),
        "content": text,
    }, optional={"attachments": st.lists(attachment, max_size=2),
                 "parameters": st.dictionaries(st.sampled_from(["temperature", "model", "x"]),
                                               st.one_of(st.integers(), st.text(max_size=5), st.none()), max_size=2)})

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(query=st.lists(message, max_size=5), temperature=st.one_of(st.none(), st.floats(-1, 5)))
    def one_request(query: list[dict[str, object]], temperature: float | None) -> None:
        body = {"version": "1.2", "type": "query", "query": query, "user_id": "u", "conversation_id": "c",
                "message_id": "m", "temperature": temperature}
        response = httpx.post(f"{base_url}/Echo", json=body, headers={"Authorization": "Bearer x"}, timeout=30,
                              verify=tls_context())
        assert response.status_code in (200, 400), response.text  # 400: not a Poe request (one line)
        if response.status_code != 200:
            return
        events = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
        assert events and events[-1] == "done"
        assert set(events) <= VALID_EVENTS
        for line in response.text.splitlines():
            if line.startswith("data: "):
                data = json.loads(line[6:])
                # An error event is fine (e.g. a hostile template); a crash reported as one is not.
                said = str(data.get("text", "")) if isinstance(data, dict) else ""
                assert "internal error" not in said and "unexpected issue" not in said, said

    one_request()
