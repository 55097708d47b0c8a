"""`polybot dev` at fleet scale (issue #25), in-process: a bot compiled on demand while the rest wait
for the background, the start banner at any size, a broken shared partial keeping every bot that
includes it on its last good prompt, `project.reread` reading only what a change names, and
polybot.toml / providers.toml as inputs of every bot."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from syrupy.assertion import SnapshotAssertion

from polybot import project as project_module
from polybot.app import BotServer
from polybot.cli import main
from polybot.commands import dev as dev_command
from polybot.livebuild import LiveBuild
from polybot.project import read_project, reread
from polybot.security import DevAccess
from tests.fakes.server import free_port
from tests.test_dev import printed
from tests.test_playground import events
from tests.test_security_server import PORT, client, query

ECHO = 'provider = "echo"\nparams = { echo = "full" }\n'  # the echo provider replies with the whole request
PROMPT = 'You are {{ bot.name }}.\n{% include "tone.j2" %}\n'


def fleet(root: Path, n: int, tone: str = "Tone: calm.\n") -> Path:
    """`n` echo bots Bot000.., each including the shared partial tone.j2, and Plain, which does not."""
    (root / "bots/_shared").mkdir(parents=True)
    (root / "bots/_shared/tone.j2").write_text(tone)
    for i in range(n):
        write(root, f"Bot{i:03d}")
    write(root, "Plain", prompt="Plain.\n")
    return root


def write(root: Path, name: str, toml: str = ECHO, prompt: str = PROMPT) -> None:
    (root / "bots" / name).mkdir(parents=True, exist_ok=True)
    (root / "bots" / name / "bot.toml").write_text(toml)
    (root / "bots" / name / "system.md.j2").write_text(prompt)


def dev_app(root: Path) -> tuple[BotServer, LiveBuild]:
    """What `polybot dev` serves: the bots at /<Name>, compiled on demand before they answer."""
    server = BotServer({}, dev=DevAccess(PORT))
    workspace = LiveBuild(root, on_put=server.put, on_remove=server.remove)
    server.ensure = workspace.ensure
    return server, workspace


async def answer(server: BotServer, name: str) -> str:
    """What bot `name` replies to a Poe query (the echo provider: the system prompt and the message)."""
    async with client(server) as c:
        response = await c.post(f"/{name}", json=query("hi"), headers={"authorization": "Bearer x"})  # any: no key set
    assert response.status_code == 200, response.text
    return "".join(data["text"] for event, data in events(response.text.replace("\r\n", "\n")) if event == "text")


def system(reply: str) -> str:
    return reply.removeprefix("[system]\n").split("\n\n[user]")[0].strip()


# --- compile on demand ---------------------------------------------------------------------------

async def test_a_request_gets_the_new_version_before_the_background_compile(tmp_path: Path) -> None:
    root = fleet(tmp_path, 200)
    server, workspace = dev_app(root)
    workspace.refresh()
    assert system(await answer(server, "Bot150")) == "You are Bot150.\nTone: calm."
    waiting = workspace.runtimes["Bot151"]

    edited = {root / "bots/_shared/tone.j2", root / "bots/Bot150/system.md.j2"}
    (root / "bots/_shared/tone.j2").write_text("Tone: brisk.\n")
    (root / "bots/Bot150/system.md.j2").write_text('Edited {{ bot.name }}.\n{% include "tone.j2" %}\n')
    workspace.load(edited)  # what the watcher does with a change, before any background batch
    assert len(workspace.pending) == 200  # every includer of the partial; Plain is untouched

    assert system(await answer(server, "Bot150")) == "Edited Bot150.\nTone: brisk."
    assert "Bot150" not in workspace.pending and len(workspace.pending) == 199  # only it was compiled
    assert workspace.runtimes["Bot151"] is waiting  # the others wait for the background

    assert workspace.settle() is False  # the background pass: the rest
    result = workspace.finish()
    assert len(result.updated) == 200 and "Plain" not in result.updated
    assert system(await answer(server, "Bot151")) == "You are Bot151.\nTone: brisk."


# --- the start banner ------------------------------------------------------------------------------

def banner_lines(root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                 first: float | None) -> list[str]:
    """What `polybot dev` prints before it serves (the port shown as PORT), compiling for `first` s."""
    async def served(app: object, sock: object) -> int:
        return 0

    monkeypatch.setattr(dev_command, "serve", served)
    monkeypatch.setattr(dev_command, "FIRST_SECONDS", first)
    port = free_port()
    capsys.readouterr()
    assert main(["dev", "--project", str(root), "--port", str(port)]) == 0
    return capsys.readouterr().err.replace(str(port), "PORT").splitlines()


def test_the_start_banner_of_a_small_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str], snapshot: SnapshotAssertion) -> None:
    write(tmp_path, "Alpha", prompt="Alpha.")
    write(tmp_path, "Bravo", prompt="Bravo.")
    assert banner_lines(tmp_path, monkeypatch, capsys, None) == snapshot


def test_the_start_banner_of_1000_bots_is_a_count_three_urls_and_the_playground(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        snapshot: SnapshotAssertion) -> None:
    for i in range(1000):
        write(tmp_path, f"Bot{i:04d}", prompt="Hi.")
    lines = banner_lines(tmp_path, monkeypatch, capsys, 0)  # every bot left to the background
    assert len(lines) == 6
    assert lines == snapshot


# --- a broken shared partial ----------------------------------------------------------------------

async def test_a_broken_partial_keeps_every_includer_on_its_last_good_prompt_until_fixed(tmp_path: Path) -> None:
    root = fleet(tmp_path, 5)
    server, workspace = dev_app(root)
    workspace.refresh()
    includers = [f"Bot{i:03d}" for i in range(5)]

    partial = root / "bots/_shared/tone.j2"
    partial.write_text("Tone: new.\n{% if %}\n")
    broken = workspace.refresh({partial})
    assert broken.kept == includers and broken.updated == []
    lines = printed(broken)
    assert re.match(r"bots/_shared/tone\.j2:2: template syntax error", lines[0]), lines
    assert lines[1:] == [f"polybot dev: {name} has errors; still serving its last good version" for name in includers]
    for name in includers:  # the old partial's text, not the new one's
        assert system(await answer(server, name)) == f"You are {name}.\nTone: calm."
    assert system(await answer(server, "Plain")) == "Plain."

    partial.write_text("Tone: fixed.\n")
    fixed = workspace.refresh({partial})
    assert fixed.fixed == ["bots/_shared/tone.j2"] and fixed.updated == includers and fixed.problems == []
    assert printed(fixed) == ["polybot dev: fixed bots/_shared/tone.j2",
                              f"polybot dev: reloaded {', '.join(includers)}"]
    for name in includers:
        assert system(await answer(server, name)) == f"You are {name}.\nTone: fixed."


async def test_a_kept_bot_stays_on_the_old_partial_while_others_take_the_new_one(tmp_path: Path) -> None:
    """A partial's edit that breaks one includer (an undefined var there) does not hold back the rest."""
    root = fleet(tmp_path, 2, tone="Tone: calm.\n")
    write(root, "Bot001", toml=ECHO + '[vars]\nmood = "glad"\n')
    server, workspace = dev_app(root)
    workspace.refresh()
    partial = root / "bots/_shared/tone.j2"
    partial.write_text("Tone: {{ vars.mood }}.\n")
    result = workspace.refresh({partial})
    assert (result.kept, result.updated) == (["Bot000"], ["Bot001"])
    assert [p.path for p in result.problems] == ["bots/_shared/tone.j2"]
    assert system(await answer(server, "Bot000")) == "You are Bot000.\nTone: calm."
    assert system(await answer(server, "Bot001")) == "You are Bot001.\nTone: glad."


