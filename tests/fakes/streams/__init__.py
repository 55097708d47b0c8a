"""Recorded provider responses, replayed byte for byte by the wire fakes (`Reply(raw=...)`).

Where the provider's public API reference prints a stream, the file is that example verbatim (each
event ends with the blank line that terminates it on the wire). Where it prints none, the file has
the provider's exact event shapes, field order and framing (Gemini's CRLF, Azure's filter chunk),
with the values of a plausible reply. SOURCES says which is which, and where it comes from.
"""

from __future__ import annotations

from pathlib import Path

from tests.fakes.wire import Reply

HERE = Path(__file__).parent

ANTHROPIC_STREAMING = "https://docs.anthropic.com/en/docs/build-with-claude/streaming"
OPENAI_CHUNK = "https://platform.openai.com/docs/api-reference/chat/streaming"

#: file -> where its bytes come from ("verbatim: URL" or "shape: URL ...").
SOURCES: dict[str, str] = {
    # Anthropic
    "anthropic_hello.sse": f"verbatim: {ANTHROPIC_STREAMING} 'Basic streaming request' response",
    "anthropic_tool_use.sse": f"verbatim: {ANTHROPIC_STREAMING} 'Streaming request with tool use' response",
    "anthropic_thinking.sse": f"verbatim: {ANTHROPIC_STREAMING} 'Streaming request with extended thinking' "
                              "response (it has no `usage` in message_start or message_delta)",
    "anthropic_refusal.sse": "shape: https://docs.anthropic.com/en/docs/test-and-evaluate/strengthen-guardrails/"
                             "handle-streaming-refusals (stop_reason \"refusal\" in message_delta after partial "
                             "text); event shapes and usage fields as the API streams them for Claude 4 models",
    "anthropic_max_tokens_cached.sse": "shape: https://docs.anthropic.com/en/api/handling-stop-reasons "
                                       "(\"max_tokens\") and https://docs.anthropic.com/en/docs/build-with-claude/"
                                       "prompt-caching (usage.cache_read_input_tokens)",
    "anthropic_prompt_too_long.json": "shape: https://docs.anthropic.com/en/api/errors (400 invalid_request_error "
                                      "body with request_id); message as the API words a context overflow",
    # OpenAI and OpenAI-compatible
    "openai_reference.sse": f"verbatim: {OPENAI_CHUNK} 'The chat completion chunk object' example (its three "
                            "chunks, framed as data-only server-sent events ending in data: [DONE])",
    "openai_refusal.sse": "shape: https://platform.openai.com/docs/guides/structured-outputs#refusals "
                          "(delta.refusal; the refusal text is the guide's) in the chunk format of "
                          f"{OPENAI_CHUNK}, with stream_options.include_usage",
    "azure_content_filter.sse": "shape: https://learn.microsoft.com/en-us/azure/ai-foundry/openai/concepts/"
                                "content-filter (Azure OpenAI: prompt_filter_results chunk with empty choices, "
                                "finish_reason \"content_filter\")",
    "azure_prompt_filtered.json": "verbatim: https://learn.microsoft.com/en-us/azure/ai-services/openai/how-to/"
                                  "use-blocklists (the 400 body when a blocklist blocks the prompt: code "
                                  "content_filter, innererror ResponsibleAIPolicyViolation)",
    "openai_length_usage.sse": f"shape: {OPENAI_CHUNK} (finish_reason \"length\", usage chunk with empty choices) "
                               "and https://platform.openai.com/docs/guides/prompt-caching "
                               "(prompt_tokens_details.cached_tokens 1920 of 2006, as in the guide), "
                               "completion_tokens_details.reasoning_tokens of a reasoning model",
    "openai_tool_calls.sse": "shape: https://platform.openai.com/docs/guides/function-calling#streaming "
                             "(the guide's get_weather / Paris, France deltas, call id and argument pieces)",
    "deepseek_reasoning.sse": "shape: https://api-docs.deepseek.com/guides/reasoning_model (delta.reasoning_content "
                              "before delta.content; usage with prompt_cache_hit_tokens and reasoning_tokens)",
    "openai_context_length_exceeded.json": "shape: https://platform.openai.com/docs/guides/error-codes "
                                           "(400 invalid_request_error, code context_length_exceeded)",
    # OpenAI-compatible servers (docs/providers.md, "Compatible servers")
    "openrouter_tool_call_no_finish.sse": "shape: https://github.com/charmbracelet/fantasy/blob/main/providertests/"
                                          "testdata/TestOpenRouterCommon/kimi-k2/tool_streaming.yaml (a recorded "
                                          "OpenRouter stream: provider, native_finish_reason, tool-call deltas, "
                                          "usage chunk with cost) with finish_reason null throughout, and the "
                                          "': OPENROUTER PROCESSING' comments of https://openrouter.ai/docs/api/"
                                          "reference/streaming",
    "openrouter_reasoning_no_finish.sse": "shape: https://github.com/charmbracelet/fantasy/blob/main/providertests/"
                                          "testdata/TestOpenRouterThinking/glm-4.6/thinking-streaming.yaml "
                                          "(delta.reasoning with reasoning_details), no finish reason, [DONE]",
    "openrouter_midstream_error.sse": "shape: https://openrouter.ai/docs/api/reference/streaming ('Handling Errors "
                                      "During Streaming': an error object beside choices with finish_reason "
                                      "\"error\" in a 200 stream)",
    "groq_x_groq_usage.sse": "shape: https://github.com/charmbracelet/fantasy/blob/main/providertests/testdata/"
                             "TestGroqCommon/groq-kimi-k2-0905/tool_streaming.yaml (x_groq.id in the first chunk, "
                             "x_groq.usage with queue_time and prompt_time in the finishing one), without the "
                             "top-level usage Groq added later",
    "ollama_tool_call.sse": "shape: https://github.com/ollama/ollama/issues/4357 (fp_ollama chunks) and "
                            "https://github.com/ollama/ollama/pull/7963 (a whole tool call in one delta, the stream "
                            "finishing with \"stop\"), the call without `index` as Ollama sent it before adding one",
    "vllm_tool_call.sse": "shape: https://github.com/vllm-project/vllm/pull/19662 (vLLM chunks with \"usage\": null, "
                          "chatcmpl-tool- ids) and https://github.com/vllm-project/vllm/issues/18412 (the id only "
                          "in a call's first delta); delta.reasoning_content of vLLM's reasoning parsers",
    "vllm_error_event.sse": "shape: https://github.com/block/goose/pull/8031 (vLLM's {\"object\": \"error\", "
                            "\"message\": ...} inside a 200 stream); the message as vLLM words a prompt over "
                            "max_model_len",
    "deepseek_keep_alive.sse": "shape: https://api-docs.deepseek.com/quick_start/rate_limit (while a request waits, "
                               "a stream carries SSE keep-alive comments, ': keep-alive') in the chunk format of "
                               "https://api-docs.deepseek.com/guides/reasoning_model",
    # Gemini
    "gemini_thinking.sse": "shape: https://ai.google.dev/gemini-api/docs/thinking (parts with \"thought\": true, "
                           "usageMetadata.thoughtsTokenCount), framed as streamGenerateContent?alt=sse sends it",
    "gemini_safety.sse": "shape: https://ai.google.dev/api/generate-content#FinishReason (SAFETY, candidate "
                         "without content, safetyRatings with blocked: true)",
    "gemini_recitation.sse": "shape: https://ai.google.dev/api/generate-content#FinishReason (RECITATION, "
                             "citationMetadata)",
    "gemini_prompt_blocked.sse": "shape: https://ai.google.dev/api/generate-content#PromptFeedback "
                                 "(promptFeedback.blockReason, no candidates)",
    "gemini_max_tokens_cached.sse": "shape: https://ai.google.dev/api/generate-content#UsageMetadata "
                                    "(MAX_TOKENS, cachedContentTokenCount, cacheTokensDetails)",
    "gemini_function_call.sse": "shape: https://ai.google.dev/gemini-api/docs/function-calling (a functionCall "
                                "part with thoughtSignature)",
    "gemini_token_count.json": "shape: https://ai.google.dev/gemini-api/docs/troubleshooting (400 "
                               "INVALID_ARGUMENT when the input token count exceeds the model's limit)",
}


def load(name: str) -> bytes:
    """The recorded bytes of `name` (a file in this folder)."""
    return (HERE / name).read_bytes()


def recorded(name: str, status: int = 200, cut: bool = False) -> Reply:
    """A Reply that serves `name` byte for byte (an error body when `status` is not 200), cut
    mid-line when `cut` (see `wire.cut_lines`)."""
    return Reply(raw=load(name), status=status, cut=cut)
