"""Every test starts from the same environment (commands that read a project's .env change it) and
the same reply log (`dev` and `serve` point it at stderr and stop it propagating, which hides it
from caplog)."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator

import pytest

pytest_plugins = ["pytester"]  # test_scaffold runs a scaffolded project's tests in-process


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


@pytest.fixture(autouse=True)
def _restore_reply_log() -> Iterator[None]:
    from polybot.replylog import LOGGER

    logger = logging.getLogger(LOGGER)
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        yield
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved


# Tests that take seconds (a fresh venv, Chromium, a cold mypy, real processes) start first, the
# longest (the README's, ~20 s) first of all, so that under xdist they overlap the many quick ones
# instead of running alone at the end.
SLOW_FIRST = ("tests/e2e/test_readme.py", "tests/test_typing.py", "tests/e2e/", "tests/test_plugins.py")


def _rank(item: pytest.Item) -> int:
    return next((i for i, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)), len(SLOW_FIRST))


# Modules whose module-scoped fixtures start a process or a browser: one worker runs each of them
# whole (`--dist loadgroup`), or every worker that takes one of its tests starts its own.
ONE_WORKER = ("tests/e2e/test_playground_page.py", "tests/e2e/test_playground.py", "tests/e2e/test_csrf.py",
              "tests/e2e/test_serve.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)
    for item in items:
        module = item.nodeid.split("::")[0]
        if module in ONE_WORKER:
            item.add_marker(pytest.mark.xdist_group(module))


# The garbage collector keeps walking every object the imports and the collected tests made (~300k
# per worker, 0.15 s a walk): freeze them once collected, and again at the end, after one collection,
# so that pytest's five closing collections (for unraisable exceptions) walk only what is left.
def pytest_collection_finish(session: pytest.Session) -> None:
    gc.freeze()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    gc.collect()
    gc.freeze()
