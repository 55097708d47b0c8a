"""discover -> validate -> render -> manifest. Collects every problem, fails once."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from polybot.config import (
    BotConfig,
    ProviderConfig,
    default_access_key_env,
    load_providers,
    locate,
    parse_toml,
    validate_model,
)
from polybot.controls import control_problems, default_params, flatten, layout_problems
from polybot.conversation import sample_request
from polybot.errors import PolybotError, Problem, did_you_mean, sorted_problems
from polybot.hookloader import Hooks, hook_problem, load_hooks
from polybot.manifest import BotSpec, Manifest, load_manifest
from polybot.project import (
    HOOKS_FILE,
    PROMPT_FILE,
    SHARED_DIR,
    BotFolder,
    find_bots,
    name_problems,
    outside_links,
    read_templates,
)
from polybot.prompts import CONTEXT_NAMES, PromptLibrary, render_problem, sample_context


@dataclass(slots=True)
class ProjectSources:
    """What a build reads once for the whole project."""

    root: Path
    providers: dict[str, ProviderConfig]
    problems: list[Problem]
    shared: dict[str, str]
    digest: str  # of providers.toml and bots/_shared/, which every bot depends on
    bots: list[BotFolder]


def read_project(root: Path) -> ProjectSources:
    providers, problems = load_providers(root)
    problems += outside_links(root)
    shared = read_templates(root / "bots" / SHARED_DIR, root)
    providers_file = root / "providers.toml"
    digest = _digest(
        providers_file.read_text("utf-8") if providers_file.is_file() else "",
        *(f"{k}\0{v}" for k, v in sorted(shared.items())),
    )
    return ProjectSources(root, providers, problems, shared, digest, find_bots(root))


@dataclass(slots=True)
class CompiledBot:
    """The outcome of compiling one bot folder."""

    name: str
    spec: BotSpec | None = None
    prompt: str | None = None  # None when reused unchanged from the previous build
    hooks: Hooks | None = None
    problems: list[Problem] = field(default_factory=list)


def compile_bot(
    project: ProjectSources,
    folder: BotFolder,
    library: PromptLibrary,
    previous: BotSpec | None = None,
) -> CompiledBot:
    """Validate one bot and render its sample prompt; reuse `previous` when nothing changed."""
    out = CompiledBot(folder.name)
    toml_path = folder.path / "bot.toml"
    rel_toml = f"{folder.rel}/bot.toml"
    hooks_path = folder.path / HOOKS_FILE
    try:
        text = toml_path.read_text("utf-8")
    except FileNotFoundError:
        out.problems.append(Problem(rel_toml, None, "missing: every bot folder needs a bot.toml "
                                    "(create one with `polybot new NAME`)"))
        return out
    except (OSError, UnicodeDecodeError) as exc:
        out.problems.append(Problem(rel_toml, None, f"cannot read: {exc.__class__.__name__}"))
        return out
    templates = read_templates(folder.path, project.root)
    hooks_source = hooks_path.read_text("utf-8") if hooks_path.is_file() else None
    digest = _digest(folder.name, text, hooks_source or "", project.digest,
                     *(f"{k}\0{v}" for k, v in sorted(templates.items())))
    if previous is not None and previous.hash == digest:
        out.spec = previous
        return out

    data, problems = parse_toml(text, rel_toml)
    config, found = validate_model(BotConfig, data, text, rel_toml) if data is not None else (None, [])
    out.problems += problems + found

    model = None
    fallbacks = []
    if config is not None:
        model = _check_provider(project.providers, config.provider, config.model, text, rel_toml, (),
                                out.problems)
        if model is not None:
            out.problems += _check_options(project.providers[config.provider], model, config, text, rel_toml)
        for i, fb in enumerate(config.fallback):
            fb_model = _check_provider(project.providers, fb.provider, fb.model, text, rel_toml,
                                       ("fallback", i), out.problems)
            fallbacks.append(fb.model_copy(update={"model": fb_model}))
        out.problems += control_problems(config.controls, text, rel_toml)
        out.problems += layout_problems(config.parameter_controls, text, rel_toml)
    elif isinstance(data, dict):
        _check_raw_providers(project.providers, data, text, rel_toml, out.problems)

    if PROMPT_FILE not in templates:
        out.problems.append(Problem(f"{folder.rel}/{PROMPT_FILE}", None,
                                    "missing: every bot needs a system prompt template "
                                    "(create it, even if it is one line)"))
        return out
    library.set_files(folder.name, templates)

    extra: dict[str, Any] = {}
    if hooks_source is not None:
        rel_hooks = f"{folder.rel}/{HOOKS_FILE}"
        try:
            out.hooks = load_hooks(hooks_path, rel_hooks, folder.name)
        except PolybotError as exc:
            out.problems += [p for p in exc.problems if isinstance(p, Problem)]
            return out
        if out.hooks.context is not None:
            try:
                extra = dict(out.hooks.context(sample_request()))
            except Exception as exc:  # noqa: BLE001 - user code; report where it failed
                out.problems.append(hook_problem(exc, hooks_path, rel_hooks, "context() failed"))
                return out

    if config is not None and config.tools:
        from polybot.tools import load_tools

        namespace = out.hooks.namespace if out.hooks is not None else {}
        out.problems += load_tools(config.tools, namespace, f"{folder.rel}/{HOOKS_FILE}", rel_toml,
                                   locate(text, ("tools",)))[1]
    out.problems += library.check(folder.name, CONTEXT_NAMES | frozenset(extra))
    if out.problems or config is None or model is None:
        return out

    every_control = config.controls + flatten(config.parameter_controls)
    bot_meta = {"name": folder.name, "description": config.description, "version": config.version,
                "provider": config.provider, "model": model}
    try:
        out.prompt = library.render(folder.name, sample_context(bot_meta, config.vars,
                                                                default_params(every_control), extra))
    except Exception as exc:  # noqa: BLE001 - any template failure is reported, located
        out.problems.append(render_problem(exc, f"{folder.rel}/{PROMPT_FILE}"))
        return out

    out.spec = BotSpec(
        name=folder.name,
        description=config.description,
        version=config.version,
        provider=config.provider,
        model=model,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        params=config.params,
        show_thinking=config.show_thinking,
        tools=config.tools,
        max_tool_rounds=config.max_tool_rounds,
        vars=config.vars,
        fallback=fallbacks,
        poe=config.poe,
        access_key_env=config.poe.access_key_env or default_access_key_env(folder.name),
        controls=every_control,
        layout=config.parameter_controls,
        templates=library.own_templates(folder.name),
        hooks=f"{folder.rel}/{HOOKS_FILE}" if hooks_source is not None else None,
        hash=digest,
        openai_api_key_env=config.openai_api.key_env or "POLYBOT_API_KEY",
        judge=config.test.judge,
    )
    return out


def _check_provider(
    providers: dict[str, ProviderConfig],
    name: str,
    model: str | None,
    text: str,
    rel: str,
    prefix: tuple[str | int, ...],
    problems: list[Problem],
) -> str | None:
    """The resolved model for `name`, or None after appending a located problem."""
    label = "provider" if not prefix else f"fallback[{prefix[1]}].provider"
    provider = providers.get(name)
    if provider is None:
        problems.append(Problem(rel, locate(text, (*prefix, "provider")),
                                f"{label}: unknown provider {name!r}{did_you_mean(name, providers)}; "
                                "define it in providers.toml or use a built-in one "
                                f"({', '.join(sorted(providers))})"))
        return None
    resolved = model or provider.default_model
    label = label.replace("provider", "model")
    if resolved is None:
        problems.append(Problem(rel, locate(text, (*prefix, "provider")),
                                f"{label}: provider {name!r} has no default_model; set `model`"))
        return None
    if provider.models is not None and resolved not in provider.models:
        problems.append(Problem(rel, locate(text, (*prefix, "model")),
                                f"{label}: unknown model {resolved!r} for provider {name!r}"
                                f"{did_you_mean(resolved, provider.models)}; it offers "
                                f"{', '.join(provider.models)}"))
        return None
    return resolved


def _check_options(provider: ProviderConfig, model: str, config: BotConfig, text: str,
                   rel: str) -> list[Problem]:
    """`params` against the adapter's declared options, and its model rules (SPEC §6, STYLE #12)."""
    from polybot.providers import adapter_class

    adapter = adapter_class(provider.kind)
    if adapter is None:
        return []
    params = {**provider.params, **config.params}
    problems = [Problem(p.path, p.line, f"{p.message}; options polybot does not know go under "
                        "params.extra_body, unchecked" if "unknown key" in p.message else p.message)
                for p in validate_model(adapter.Options, config.params, text, rel, ("params",))[1]]
    for key, message in adapter.rules(model, config.temperature, config.max_tokens, params):
        problems.append(Problem(rel, locate(text, tuple(key.split("."))), message))
    return problems


