"""What the OpenAI adapter sends: the chat-completions request body and headers."""

from __future__ import annotations

from tests.providers.conftest import Harness, chat, collect

KIND = "openai"


async def test_request_mapping(h: Harness) -> None:
    p = h.provider(headers={"X-Team": "bots"}, api_version="2024-06-01")
    await collect(p, chat(temperature=0.3, max_tokens=50, stop=("END",), params={"top_p": 0.9}))
    sent = h.fake.requests[-1]
    assert sent.json["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]},
    ]
    assert (sent.json["temperature"], sent.json["max_tokens"], sent.json["stop"], sent.json["top_p"]) == (
        0.3, 50, ["END"], 0.9)
    assert sent.json["model"] == "model-x" and sent.json["stream"] is True
    assert sent.headers["x-team"] == "bots"


async def test_unset_options_are_not_sent(h: Harness) -> None:
    await collect(h.provider(), chat(system=""))
    body = h.fake.requests[-1].json
    assert "temperature" not in body and "max_tokens" not in body and "stop" not in body
    assert body["messages"][0] == {"role": "user", "content": "hi"}
