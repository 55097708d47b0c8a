"""The public names are pinned: changing them is a deliberate, reviewed act."""

import polybot


def test_public_api() -> None:
    assert polybot.__all__ == [
        "ChatRequest", "Image", "Message", "PolybotError", "Problem", "Provider", "ProviderError",
        "Runtime", "Usage", "__version__", "register_kind",
    ]
    for name in polybot.__all__:
        assert getattr(polybot, name) is not None