# --- project.reread --------------------------------------------------------------------------------

def test_reread_reads_only_what_the_changed_paths_touch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = fleet(tmp_path, 4)
    (root / "providers.toml").write_text('[mine]\nkind = "echo"\n')
    first = read_project(root)
    reads: list[str] = []
    real = project_module.read_bot
    monkeypatch.setattr(project_module, "read_bot",
                        lambda folder, root: reads.append(folder.name) or real(folder, root))

    # Edit four things on disk; name one.
    (root / "bots/Bot001/system.md.j2").write_text("One.\n")
    (root / "bots/Bot002/system.md.j2").write_text("Two.\n")
    (root / "bots/_shared/tone.j2").write_text("Tone: other.\n")
    (root / "providers.toml").write_text('[theirs]\nkind = "echo"\n')
    second = reread(first, {root / "bots/Bot001/system.md.j2"})
    assert reads == ["Bot001"]
    assert second.bot("Bot001").templates["system.md.j2"] == "One.\n"  # type: ignore[union-attr]
    assert second.bot("Bot002") is first.bot("Bot002")  # not named: not read, its edit not seen yet
    assert second.shared == first.shared and "mine" in second.providers and "theirs" not in second.providers

    reads.clear()
    third = reread(second, {root / "bots/Bot002/system.md.j2", root / "bots/_shared/tone.j2"})
    assert reads == ["Bot002"]
    assert third.bot("Bot002").templates["system.md.j2"] == "Two.\n"  # type: ignore[union-attr]
    assert third.shared == {"tone.j2": "Tone: other.\n"} and third.digest != second.digest
    assert "theirs" not in third.providers

    reads.clear()
    fourth = reread(third, {root / "providers.toml"})
    assert reads == [] and "theirs" in fourth.providers and "mine" not in fourth.providers
    assert fourth.base != third.base

    # A bot folder added, and one removed, is seen from the paths the watcher reports for them.
    write(root, "Newcomer")
    shutil.rmtree(root / "bots/Bot003")
    reads.clear()
    fifth = reread(fourth, {root / "bots/Newcomer", root / "bots/Newcomer/bot.toml", root / "bots/Bot003"})
    assert reads == ["Newcomer"]
    assert [b.name for b in fifth.bots] == ["Bot000", "Bot001", "Bot002", "Newcomer", "Plain"]
    assert fifth.bot("Bot000") is first.bot("Bot000")


