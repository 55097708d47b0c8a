"""SPEC §6 outcomes at the adapter: recorded provider streams -> the real SDK -> chunks and Usage.

Each case replays a file of tests/fakes/streams byte for byte from the matching wire fake (its
SOURCES entry says which documentation it copies) and checks what the adapter makes of it: the
answer text, the reasoning (`Thinking`), the exception (`Refused`, or a ProviderError with a Poe
error_type) and every Usage field the reply log line reports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from polybot.providers.base import ChatRequest, Message, ProviderError, Refused, Thinking, Usage
from tests.fakes.anthropic_wire import FakeAnthropic
from tests.fakes.gemini_wire import FakeGemini
from tests.fakes.openai_wire import FakeOpenAI
from tests.fakes.streams import HERE, SOURCES, recorded
from tests.fakes.wire import FakeProvider, running
from tests.providers.conftest import Harness, Kind

KINDS = {"openai": Kind("openai", FakeOpenAI, "/v1"), "anthropic": Kind("anthropic", FakeAnthropic, ""),
         "gemini": Kind("gemini", FakeGemini, "")}


@dataclass(frozen=True)
class Case:
    kind: str
    stream: str  # file in tests/fakes/streams
    text: list[str] = field(default_factory=list)  # answer chunks, in order
    thinking: list[str] = field(default_factory=list)  # Thinking chunks, in order
    usage: dict[str, Any] = field(default_factory=dict)  # expected Usage fields
    refused: str | None = None  # Refused, with this message
    error_type: str | None = None  # ProviderError (not Refused), with this Poe error_type
    failed: str | None = None  # a retryable ProviderError, with this message
    status: int = 200


CASES = {
    # --- a whole reply: the reference examples, as printed ---------------------------------
    "openai reference chunks": Case(
        "openai", "openai_reference.sse", text=["Hello"],
        usage={"finish_reason": "stop", "outcome": "ok", "input_tokens": None}),
    "anthropic reference hello": Case(
        "anthropic", "anthropic_hello.sse", text=["Hello", "!"],
        usage={"finish_reason": "end_turn", "outcome": "ok", "input_tokens": 25, "output_tokens": 15}),
    # --- refused ---------------------------------------------------------------------------
    "anthropic stop_reason refusal": Case(
        "anthropic", "anthropic_refusal.sse", text=["Sure, the first step"],
        refused='anthropic declined to answer: the model stopped with stop_reason "refusal" (its safety '
                'policy); a fallback model may answer',
        usage={"finish_reason": "refusal", "input_tokens": 21, "output_tokens": 6, "cached_tokens": 0}),
    "openai delta.refusal": Case(
        "openai", "openai_refusal.sse",
        refused="openai declined to answer: I'm sorry, I cannot assist with that request.",
        usage={"finish_reason": "stop", "input_tokens": 81, "output_tokens": 11, "reasoning_tokens": 0}),
    "openai finish_reason content_filter (Azure)": Case(
        "openai", "azure_content_filter.sse", text=["The battle scene opens"],
        refused="openai declined to answer: its content filter stopped the reply",
        usage={"finish_reason": "content_filter"}),
    "openai 400 code content_filter (Azure prompt filter)": Case(
        "openai", "azure_prompt_filtered.json", status=400,
        refused="openai declined to answer: its content filter blocked the prompt",
        usage={"finish_reason": "content_filter"}),
    "gemini finishReason SAFETY": Case(
        "gemini", "gemini_safety.sse", text=["Here is how"],
        refused="gemini declined to answer: the reply was stopped for SAFETY",
        usage={"finish_reason": "SAFETY", "input_tokens": 14, "output_tokens": 3}),
    "gemini finishReason RECITATION": Case(
        "gemini", "gemini_recitation.sse", text=["It was the best of times, it was the worst of times,"],
        refused="gemini declined to answer: the reply was stopped for RECITATION",
        usage={"finish_reason": "RECITATION"}),
    "gemini promptFeedback.blockReason": Case(
        "gemini", "gemini_prompt_blocked.sse",
        refused="gemini declined to answer: the prompt was blocked (SAFETY)",
        usage={"finish_reason": "SAFETY", "input_tokens": 9}),
    # --- truncated, with reasoning and cached token counts -------------------------------------
    "openai finish_reason length": Case(
        "openai", "openai_length_usage.sse", text=["Newton's three laws", " describe how forces"],
        usage={"finish_reason": "length", "outcome": "truncated", "input_tokens": 2006, "output_tokens": 300,
               "reasoning_tokens": 256, "cached_tokens": 1920}),
    "anthropic stop_reason max_tokens": Case(
        "anthropic", "anthropic_max_tokens_cached.sse",
        text=["The Euclidean algorithm repeatedly", " divides the larger number"],
        usage={"finish_reason": "max_tokens", "outcome": "truncated", "input_tokens": 12, "output_tokens": 10,
               "cached_tokens": 2048}),
    "gemini finishReason MAX_TOKENS": Case(
        "gemini", "gemini_max_tokens_cached.sse",
        text=["The Euclidean algorithm repeatedly", " divides the larger number"],
        usage={"finish_reason": "MAX_TOKENS", "outcome": "truncated", "input_tokens": 2060, "output_tokens": 10,
               "cached_tokens": 2048}),
    # --- a tool call with no tool declared -------------------------------------------------
    "openai tool_calls deltas": Case(
        "openai", "openai_tool_calls.sse",
        usage={"finish_reason": "tool_calls", "outcome": "tool_call", "tool_calls": ["get_weather"],
               "input_tokens": 68, "output_tokens": 16}),
    "anthropic tool_use block": Case(
        "anthropic", "anthropic_tool_use.sse",
        text=["Okay", ",", " let", "'s", " check", " the", " weather", " for", " San", " Francisco", ",", " CA", ":"],
        usage={"finish_reason": "tool_use", "outcome": "tool_call", "tool_calls": ["get_weather"],
               "input_tokens": 472, "output_tokens": 89}),
    "gemini functionCall part": Case(
        "gemini", "gemini_function_call.sse",
        usage={"finish_reason": "STOP", "outcome": "tool_call", "tool_calls": ["get_weather"],
               "reasoning_tokens": 50}),
    # --- thinking ------------------------------------------------------------------------------
    "anthropic thinking block (documented stream, no usage)": Case(
        "anthropic", "anthropic_thinking.sse", text=["27 * 453 = 12,231"],
        thinking=["Let me solve this step by step:\n\n1. First break down 27 * 453", "\n2. 453 = 400 + 50 + 3",
                  "\n3. 27 * 400 = 10,800", "\n4. 27 * 50 = 1,350", "\n5. 27 * 3 = 81",
                  "\n6. 10,800 + 1,350 + 81 = 12,231"],
        usage={"finish_reason": "end_turn", "outcome": "ok", "input_tokens": None, "output_tokens": None}),
    "gemini thought parts": Case(
        "gemini", "gemini_thinking.sse", text=["27 * 453 = 12,231"],
        thinking=["**Calculating the product**\n\nI'm splitting 453 into 400 + 50 + 3 and multiplying each "
                  "part by 27.\n"],
        usage={"finish_reason": "STOP", "outcome": "ok", "input_tokens": 12, "output_tokens": 9,
               "reasoning_tokens": 100}),
    "deepseek reasoning_content deltas": Case(
        "openai", "deepseek_reasoning.sse", text=["9.8", " is greater."],
        thinking=["Okay", ", 9.11 versus 9.8.", "\n9.8 is 9.80, and 80 > 11."],
        usage={"finish_reason": "stop", "outcome": "ok", "input_tokens": 18, "output_tokens": 40,
               "reasoning_tokens": 31, "cached_tokens": 0}),
    # --- OpenAI-compatible servers (docs/providers.md) -------------------------------------------
    "openrouter tool call, [DONE] without a finish reason": Case(
        "openai", "openrouter_tool_call_no_finish.sse",
        text=["I'll", " check", " the", " weather", " in", " Florence", ",", " Italy", "."],
        usage={"finish_reason": None, "outcome": "tool_call", "tool_calls": ["weather"], "input_tokens": 68,
               "output_tokens": 31, "cached_tokens": 0, "reasoning_tokens": 0}),
    "openrouter delta.reasoning, [DONE] without a finish reason": Case(
        "openai", "openrouter_reasoning_no_finish.sse", text=["Hello", "!", " How", " can", " I", " help", "?"],
        thinking=["The", " user", " wants", " a", " greeting", "."],
        usage={"finish_reason": None, "outcome": "ok", "input_tokens": 12, "output_tokens": 20,
               "reasoning_tokens": 6}),
    "openrouter error event mid-stream": Case(
        "openai", "openrouter_midstream_error.sse", text=["The", " tallest"],
        failed="openai failed mid-stream: Provider disconnected unexpectedly"),
    "groq usage in x_groq": Case(
        "openai", "groq_x_groq_usage.sse", text=["Fast", " inference", " matters", "."],
        usage={"finish_reason": "stop", "outcome": "ok", "input_tokens": 43, "output_tokens": 5}),
    "ollama tool call without index, finish_reason stop": Case(
        "openai", "ollama_tool_call.sse",
        usage={"finish_reason": "stop", "outcome": "tool_call", "tool_calls": ["get_weather"]}),
    "vllm reasoning_content and a tool call": Case(
        "openai", "vllm_tool_call.sse", thinking=["The", " user", " asks", " for", " weather", "."],
        usage={"finish_reason": "tool_calls", "outcome": "tool_call", "tool_calls": ["get_weather"],
               "input_tokens": 160, "output_tokens": 30}),
    "vllm error object in a 200 stream": Case(
        "openai", "vllm_error_event.sse",
        failed="openai failed mid-stream: The decoder prompt (length 9000) is longer than the maximum model "
               "length of 8192."),
    "deepseek keep-alive comments": Case(
        "openai", "deepseek_keep_alive.sse", text=["Hi", " there"],
        usage={"finish_reason": "stop", "outcome": "ok", "input_tokens": 9, "output_tokens": 2}),
    # --- context overflow ----------------------------------------------------------------------
    "openai 400 context_length_exceeded": Case(
        "openai", "openai_context_length_exceeded.json", status=400, error_type="user_message_too_long"),
    "anthropic 400 prompt is too long": Case(
        "anthropic", "anthropic_prompt_too_long.json", status=400, error_type="user_message_too_long"),
    "gemini 400 input token count": Case(
        "gemini", "gemini_token_count.json", status=400, error_type="user_message_too_long"),
}


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeProvider]]:
    with running(FakeOpenAI()) as oa, running(FakeAnthropic()) as an, running(FakeGemini()) as ge:
        yield {"openai": oa, "anthropic": an, "gemini": ge}


@pytest.fixture
async def harnesses(fakes: dict[str, FakeProvider]) -> AsyncIterator[dict[str, Harness]]:
    found = {kind: Harness(KINDS[kind], fake) for kind, fake in fakes.items()}
    for fake in fakes.values():
        fake.queue.clear()
    yield found
    for h in found.values():
        for p in h.created:
            await p.aclose()


def ask() -> ChatRequest:
    return ChatRequest(model="model-x", system="Be brief.", messages=(Message("user", "What is 27 * 453?"),))


@pytest.mark.parametrize("cut", [False, True], ids=["whole", "cut mid-line"])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_recorded_stream_maps_onto_its_outcome(case: Case, cut: bool,
                                                     harnesses: dict[str, Harness]) -> None:
    """The same result whether the body arrives whole or cut mid-line (mid-CRLF for Gemini)."""
    h = harnesses[case.kind]
    h.fake.push(recorded(case.stream, case.status, cut))
    usage = Usage()
    chunks: list[object] = []
    failure: ProviderError | None = None
    try:
        async for chunk in h.provider().stream(ask(), usage):
            chunks.append(chunk)
    except ProviderError as exc:
        failure = exc

    assert [c for c in chunks if isinstance(c, str)] == case.text
    assert [c.text for c in chunks if isinstance(c, Thinking)] == case.thinking
    assert all(isinstance(c, str | Thinking) for c in chunks)
    if case.refused is not None:
        assert isinstance(failure, Refused), failure
        assert failure.message == case.refused
        assert not failure.retryable
    elif case.error_type is not None:
        assert failure is not None and not isinstance(failure, Refused)
        assert (failure.status, failure.error_type, failure.retryable) == (case.status, case.error_type, False)
    elif case.failed is not None:
        assert failure is not None and not isinstance(failure, Refused)
        assert (failure.message, failure.retryable) == (case.failed, True)
    else:
        assert failure is None, failure.message
    for name, value in case.usage.items():
        assert getattr(usage, name) == value, name


def test_every_recorded_stream_names_its_source_and_is_used() -> None:
    files = {p.name for p in HERE.iterdir() if p.suffix in (".sse", ".json")}
    assert files == set(SOURCES)
    assert files == {c.stream for c in CASES.values()}
    assert all(s.startswith(("verbatim: https://", "shape: https://")) for s in SOURCES.values())


def test_gemini_streams_keep_the_crlf_framing_of_the_wire() -> None:
    for name in SOURCES:
        if name.startswith("gemini_") and name.endswith(".sse"):
            raw = (HERE / name).read_bytes()
            assert raw.count(b"\r\n\r\n") == raw.count(b"data: ") > 0, name
            assert b"\n" not in raw.replace(b"\r\n", b""), name
