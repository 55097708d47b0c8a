"""The incremental build: each template parsed once per change, an edited partial rebuilding exactly
the bots that include it, and a no-change build that is a stat pass (trusting a stat only when it
was taken well after the file's last change, comparing size and mtime)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from polybot.build import STATS, build
from polybot.compiler import Compiler
from polybot.errors import PolybotError
from tests.test_build import files

HOUR_AGO = time.time_ns() - 3600 * 1_000_000_000


def fleet(root: Path, n: int, *, old: bool = True) -> Path:
    """`n` echo bots; the even ones include the shared partial tone.j2, the odd ones other.j2."""
    (root / "bots/_shared").mkdir(parents=True)
    (root / "bots/_shared/tone.j2").write_text("Be {{ vars.tone }}.\n")
    (root / "bots/_shared/other.j2").write_text("Be other.\n")
    for i in range(n):
        folder = root / "bots" / f"Bot{i:03d}"
        folder.mkdir()
        (folder / "bot.toml").write_text(f'provider = "echo"\n[vars]\ntone = "kind {i}"\n')
        partial = "tone.j2" if i % 2 == 0 else "other.j2"
        (folder / "system.md.j2").write_text(f'You are {{{{ bot.name }}}}.\n{{% include "{partial}" %}}\n')
    if old:
        age(root)
    return root


def age(root: Path) -> None:
    """Every source last changed an hour ago, so its stat is trusted."""
    for path in [root, *root.rglob("*")]:
        os.utime(path, ns=(HOUR_AGO, HOUR_AGO))


def rewrite_keeping_stat(path: Path, text: str) -> None:
    """Change `path`'s content but not its size or mtime (what a stat pass cannot see)."""
    st = path.stat()
    assert len(text.encode()) == st.st_size
    path.write_text(text)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_each_template_is_parsed_once_per_change(tmp_path: Path) -> None:
    root = fleet(tmp_path / "p", 40)
    compiler = Compiler(root)
    assert compiler.compile().manifest is not None
    assert compiler.library.parses == 40 + 2  # every prompt, and each partial once for all 20 bots using it
    (root / "bots/_shared/tone.j2").write_text("Be {{ vars.tone }}, always.\n")
    assert compiler.compile().manifest is not None
    assert compiler.library.parses == 40 + 3


def test_an_edited_partial_rebuilds_exactly_the_bots_that_include_it(tmp_path: Path) -> None:
    root, out = fleet(tmp_path / "p", 40), tmp_path / "build"
    assert build(root, out).rendered == 40
    before = files(out / "prompts")
    (root / "bots/_shared/tone.j2").write_text("Be {{ vars.tone }} and brief.\n")
    assert build(root, out).rendered == 20
    after = files(out / "prompts")
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {f"Bot{i:03d}.md" for i in range(0, 40, 2)}
    assert all(b"and brief" in after[name] for name in changed)
    fresh = tmp_path / "fresh"
    build(root, fresh)
    assert files(fresh) == files(out)  # what the incremental build wrote is what a cold one writes


def test_a_no_change_build_is_a_stat_pass(tmp_path: Path) -> None:
    root, out = fleet(tmp_path / "p", 10), tmp_path / "build"
    build(root, out)
    written = files(out)
    # A content change the stats cannot see is not read: proof the rebuild read no source.
    rewrite_keeping_stat(root / "bots/Bot003/bot.toml", (root / "bots/Bot003/bot.toml").read_text().replace("3", "9"))
    result = build(root, out)
    assert result.rendered == 0 and len(result.manifest.bots) == 10
    assert files(out) == written
    # `build --check` reads everything, so it still sees what changed.
    with pytest.raises(PolybotError, match="manifest.json: stale"):
        build(root, out, check=True)


def test_a_changed_size_or_mtime_is_read(tmp_path: Path) -> None:
    root, out = fleet(tmp_path / "p", 6), tmp_path / "build"
    build(root, out)
    toml = root / "bots/Bot001/bot.toml"
    st = toml.stat()
    toml.write_text(toml.read_text().replace("kind 1", "kind 11"))  # one byte longer
    os.utime(toml, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    assert build(root, out).rendered == 1
    prompt = root / "bots/Bot002/system.md.j2"
    prompt.write_text(prompt.read_text().replace("You", "you"))  # same size, new mtime
    os.utime(prompt, ns=(HOUR_AGO + 10**9, HOUR_AGO + 10**9))
    assert build(root, out).rendered == 1
    assert (out / "prompts/Bot002.md").read_text().startswith("you are Bot002")


def test_an_edit_within_the_same_mtime_tick_is_not_missed(tmp_path: Path) -> None:
    """Sources changed just before a build are racy: the next build reads them rather than trust a stat."""
    root, out = fleet(tmp_path / "p", 4, old=False), tmp_path / "build"
    build(root, out)
    rewrite_keeping_stat(root / "bots/Bot000/system.md.j2",
                         (root / "bots/Bot000/system.md.j2").read_text().replace("You", "Yes"))
    assert build(root, out).rendered == 1
    assert (out / "prompts/Bot000.md").read_text().startswith("Yes are Bot000")


def test_outputs_changed_since_the_build_are_written_again(tmp_path: Path) -> None:
    root, out = fleet(tmp_path / "p", 4), tmp_path / "build"
    build(root, out)
    written = files(out)
    (out / "prompts/Bot001.md").unlink()
    assert build(root, out).rendered == 1
    (out / "prompts/Bot002.md").write_text("")  # e.g. a crash before the unflushed prompt reached disk
    assert build(root, out).rendered == 1
    assert files(out) == written


def test_a_new_empty_bot_folder_or_a_removed_file_is_seen(tmp_path: Path) -> None:
    root, out = fleet(tmp_path / "p", 4), tmp_path / "build"
    build(root, out)
    (root / "bots/NewBot").mkdir()
    with pytest.raises(PolybotError, match="bots/NewBot/bot.toml: missing"):
        build(root, out)
    (root / "bots/NewBot").rmdir()
    (root / "bots/Bot003/system.md.j2").unlink()
    with pytest.raises(PolybotError, match="bots/Bot003/system.md.j2: missing"):
        build(root, out)


def test_the_stat_record_is_ignored_by_git(tmp_path: Path) -> None:
    root, out = fleet(tmp_path / "p", 2), tmp_path / "build"
    build(root, out)
    assert (out / STATS).is_file()
    assert (out / STATS).parent.joinpath(".gitignore").read_text().splitlines()[-1] == "*"
