"""Every test starts from the same environment: commands that read a project's .env change it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    from polybot import env

    saved, loaded = dict(os.environ), dict(env._from_file)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        env._from_file.clear()
        env._from_file.update(loaded)
