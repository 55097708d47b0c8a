"""`polybot.asgi:app`: serves the build in the current directory (e.g. `uvicorn polybot.asgi:app`)."""

from __future__ import annotations

import os
from pathlib import Path

from polybot.manifest import load_manifest
from polybot.server import create_app

_root = Path(os.environ.get("POLYBOT_PROJECT", ".")).resolve()
app = create_app(load_manifest(_root / "build" / "manifest.json"), _root,
                 allow_without_key=os.environ.get("POLYBOT_ALLOW_WITHOUT_KEY", "") in ("1", "true")).app
