"""What the Gemini adapter sends through google-genai: the streamGenerateContent request."""

from __future__ import annotations

from tests.providers.conftest import Harness, chat, collect

KIND = "gemini"


async def test_request_mapping(h: Harness) -> None:
    p = h.provider(headers={"X-Team": "bots"}, api_version="v1alpha")
    await collect(p, chat(temperature=0.3, max_tokens=50, stop=("END",), params={"top_k": 5}))
    sent = h.fake.requests[-1]
    assert sent.path == "/v1alpha/models/model-x:streamGenerateContent"
    assert sent.json["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert sent.json["contents"] == [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [{"text": "hello"}]},
        {"role": "user", "parts": [{"text": "look"},
                                   # the SDK writes these two keys in snake_case; the API accepts both
                                   {"fileData": {"file_uri": "https://x/cat.png", "mime_type": "image/png"}}]},
    ]
    assert sent.json["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 50, "stopSequences": ["END"],
                                             "topK": 5}
    assert sent.headers["x-team"] == "bots"
