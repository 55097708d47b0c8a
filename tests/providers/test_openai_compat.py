"""OpenAI-compatible servers as they really stream (issue #26), through the real `openai` SDK.

tests/providers/test_outcomes.py maps each recorded stream of these servers onto its outcome; this
module checks the rest: the tool calls they assemble into, how a stream may and may not end, and a
bot running the tool an OpenRouter stream asks for, then answering.
"""

from __future__ import annotations

import json
from pathlib import Path

import fastapi_poe as fp
import pytest

from polybot.providers.base import ProviderError, Usage
from polybot.reliability import ToolActivity
from tests.fakes.openai_wire import FakeOpenAI
from tests.fakes.streams import recorded
from tests.fakes.wire import Reply, running
from tests.providers.conftest import Harness, chat, collect
from tests.test_runtime import make_bot, request, runtime

KIND = "openai"

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def body(*deltas: dict[str, object], finish: str | None = None, done: bool = True) -> bytes:
    """A stream of `deltas` (one chunk each), the last chunk naming `finish`, then [DONE] if `done`."""
    chunks = [{**HEAD, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    if finish is not None:
        chunks.append({**HEAD, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    out = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return out + (b"data: [DONE]\n\n" if done else b"")


def raw(data: bytes) -> Reply:
    return Reply(raw=data)


async def calls_of(h: Harness, reply: Reply) -> list[tuple[str, str, str]]:
    h.fake.push(reply)
    usage = Usage()
    await collect(h.provider(), usage=usage)
    assert usage.outcome == "tool_call"
    assert usage.turn is not None and usage.turn.tool_calls == tuple(usage.calls)
    return [(c.id, c.name, c.arguments) for c in usage.calls]


async def test_the_recorded_openrouter_tool_call_is_assembled(h: Harness) -> None:
    assert await calls_of(h, recorded("openrouter_tool_call_no_finish.sse")) == [
        ("weather:0", "weather", '{"location": "Florence, Italy"}')]


async def test_vllm_ids_sent_only_in_a_calls_first_delta(h: Harness) -> None:
    assert await calls_of(h, recorded("vllm_tool_call.sse")) == [
        ("chatcmpl-tool-040af537f3e14bd6986646facde02ce3", "get_weather", '{"city": "Paris"}')]


async def test_ollama_call_without_index(h: Harness) -> None:
    assert await calls_of(h, recorded("ollama_tool_call.sse")) == [
        ("call_k3k0zpfa", "get_weather", '{"city":"Paris"}')]


async def test_whole_calls_without_index_stay_apart(h: Harness) -> None:
    reply = raw(body({"tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                                     {"type": "function", "function": {"name": "g", "arguments": '{"x": 1}'}}]},
                     {"tool_calls": [{"function": {"name": "h", "arguments": "{}"}}]}))
    assert await calls_of(h, reply) == [("a", "f", "{}"), ("call_1", "g", '{"x": 1}'), ("call_2", "h", "{}")]


async def test_numeric_and_missing_ids_and_object_arguments(h: Harness) -> None:
    reply = raw(body({"tool_calls": [{"index": 0, "id": 7, "function": {"name": "f", "arguments": {"a": 1}}}]},
                     {"tool_calls": [{"index": 1, "function": {"name": "g", "arguments": ""}}]},
                     finish="tool_calls"))
    assert await calls_of(h, reply) == [("7", "f", '{"a": 1}'), ("call_1", "g", "")]


async def test_done_without_a_finish_reason_is_a_stop(h: Harness) -> None:
    h.fake.push(raw(body({"role": "assistant", "content": "Hi"}, {"content": "!"})))
    usage = Usage()
    assert await collect(h.provider(), usage=usage) == ["Hi", "!"]
    assert (usage.outcome, usage.finish_reason) == ("ok", None)


async def test_ollama_empty_finish_reasons_then_done_is_a_stop(h: Harness) -> None:
    """Ollama once sent finish_reason "" in every chunk (ollama/ollama#4357)."""
    chunk = {**HEAD, "system_fingerprint": "fp_ollama",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": " Hello"}, "finish_reason": ""}]}
    h.fake.push(raw(b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"))
    usage = Usage()
    assert await collect(h.provider(), usage=usage) == [" Hello"]
    assert usage.outcome == "ok"


@pytest.mark.parametrize("reply,message", [
    (raw(body({"content": "Hi"}, done=False)), "openai ended the stream before finishing the reply"),
    (raw(body({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": '{"a": '}}]})),
     "openai ended the stream in the middle of a tool call"),
    (raw(body({"content": "Hi"}, finish="error")), "openai failed mid-stream: the reply ended in an error"),
    (raw(b'data: {"choices": "nope"}\n\n'), "openai sent a malformed stream"),
    (raw(b'data: {"choices": [{"delta": "nope"}]}\n\n'), "openai sent a malformed stream"),
    (raw(body({"tool_calls": [5]}, finish="tool_calls")), "openai sent a malformed stream"),
], ids=["no [DONE]", "half a tool call", "finish_reason error", "choices a string", "delta a string",
        "a tool call a number"])
async def test_streams_that_did_not_finish_are_retryable_errors(h: Harness, reply: Reply, message: str) -> None:
    h.fake.push(reply)
    with pytest.raises(ProviderError) as info:
        await collect(h.provider(), chat())
    assert (info.value.message, info.value.retryable) == (message, True)


HOOKS = '''
def weather(location: str) -> str:
    """The weather at a location."""
    return f"40 C in {location}"
'''


async def test_a_bot_runs_the_tool_an_openrouter_stream_asks_for(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's report: OpenRouter's tool call ends in [DONE] with no finish reason; other clients
    run the tool and answer, and so must polybot (not retry into "ended the stream ...")."""
    monkeypatch.setenv("ROUTER_KEY", "sk-or-test")
    with running(FakeOpenAI(recorded("openrouter_tool_call_no_finish.sse"),
                            Reply(chunks=["It is 40 C", " in Florence."]))) as fake:
        (tmp_path / "providers.toml").write_text(
            f'[router]\nkind = "openai"\napi_base = "{fake.base_url}/v1"\napi_key_env = "ROUTER_KEY"\n'
            'default_model = "moonshotai/kimi-k2-0905"\nmax_retries = 0\ntimeout = 10\n')
        make_bot(tmp_path, "Weather", 'provider = "router"\ntools = ["weather"]\n', "Use tools.", hooks=HOOKS)
        rt = runtime(tmp_path, "Weather")
        try:
            events = [e async for e in rt.respond(request(("user", "Weather in Florence?")))]
        finally:
            await rt.pool.aclose()
    assert not [e for e in events if isinstance(e, fp.ErrorResponse)]
    text = "".join(e.text for e in events if isinstance(e, fp.PartialResponse) and not isinstance(e, fp.MetaResponse))
    assert text.endswith("It is 40 C in Florence.")
    assert [(a.tool, a.result) for a in events if isinstance(a, ToolActivity)] == [
        ("weather", "40 C in Florence, Italy")]
    assert len(fake.requests) == 2  # no retry: the first stream was finished
    sent = fake.requests[1].json["messages"][-1]
    assert sent == {"role": "tool", "tool_call_id": "weather:0", "content": "40 C in Florence, Italy"}
