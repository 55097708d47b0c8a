"""`polybot deploy modal [--name APP]`: generate the Modal app for the build and deploy it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from polybot.deploy import modal
from polybot.deploy.modal import APP_FILE, app_name, render_modal_app
from polybot.errors import PolybotError
from polybot.manifest import load_manifest, manifest_path


@dataclass(frozen=True, slots=True)
class Options:
    project: Path
    name: str | None = None


def run(options: Options) -> int:
    """Write build/modal_app.py, then `modal deploy` it once Modal is installed and logged in."""
    root: Path = options.project
    manifest = load_manifest(manifest_path(root))
    if not (root / "build" / "constraints.txt").is_file():
        raise PolybotError(["build/constraints.txt: not found; run `polybot build` (it pins the versions the "
                            "Modal image installs), then polybot deploy modal again"])
    name = app_name(root, options.name)
    path = root / "build" / APP_FILE
    path.write_text(render_modal_app(root, name, manifest), "utf-8")
    print(f"wrote build/{APP_FILE} (Modal app {name!r}; its header lists what the secret "
          f"{name}-secrets must hold)")
    if not modal.modal_installed():
        raise PolybotError(["the modal package is not installed: pip install 'polybot-poe[modal]', then run "
                            "polybot deploy modal again"])
    if not modal.has_modal_token():
        raise PolybotError(["no Modal token found: run `modal token new` (or set MODAL_TOKEN_ID and "
                            "MODAL_TOKEN_SECRET), then run polybot deploy modal again"])
    done = subprocess.run([sys.executable, "-m", "modal", "deploy", str(path)], cwd=root, check=False)
    if done.returncode != 0:
        print(f"error: modal deploy build/{APP_FILE} failed (exit {done.returncode}); its output is above",
              file=sys.stderr)
        return done.returncode
    print("deployed: set each bot's server URL on Poe to the endpoint above plus /<Name>, then run polybot sync")
    return 0