def test_livebuild_compiles_only_the_bots_a_change_touches(tmp_path: Path) -> None:
    root = fleet(tmp_path, 6)
    compiled: list[str] = []
    workspace = LiveBuild(root, on_put=lambda runtime: compiled.append(runtime.spec.name))
    workspace.refresh()
    compiled.clear()
    (root / "bots/Bot002/bot.toml").write_text(ECHO + "temperature = 1\n")
    (root / "bots/Bot004/system.md.j2").write_text("Not named, not seen.\n")
    assert workspace.refresh({root / "bots/Bot002/bot.toml"}).updated == ["Bot002"]
    assert compiled == ["Bot002"]


# --- polybot.toml and providers.toml are inputs of every bot ---------------------------------------

@pytest.mark.parametrize(("name", "text"), [
    ("polybot.toml", "[limits]\nuser_requests_per_minute = 7\n"),
    ("providers.toml", '[mine]\nkind = "echo"\n'),
])
def test_editing_a_project_file_recompiles_every_bot(tmp_path: Path, name: str, text: str) -> None:
    root = fleet(tmp_path, 3)
    compiled: list[str] = []
    workspace = LiveBuild(root, on_put=lambda runtime: compiled.append(runtime.spec.name))
    workspace.refresh()
    before = {n: r.spec.hash for n, r in workspace.runtimes.items()}
    compiled.clear()
    (root / name).write_text(text)
    result = workspace.refresh({root / name})
    every = ["Bot000", "Bot001", "Bot002", "Plain"]
    assert result.updated == every and sorted(compiled) == every and result.problems == []
    assert all(workspace.runtimes[n].spec.hash != before[n] for n in every)
    if name == "polybot.toml":  # each bot now answers under the new settings
        assert all(r.protection is workspace.protection for r in workspace.runtimes.values())
        assert workspace.protection is not None
        assert workspace.protection.settings.limits.user_requests_per_minute == 7
    else:
        assert "mine" in workspace.pool.configs