def _check_raw_providers(providers: dict[str, ProviderConfig], data: dict[str, Any], text: str, rel: str,
                         problems: list[Problem]) -> None:
    """Provider and model checks on a bot.toml that failed its schema: every problem, in one build."""
    entries: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    if isinstance(data.get("fallback"), list):
        entries += [(("fallback", i), fb) for i, fb in enumerate(data["fallback"])]
    for prefix, entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("provider"), str):
            model = entry.get("model")
            _check_provider(providers, entry["provider"], model if isinstance(model, str) else None, text, rel,
                            prefix, problems)


def _shared_in_use(library: PromptLibrary, specs: dict[str, BotSpec]) -> dict[str, str]:
    """The bots/_shared templates some bot includes, imports or extends (only those are served)."""
    used: set[str] = set()
    for name, spec in specs.items():
        library.set_files(name, spec.templates)  # a bot reused from the last build was not loaded
        used.update(library.reachable(name))
    prefix = f"{SHARED_DIR}/"
    return {n.removeprefix(prefix): library.sources[n] for n in sorted(used) if n.startswith(prefix)}


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0\1")
    return h.hexdigest()[:16]


# --- the whole project ----------------------------------------------------------------------


@dataclass(slots=True)
class BuildResult:
    manifest: Manifest
    outputs: dict[str, bytes]  # relative to the output folder; only what was (re)rendered
    rendered: int  # bots re-rendered this time


