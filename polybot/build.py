"""`polybot build`: the compiler's output written to build/, the write stage. Collects every problem, fails once.

Only what changed is rewritten, atomically, the manifest last; only files a previous build recorded
are ever deleted; `--check` fails when build/ is stale.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from polybot.compiler import Compiler
from polybot.errors import PolybotError
from polybot.graph import Stat, StatRecord, environment, racy, scan, stat_files
from polybot.manifest import Manifest, load_manifest
from polybot.version import __version__


@dataclass(slots=True)
class BuildResult:
    manifest: Manifest
    outputs: dict[str, bytes]  # relative to the output folder; only what was (re)rendered
    rendered: int  # bots re-rendered this time
    compiler: Compiler  # holds every bot it compiled, for what runs next on the same sources (bot tests)


#: In the output folder: the files the last build wrote, so the next one deletes only those.
RECORD = ".polybot-outputs.json"
#: In the output folder: `name==version` of every runtime dependency the build ran with.
CONSTRAINTS = "constraints.txt"
MANIFEST = "manifest.json"
#: In the output folder, ignored by git: the stats of the last build's sources and outputs.
CACHE = ".polybot-cache"
STATS = f"{CACHE}/stats.json"


def build(root: Path, out: Path, *, check: bool = False) -> BuildResult:
    """`polybot build`: write out/manifest.json and out/prompts/*.md (only what changed).

    With `check`, render everything afresh and fail if out/ differs (a stale, unreviewed build).
    Files are replaced atomically, the manifest last; only files the previous build recorded are
    ever deleted, and `out` must be a folder of polybot's own.
    """
    check_out_folder(root, out)
    scanned_ns, sources = time.time_ns(), {} if check else scan(root)  # stats before any content is read
    if not check and (unchanged := _stat_pass(root, out, sources)) is not None:
        return unchanged
    previous = None
    if not check and (out / MANIFEST).is_file():
        try:
            previous = load_manifest(out / MANIFEST)
        except PolybotError:
            previous = None  # unreadable: rebuild everything
    # A bot whose prompt file vanished, or differs from what the last build wrote (by its stat), is
    # not reused: it is compiled, and rendered, again.
    written = record.outputs if (record := StatRecord.load(out / STATS)) is not None else {}
    last = {name: spec for name, spec in previous.bots.items() if _intact(out, f"prompts/{name}.md", written)} \
        if previous is not None else {}
    result = compile_outputs(Compiler(root, last), previous)
    expected = {f"prompts/{name}.md" for name in result.manifest.bots} | {MANIFEST, CONSTRAINTS, RECORD}
    result.outputs[CONSTRAINTS] = constraints().encode()
    result.outputs[RECORD] = (json.dumps({"files": sorted(expected)}, indent=2) + "\n").encode()
    recorded = recorded_outputs(out)
    rel_out = display_path(out, root)
    if check:
        # constraints.txt records this machine's installed versions, not the project: another machine
        # (CI's fresh install) may resolve newer patch releases, which is no stale build.
        stale = [name for name, data in sorted(result.outputs.items())
                 if name != CONSTRAINTS and (not (out / name).is_file() or (out / name).read_bytes() != data)]
        stale += sorted(p for p in recorded - expected if (out / p).is_file())
        if stale:
            raise PolybotError([f"{rel_out}/{name}: stale; run `polybot build` and commit {rel_out}/"
                                for name in stale])
        return result
    # The manifest goes last: until it is replaced, `serve` and the next build see the last good one.
    for name in sorted(result.outputs, key=lambda n: (n == MANIFEST, n == RECORD, n)):
        path = out / name
        data = result.outputs[name]
        if not path.is_file() or path.read_bytes() != data:
            # Prompts are not flushed one by one (1000 fsyncs were most of a cold build): after a crash
            # the next build renders again any prompt whose stat differs from the record (`_intact`).
            write_atomic(path, data, sync=not name.startswith("prompts/"))
    for name in sorted(recorded - expected):
        path = out / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
    _record_stats(out, sources, scanned_ns, expected)
    return result


def _intact(out: Path, name: str, written: dict[str, Stat]) -> bool:
    try:
        st = os.stat(out / name)
    except OSError:
        return False
    return name not in written or written[name] == (st.st_size, st.st_mtime_ns)


def _stat_pass(root: Path, out: Path, sources: dict[str, Stat]) -> BuildResult | None:
    """The last build again when no source's stat changed since it (nor its outputs', nor the
    environment's): a stat pass, reading no source. None when anything is in doubt."""
    record = StatRecord.load(out / STATS)
    if record is None or not record.trusted or record.version != __version__ or record.sources != sources \
            or record.environment != environment():
        return None
    if stat_files(out, record.outputs) != record.outputs:
        return None
    try:
        data = (out / MANIFEST).read_bytes()
        if len(data) != record.manifest_size:
            return None
        from polybot.providers import known_kinds

        manifest = Manifest.model_validate_json(data, context={"kinds": known_kinds()})
    except (OSError, ValueError):
        return None
    return BuildResult(manifest, {}, 0, Compiler(root, manifest.bots))


def _record_stats(out: Path, sources: dict[str, Stat], scanned_ns: int, expected: set[str]) -> None:
    """Keep what this build saw (graph.StatRecord) in out/.polybot-cache/, which git ignores."""
    written = stat_files(out, sorted(expected - {MANIFEST}))
    try:
        size = (out / MANIFEST).stat().st_size
    except OSError:
        return
    if written is None:
        return
    record = StatRecord(sources, written, size, environment(), __version__, not racy(sources, scanned_ns))
    (out / CACHE).mkdir(exist_ok=True)
    if not (out / CACHE / ".gitignore").is_file():
        write_atomic(out / CACHE / ".gitignore", b"# polybot build's stat record: machine-specific\n*\n")
    write_atomic(out / STATS, record.dumps().encode(), sync=False)


def compile_outputs(compiler: Compiler, previous: Manifest | None) -> BuildResult:
    """Compile the project; its outputs are the prompts rendered afresh and, unless unchanged, the manifest."""
    compiled = compiler.compile()
    if compiled.manifest is None:
        raise PolybotError(compiled.problems)
    manifest = compiled.manifest
    outputs = {f"prompts/{bot.name}.md": bot.prompt.encode() for bot in compiled.bots if bot.prompt is not None}
    rendered = len(outputs)
    if not _unchanged(previous, manifest, rendered):
        outputs[MANIFEST] = manifest.dumps()  # serialising 1000 bots is most of a no-change rebuild: skip it
    return BuildResult(manifest, outputs, rendered, compiler)


def _unchanged(previous: Manifest | None, manifest: Manifest, rendered: int) -> bool:
    """Whether `manifest` is `previous` again: no bot rendered, every spec reused, the rest equal."""
    return previous is not None and rendered == 0 and previous.polybot == manifest.polybot and \
        previous.format == manifest.format and previous.providers == manifest.providers and \
        previous.shared_templates == manifest.shared_templates and previous.bots.keys() == manifest.bots.keys() and \
        all(previous.bots[name] is spec for name, spec in manifest.bots.items())


def check_out_folder(root: Path, out: Path) -> None:
    """Refuse an output folder where writing or deleting could touch files polybot did not make."""
    root_r, out_r = root.resolve(), out.resolve()
    bots = root_r / "bots"
    shown = display_path(out, root)
    why = None
    if out_r == root_r or out_r in root_r.parents:
        why = "is the project folder or contains it"
    elif out_r == bots or bots in out_r.parents:
        why = "is inside bots/, where your bots' sources live"
    elif out_r.exists() and not out_r.is_dir():
        why = "is a file"
    elif out_r.is_dir() and any(out_r.iterdir()) and not _made_by_polybot(out_r):
        why = "is not empty and was not made by polybot build"
    if why is not None:
        raise PolybotError([f"--out {shown}: {why}; polybot build writes and deletes files there, so give it "
                            "a folder of its own (default: build/), new or empty"])


def _made_by_polybot(out: Path) -> bool:
    return (out / RECORD).is_file() or _legacy_bots(out) is not None


def _legacy_bots(out: Path) -> list[str] | None:
    """The bot names in out/manifest.json of a build from before the record (any schema version)."""
    try:
        data = json.loads((out / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "format" not in data or not isinstance(data.get("bots"), dict):
        return None
    return [name for name in data["bots"] if isinstance(name, str)]


def recorded_outputs(out: Path) -> set[str]:
    """What the previous build in `out` wrote (relative paths), from its record."""
    try:
        files = json.loads((out / RECORD).read_text("utf-8"))["files"]
        return {f for f in files if isinstance(f, str) and _inside(f)}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    bots = _legacy_bots(out)  # no record yet: the manifest and the prompts of the bots it names
    if bots is None:
        return set()
    return {MANIFEST} | {f"prompts/{name}.md" for name in bots if _inside(f"prompts/{name}.md")}


def _inside(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return bool(parts) and not PurePosixPath(rel).is_absolute() and ".." not in parts


def write_atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write `data` to a temporary file beside `path` (flushed to disk unless `sync` is off), then
    rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


#: polybot's distribution name(s): the first one installed is the one whose dependencies count.
DISTRIBUTIONS = ("polybot-poe", "polybot")


def constraints() -> str:
    """`name==version` of polybot's runtime dependencies and theirs, as installed (sorted)."""
    from importlib import metadata

    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - pip always brings packaging
        return ""
    root = next((d for d in DISTRIBUTIONS if _installed(d)), None)
    if root is None:
        return ""
    pins: dict[str, str] = {}
    todo = [root]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if name != root:
            pins[key] = dist.version
        for raw in dist.requires or []:
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            todo.append(req.name)
    lines = "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))
    return "# What `polybot build` ran with; the Modal image installs exactly these.\n" + lines


def _installed(name: str) -> bool:
    from importlib import metadata

    try:
        metadata.distribution(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def display_path(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
