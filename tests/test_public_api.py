"""The public names are pinned: changing them is a deliberate, reviewed act."""

import importlib
import importlib.metadata

import polybot


def test_public_api() -> None:
    assert polybot.__all__ == [
        "ChatRequest", "File", "Image", "Message", "PolybotError", "Problem", "Provider", "ProviderError",
        "Runtime", "Usage", "__version__", "register_kind",
    ]
    real = {"File": "FileOut"}
    for name in polybot.__all__:
        if name == "__version__":
            assert polybot.__version__ == importlib.metadata.version("polybot-poe" if _renamed() else "polybot")
            continue
        module = importlib.import_module(polybot._WHERE[name])
        assert getattr(polybot, name) is getattr(module, real.get(name, name)), name


def _renamed() -> bool:
    try:
        importlib.metadata.version("polybot-poe")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False