def compile_project(root: Path, previous: Manifest | None = None) -> BuildResult:
    """Compile every bot; raise one PolybotError with every problem found."""
    project = read_project(root)
    library = PromptLibrary()
    library.set_files(SHARED_DIR, project.shared)
    problems = list(project.problems) + name_problems(project.bots)
    specs: dict[str, BotSpec] = {}
    outputs: dict[str, bytes] = {}
    rendered = 0
    old = previous.bots if previous is not None else {}
    for folder in project.bots:
        compiled = compile_bot(project, folder, library, old.get(folder.name))
        problems += compiled.problems
        if compiled.spec is not None:
            specs[folder.name] = compiled.spec
        if compiled.prompt is not None:
            outputs[f"prompts/{folder.name}.md"] = compiled.prompt.encode()
            rendered += 1
    if problems:
        raise PolybotError(sorted_problems(problems))
    used = {name for spec in specs.values() for name in (spec.provider, *(f.provider for f in spec.fallback))}
    manifest = Manifest(
        providers={name: project.providers[name] for name in sorted(used)},
        shared_templates=_shared_in_use(library, specs),
        bots=specs,
    )
    unchanged = previous is not None and rendered == 0 and previous.polybot == manifest.polybot and \
        previous.format == manifest.format and \
        previous.providers == manifest.providers and \
        previous.shared_templates == manifest.shared_templates and previous.bots.keys() == specs.keys() and \
        all(previous.bots[name] is spec for name, spec in specs.items())
    if not unchanged:  # serialising 1000 bots is most of a no-change rebuild: skip it when we can
        outputs["manifest.json"] = manifest.dumps()
    return BuildResult(manifest, outputs, rendered)


#: In the output folder: the files the last build wrote, so the next one deletes only those.
RECORD = ".polybot-outputs.json"
#: In the output folder: `name==version` of every runtime dependency the build ran with.
CONSTRAINTS = "constraints.txt"
MANIFEST = "manifest.json"


def build(root: Path, out: Path, *, check: bool = False) -> BuildResult:
    """`polybot build`: write out/manifest.json and out/prompts/*.md (only what changed).

    With `check`, render everything afresh and fail if out/ differs (a stale, unreviewed build).
    Files are replaced atomically, the manifest last; only files the previous build recorded are
    ever deleted, and `out` must be a folder of polybot's own.
    """
    check_out_folder(root, out)
    previous = None
    if not check and (out / MANIFEST).is_file():
        try:
            previous = load_manifest(out / MANIFEST)
        except PolybotError:
            previous = None  # unreadable: rebuild everything
    result = compile_project(root, previous)
    # A reused bot whose prompt file vanished must be rendered again.
    missing = {name for name in result.manifest.bots if not (out / f"prompts/{name}.md").is_file()
               and f"prompts/{name}.md" not in result.outputs}
    if missing and not check:
        reduced = result.manifest.model_copy(update={"bots": {
            k: v for k, v in result.manifest.bots.items() if k not in missing}})
        result = compile_project(root, reduced)
    expected = {f"prompts/{name}.md" for name in result.manifest.bots} | {MANIFEST, CONSTRAINTS, RECORD}
    result.outputs[CONSTRAINTS] = constraints().encode()
    result.outputs[RECORD] = (json.dumps({"files": sorted(expected)}, indent=2) + "\n").encode()
    recorded = recorded_outputs(out)
    rel_out = _display(out, root)
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
            write_atomic(path, data)
    for name in sorted(recorded - expected):
        path = out / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
    return result


def check_out_folder(root: Path, out: Path) -> None:
    """Refuse an output folder where writing or deleting could touch files polybot did not make."""
    root_r, out_r = root.resolve(), out.resolve()
    bots = root_r / "bots"
    shown = _display(out, root)
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


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
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


def _display(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _check_bot_tests(root: Path) -> int:
    """`build --check` also runs every bot's tests.toml, offline from recordings (SPEC §8)."""
    from polybot.bottests import TESTS_FILE, print_report, run_tests

    if not any((root / "bots").glob(f"*/{TESTS_FILE}")):
        return 0
    report = run_tests(root)
    if report.failed or report.problems:
        print_report(report)
        return 1
    count = len(report.outcomes)
    print(f"bot tests pass ({count} test{'s' if count != 1 else ''})")
    return 0


def cmd_build(args: Any) -> int:
    root: Path = args.project
    out: Path = (args.out if args.out is not None else root / "build").resolve()
    result = build(root, out, check=args.check)
    n = len(result.manifest.bots)
    rel = _display(out, root)
    if args.check:
        print(f"{rel}/ is up to date ({n} bot{'' if n == 1 else 's'})")
        return _check_bot_tests(root)
    else:
        print(f"built {n} bot{'' if n == 1 else 's'} into {rel}/ "
              f"({result.rendered} rendered, {n - result.rendered} unchanged)")
    return 0
