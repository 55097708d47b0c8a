"""`polybot dev` in-process: LiveBuild's incremental refreshes (edit, break, keep, fix, add, remove), the
lines dev prints for each, the file watcher, and the whole command with its socket served through
httpx.ASGITransport instead of uvicorn. tests/e2e/test_dev.py runs the same loop as a real process."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from polybot import dev
from polybot.cli import main
from polybot.commands import dev as dev_command
from polybot.errors import Problem
from polybot.livebuild import LiveBuild, Refresh
from polybot.playground import TOKEN_HEADER
from tests.fakes.server import free_port
from tests.test_playground import events


def write_bot(root: Path, name: str, prompt: str = "You are {{ bot.name }}.",
              toml: str = 'provider = "echo"\n') -> None:
    (root / "bots" / name).mkdir(parents=True, exist_ok=True)
    (root / "bots" / name / "bot.toml").write_text(toml)
    (root / "bots" / name / "system.md.j2").write_text(prompt)


def printed(result: Refresh) -> list[str]:
    out = io.StringIO()
    dev.report(result, out)
    return out.getvalue().splitlines()


@pytest.fixture
def live(tmp_path: Path) -> tuple[LiveBuild, list[str]]:
    """A LiveBuild over two bots, and the log of what it put and removed."""
    write_bot(tmp_path, "Alpha")
    write_bot(tmp_path, "Bravo")
    log: list[str] = []
    build = LiveBuild(tmp_path, on_put=lambda r: log.append(f"put {r.spec.name}"),
                      on_remove=lambda n: log.append(f"remove {n}"))
    first = build.refresh()
    assert (first.updated, first.problems, first.kept, first.fixed) == (["Alpha", "Bravo"], [], [], [])
    assert log == ["put Alpha", "put Bravo"]
    log.clear()
    return build, log


def test_an_unchanged_project_recompiles_nothing(live: tuple[LiveBuild, list[str]]) -> None:
    build, log = live
    alpha = build.runtimes["Alpha"]
    assert build.refresh() == Refresh()
    assert build.runtimes["Alpha"] is alpha and log == []
    assert printed(Refresh()) == []


def test_an_edit_swaps_in_only_the_bot_that_changed(live: tuple[LiveBuild, list[str]]) -> None:
    build, log = live
    bravo = build.runtimes["Bravo"]
    (build.root / "bots/Alpha/system.md.j2").write_text("Version two.")
    result = build.refresh()
    assert result == Refresh(updated=["Alpha"])
    assert log == ["put Alpha"] and build.runtimes["Bravo"] is bravo
    assert build.runtimes["Alpha"].spec.templates != bravo.spec.templates
    assert printed(result) == ["polybot dev: reloaded Alpha"]


def test_a_broken_bot_keeps_its_last_good_runtime_until_fixed(live: tuple[LiveBuild, list[str]]) -> None:
    build, log = live
    good = build.runtimes["Alpha"]
    (build.root / "bots/Alpha/system.md.j2").write_text("Broken {% if %}")
    broken = build.refresh()
    assert broken.kept == ["Alpha"] and broken.updated == [] and broken.fixed == []
    assert [p.path for p in broken.problems] == ["bots/Alpha/system.md.j2"]
    assert build.runtimes["Alpha"] is good and log == []
    lines = printed(broken)
    assert lines[0].startswith("bots/Alpha/system.md.j2:1: template syntax error")
    assert lines[1:] == ["polybot dev: Alpha has errors; still serving its last good version"]

    (build.root / "bots/Alpha/system.md.j2").write_text("Fixed.")
    fixed = build.refresh()
    assert (fixed.updated, fixed.fixed, fixed.kept, fixed.problems) == (["Alpha"], ["Alpha"], [], [])
    assert build.runtimes["Alpha"] is not good
    assert printed(fixed) == ["polybot dev: fixed Alpha", "polybot dev: reloaded Alpha"]


def test_bots_are_added_and_removed(live: tuple[LiveBuild, list[str]]) -> None:
    build, log = live
    write_bot(build.root, "Charlie")
    shutil.rmtree(build.root / "bots/Bravo")
    result = build.refresh()
    assert (result.updated, result.removed) == (["Charlie"], ["Bravo"])
    assert log == ["remove Bravo", "put Charlie"]
    assert sorted(build.runtimes) == ["Alpha", "Charlie"]
    assert printed(result) == ["polybot dev: reloaded Charlie", "polybot dev: removed Bravo"]


def test_a_new_bot_that_fails_is_reported_but_not_kept(live: tuple[LiveBuild, list[str]]) -> None:
    build, log = live
    write_bot(build.root, "Delta", toml='provider = "echo"\ntemperature = 5\n')
    result = build.refresh()
    assert result.kept == [] and result.updated == [] and "Delta" not in build.runtimes
    assert [(p.path, p.line) for p in result.problems] == [("bots/Delta/bot.toml", 2)]
    assert "temperature" in result.problems[0].message
    # Deleting the broken bot clears its error without calling it fixed.
    shutil.rmtree(build.root / "bots/Delta")
    assert build.refresh() == Refresh()


def test_a_broken_providers_toml_keeps_every_bot_and_its_fix_is_reported(live: tuple[LiveBuild, list[str]]) -> None:
    build, log = live
    runtimes = dict(build.runtimes)
    (build.root / "providers.toml").write_text('[mine]\nkind = "ecko"\n')
    broken = build.refresh()
    assert broken.kept == ["Alpha", "Bravo"] and broken.updated == []
    assert [p.path for p in broken.problems] == ["providers.toml"]
    assert build.runtimes == runtimes and log == []

    (build.root / "providers.toml").write_text('[mine]\nkind = "echo"\n')
    fixed = build.refresh()
    assert fixed.fixed == ["providers.toml"] and fixed.problems == []
    # providers.toml is shared by every bot: each is recompiled against the new provider list.
    assert fixed.updated == ["Alpha", "Bravo"]
    assert "mine" in build.pool.configs


def test_a_broken_shared_partial_keeps_the_bots_that_include_it(live: tuple[LiveBuild, list[str]]) -> None:
    build, log = live
    (build.root / "bots/_shared").mkdir()
    (build.root / "bots/_shared/tone.j2").write_text("calm")
    (build.root / "bots/Alpha/system.md.j2").write_text("{% include 'tone.j2' %}")
    assert build.refresh().updated == ["Alpha"]  # Bravo does not include the partial
    assert build.runtimes["Alpha"].render_prompt  # compiled with the partial

    (build.root / "bots/_shared/tone.j2").write_text("{% if %}")
    broken = build.refresh()
    assert broken.kept == ["Alpha"] and broken.updated == []
    assert broken.problems and all(p.path.startswith("bots/") for p in broken.problems)
    assert printed(broken)[-1] == "polybot dev: Alpha has errors; still serving its last good version"


def test_a_bot_name_poe_refuses_is_a_problem(live: tuple[LiveBuild, list[str]]) -> None:
    build, _ = live
    write_bot(build.root, "bad name!")
    result = build.refresh()
    assert "bad name!" not in build.runtimes and result.updated == []
    assert [p.path for p in result.problems] == ["bots/bad name!"]


def test_report_sorts_and_dedupes_problems() -> None:
    b, a = Problem("bots/B/bot.toml", 3, "second"), Problem("bots/A/bot.toml", None, "first")
    assert printed(Refresh(problems=[b, a, b])) == ["bots/A/bot.toml: first", "bots/B/bot.toml:3: second"]


def test_the_watch_filter_keeps_only_what_dev_rebuilds_from(tmp_path: Path) -> None:
    keep = dev._watch_filter(tmp_path)
    for path in ("providers.toml", "polybot.toml", ".env", "bots", "bots/Alpha/system.md.j2", "bots/_shared/x.j2"):
        assert keep(None, str(tmp_path / path)), path
    for path in (".venv/lib/x.py", ".git/index", "build/manifest.json", "botsx/y", "README.md"):
        assert not keep(None, str(tmp_path / path)), path


async def test_reload_keys_puts_every_bot_again_and_renews_clients(live: tuple[LiveBuild, list[str]],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    build, log = live
    await dev.reload_keys(build, ["POE_ACCESS_KEY_ALPHA"])
    assert log == ["put Alpha", "put Bravo"]
    assert capsys.readouterr().err == "polybot dev: .env changed (POE_ACCESS_KEY_ALPHA); keys reloaded\n"


async def until(check: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_watch_rebuilds_on_edits_and_env_changes(live: tuple[LiveBuild, list[str]],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    build, log = live
    seen: list[Refresh] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(dev.watch(build, stop, seen.append))
    try:
        await asyncio.sleep(0.3)  # the watchers are up
        (build.root / "bots/Alpha/system.md.j2").write_text("Edited while watched.")
        await until(lambda: any(r.updated == ["Alpha"] for r in seen))
        assert "polybot dev: reloaded Alpha" in capsys.readouterr().err

        (build.root / ".env").write_text("POE_ACCESS_KEY_BRAVO=" + "b" * 32 + "\n")
        err: list[str] = []
        await until(lambda: err.append(capsys.readouterr().err) or "keys reloaded" in "".join(err))
        assert os.environ["POE_ACCESS_KEY_BRAVO"] == "b" * 32
        assert "put Alpha" in log and "put Bravo" in log
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 5)
    assert watcher.done() and watcher.exception() is None


def test_dev_command_serves_the_playground_and_reloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`polybot dev` end to end in this process: the socket it binds is never served; the app it
    would serve is driven through ASGITransport while its watcher runs on the same loop."""
    write_bot(tmp_path, "Alpha", "Prompt one.", 'provider = "echo"\nparams = { echo = "full" }\n')
    write_bot(tmp_path, "Broken", "{% if %}")
    bound: list[socket.socket] = []
    seen: dict[str, object] = {}

    async def drive(app: object, sock: socket.socket) -> int:
        bound.append(sock)
        port = sock.getsockname()[1]
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{port}") as c:
            state = (await c.get("/_polybot/state")).json()
            seen["bots"] = [b["name"] for b in state["bots"]]
            seen["problems"] = state["problems"]
            page = (await c.get("/")).text
            token = re.search(r'<meta name="polybot-token" content="([^"]+)">', page).group(1)  # type: ignore[union-attr]
            reply = await c.post("/_polybot/chat/Alpha", json={"messages": [{"content": "hello"}]},
                                 headers={TOKEN_HEADER: token})
            seen["reply"] = reply.text
            (tmp_path / "bots/Alpha/system.md.j2").write_text("Prompt two.")
            for _ in range(500):
                prompt = (await c.post("/_polybot/prompt/Alpha", json={}, headers={TOKEN_HEADER: token})).json()
                if prompt == {"prompt": "Prompt two."}:
                    break
                await asyncio.sleep(0.02)
            seen["prompt"] = prompt
            seen["version"] = (await c.get("/_polybot/state")).json()["version"]
        return 0

    monkeypatch.setattr(dev_command, "serve", drive)
    port = free_port()
    assert main(["dev", "--project", str(tmp_path), "--port", str(port)]) == 0
    assert bound and bound[0].fileno() == -1  # closed on the way out
    assert seen["bots"] == ["Alpha"]
    assert [p.split(":")[0] for p in seen["problems"]] == ["bots/Broken/system.md.j2"]  # type: ignore[union-attr]
    texts = "".join(data["text"] for name, data in events(str(seen["reply"])) if name == "text")
    assert texts == "[system]\nPrompt one.\n\n[user]\nhello"
    assert events(str(seen["reply"]))[-1] == ("done", {})
    assert seen["prompt"] == {"prompt": "Prompt two."}
    assert seen["version"] == 2
    err = capsys.readouterr().err
    assert "polybot dev: serving 1 bot, watching bots/, providers.toml, polybot.toml and .env" in err
    assert "bots/Broken/system.md.j2:1: template syntax error" in err
    assert "polybot dev: reloaded Alpha" in err and f"playground: http://127.0.0.1:{port}/" in err

