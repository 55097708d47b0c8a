"""What the Gemini adapter sends through google-genai: the streamGenerateContent request."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from polybot.providers import media
from polybot.providers.base import Image, Message
from tests.fakes.server import serve_in_thread
from tests.providers.conftest import Harness, chat, collect

KIND = "gemini"
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


@pytest.fixture
def cdn(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A stand-in for Poe's attachment CDN on 127.0.0.1, allowed as the one private host."""
    async def image(request: object) -> Response:
        return Response(PNG, media_type="image/png")

    async def huge(request: object) -> Response:
        return Response(b"\0" * 64, media_type="image/png")

    app = Starlette(routes=[Route("/cat.png", image), Route("/huge.png", huge)])
    with serve_in_thread(app) as url:
        monkeypatch.setattr(media, "ALLOWED_PRIVATE_HOSTS", {"127.0.0.1"})
        yield url


async def test_request_mapping(h: Harness, cdn: str) -> None:
    p = h.provider(headers={"X-Team": "bots"}, api_version="v1alpha")
    messages = (Message("user", "hi"), Message("assistant", "hello"),
                Message("user", "look", (Image(f"{cdn}/cat.png", "image/png", "cat.png"),)))
    await collect(p, chat(temperature=0.3, max_tokens=50, stop=("END",), params={"top_k": 5}, messages=messages))
    sent = h.fake.requests[-1]
    assert sent.path == "/v1alpha/models/model-x:streamGenerateContent"
    assert sent.json["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert sent.json["contents"] == [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [{"text": "hello"}]},
        # Gemini cannot fetch a URL: the image was downloaded and sent inline (the SDK writes
        # these keys in snake_case; the API accepts both).
        {"role": "user", "parts": [{"text": "look"},
                                   {"inlineData": {"data": base64.b64encode(PNG).decode(), "mime_type": "image/png"}}]},
    ]
    assert sent.json["generationConfig"] == {"temperature": 0.3, "maxOutputTokens": 50, "stopSequences": ["END"],
                                             "topK": 5}
    assert sent.headers["x-team"] == "bots"


async def test_an_image_that_cannot_be_downloaded_becomes_a_placeholder(h: Harness, cdn: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media, "MAX_BYTES", 16)
    messages = (Message("user", "look", (Image(f"{cdn}/huge.png", "image/png", "huge.png"),
                                         Image("http://example.com/a.png", "image/png", "a.png"))),)
    await collect(h.provider(), chat(messages=messages))
    parts = h.fake.requests[-1].json["contents"][0]["parts"]
    assert parts == [{"text": "look"},
                     {"text": "[image 'huge.png' not sent: larger than 0 MB]"},
                     {"text": "[image 'a.png' not sent: only https attachments are downloaded]"}]


async def test_private_addresses_are_never_fetched() -> None:
    for url in ("https://127.0.0.1/x.png", "https://169.254.169.254/latest", "https://10.0.0.1/a.png",
                "https://localhost/a.png"):
        with pytest.raises(media.MediaError, match="private address"):
            await media.fetch(url)
