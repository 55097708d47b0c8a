"""`polybot.asgi:app`: serves the build in POLYBOT_PROJECT, else the current directory
(e.g. `uvicorn polybot.asgi:app`). Reads the project's `.env` like every command (the environment
wins), prints one JSON reply-log line per reply on stderr and keeps each in the reply store."""

from __future__ import annotations

import os
from pathlib import Path

from polybot.app import create_app
from polybot.env import load_env
from polybot.manifest import load_manifest, manifest_path
from polybot.replylog import configure, observe

_root = Path(os.environ.get("POLYBOT_PROJECT", ".")).resolve()
load_env(_root)
configure("json")
_manifest = load_manifest(manifest_path(_root))
app = create_app(_manifest, _root,
                 allow_without_key=os.environ.get("POLYBOT_ALLOW_WITHOUT_KEY", "") in ("1", "true")).app
observe(_root, _manifest.settings, lambda: _manifest.providers, dev=False)
