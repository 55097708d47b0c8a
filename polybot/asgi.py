"""`polybot.asgi:app`: serves the build in POLYBOT_PROJECT, else the current directory
(e.g. `uvicorn polybot.asgi:app`). Reads the project's `.env` like every command (the environment
wins) and prints one JSON reply-log line per reply on stderr."""

from __future__ import annotations

import os
from pathlib import Path

from polybot.app import create_app
from polybot.env import load_env
from polybot.manifest import load_manifest, manifest_path
from polybot.replylog import configure

_root = Path(os.environ.get("POLYBOT_PROJECT", ".")).resolve()
load_env(_root)
configure("json")
app = create_app(load_manifest(manifest_path(_root)), _root,
                 allow_without_key=os.environ.get("POLYBOT_ALLOW_WITHOUT_KEY", "") in ("1", "true")).app
