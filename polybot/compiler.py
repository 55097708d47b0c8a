"""The compiler: load -> validate -> render -> assemble, behind build, dev, chat, list and bot tests.

A Compiler keeps the last spec it compiled for each bot, keyed by the bot's input digest (its own
files, providers.toml, polybot.toml and the shared partials its prompt reaches: `inputs`), so a bot
whose inputs did not change is not compiled again. Writing build/ is build.py's stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polybot.config import BotConfig
from polybot.controls import default_params, flatten
from polybot.errors import PolybotError, Problem, sorted_problems
from polybot.hookloader import Hooks
from polybot.manifest import BotSpec, Manifest, bot_metadata
from polybot.project import (
    HOOKS_FILE,
    PROMPT_FILE,
    SHARED_DIR,
    BotFiles,
    Project,
    digest,
    name_problems,
    read_project,
    reread,
)
from polybot.prompts import PromptLibrary, render_problem, sample_context
from polybot.validate import Checked, rel, validate


@dataclass(slots=True)
class CompiledBot:
    """The outcome of compiling one bot folder."""

    name: str
    spec: BotSpec | None = None  # None when it has problems
    prompt: str | None = None  # the rendered sample prompt; None when reused unchanged
    hooks: Hooks | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass(slots=True)
class Compiled:
    """A whole project compiled: each bot's outcome, every problem, and the manifest when there are none."""

    project: Project
    bots: list[CompiledBot]
    problems: list[Problem]  # sorted
    manifest: Manifest | None


class Compiler:
    """One project's compiler; `last` seeds it with the specs of a previous build (e.g. build/manifest.json)."""

    def __init__(self, root: Path, last: Mapping[str, BotSpec] | None = None) -> None:
        self.root = root
        self.library = PromptLibrary()  # every template it has checked, for the render stage
        self.project: Project | None = None  # what the last load read
        self.last: dict[str, CompiledBot] = {name: CompiledBot(name, spec) for name, spec in (last or {}).items()}

    def compile(self) -> Compiled:
        """Every bot of the project through the stages, then the manifest; collects every problem."""
        project = self.load()
        bots = [self.compile_bot(project, bot) for bot in project.bots]
        problems = sorted_problems([*project.problems, *name_problems([b.folder for b in project.bots]),
                                    *(p for bot in bots for p in bot.problems)])
        specs = {bot.name: bot.spec for bot in bots if bot.spec is not None}
        manifest = None if problems else self.assemble_manifest(project, specs)
        return Compiled(project, bots, problems, manifest)

    def manifest(self) -> Manifest:
        """The project compiled into its manifest; raise one PolybotError with every problem."""
        compiled = self.compile()
        if compiled.manifest is None:
            raise PolybotError(compiled.problems)
        return compiled.manifest

    def compile_bot(self, project: Project, bot: BotFiles) -> CompiledBot:
        """One bot: validate -> render -> assemble, or its last outcome when its inputs are unchanged."""
        last = self.last.get(bot.name)
        inputs = self.inputs(project, bot)
        if last is not None and last.spec is not None and last.spec.hash == inputs:
            return last
        checked = self.validate(project, bot)
        out = CompiledBot(bot.name, hooks=checked.hooks, problems=checked.problems)
        if out.problems:
            return out
        try:
            out.prompt = self.render(checked)
        except Exception as exc:  # noqa: BLE001 - any template failure is reported, located
            out.problems.append(render_problem(exc, rel(bot, PROMPT_FILE)))
            return out
        out.spec = self.assemble(checked, inputs)
        self.last[bot.name] = CompiledBot(bot.name, out.spec, hooks=out.hooks)
        return out

    # --- the stages ----------------------------------------------------------------------------

    def inputs(self, project: Project, bot: BotFiles) -> str:
        """The digest of everything `bot` compiles from: its own files (`bot.digest`), providers.toml
        and polybot.toml (`project.base`) and the shared partials its prompt reaches, so a partial's
        edit touches only the bots using it."""
        self.library.set_files(bot.name, bot.templates)
        prefix = f"{SHARED_DIR}/"
        used = sorted(n for n in self.library.reachable(bot.name) if n.startswith(prefix))
        return digest(bot.digest, project.base, *(f"{n}\0{self.library.sources[n]}" for n in used))

    def load(self, changed: set[Path] | None = None) -> Project:
        """Read the project once: providers, shared partials, every bot's files and input digest.

        With `changed` (the paths a watcher saw change since the last load), only what they touch is
        read again (project.reread)."""
        if changed is not None and self.project is not None:
            project = reread(self.project, changed)
        else:
            project = read_project(self.root)
        self.project = project
        self.library.set_files(SHARED_DIR, project.shared)
        present = {bot.name for bot in project.bots} | {SHARED_DIR}
        for name in set(self.library.folders) - present:
            self.library.remove(name)  # a bot folder that is gone
        self.last = {name: bot for name, bot in self.last.items() if name in present}
        return project

    def validate(self, project: Project, bot: BotFiles) -> Checked:
        """Every check of one bot (polybot/validate.py), each problem located."""
        return validate(project, bot, self.library)

    def render(self, checked: Checked) -> str:
        """The system prompt with the fixed sample context: what build/prompts/<Name>.md shows."""
        config, model = checked.resolved()
        meta = bot_metadata(checked.bot.name, config.description, config.version, config.provider, model)
        params = default_params(_every_control(config))
        return self.library.render(checked.bot.name, sample_context(meta, config.vars, params, checked.extra))

    def assemble(self, checked: Checked, inputs: str) -> BotSpec:
        """The compiled form of one bot, as the manifest keeps it."""
        config, model = checked.resolved()
        name = checked.bot.name
        return BotSpec(
            name=name,
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
            fallback=checked.fallbacks,
            poe=config.poe,
            access_key_env=checked.access_key_env,
            controls=_every_control(config),
            layout=config.parameter_controls,
            templates=self.library.own_templates(name),
            hooks=rel(checked.bot, HOOKS_FILE) if checked.bot.hooks is not None else None,
            hash=inputs,
            openai_api_key_env=config.openai_api.key_env or "POLYBOT_API_KEY",
            judge=config.test.judge,
            limits=config.limits,
            cache=config.cache,
        )

    def assemble_manifest(self, project: Project, specs: dict[str, BotSpec]) -> Manifest:
        """Every bot's spec, the providers they use and the shared templates they include."""
        used = {name for spec in specs.values() for name in (spec.provider, *(f.provider for f in spec.fallback))}
        return Manifest(
            providers={name: project.providers[name] for name in sorted(used)},
            shared_templates=self._shared_in_use(specs),
            bots=specs,
            settings=project.settings,
        )

    def _shared_in_use(self, specs: dict[str, BotSpec]) -> dict[str, str]:
        """The bots/_shared templates some bot includes, imports or extends (only those are served)."""
        used: set[str] = set()
        for name, spec in specs.items():
            if name not in self.library.folders:
                self.library.set_files(name, spec.templates)  # a bot reused from the last build was not loaded
            used.update(self.library.reachable(name))
        prefix = f"{SHARED_DIR}/"
        return {n.removeprefix(prefix): self.library.sources[n] for n in sorted(used) if n.startswith(prefix)}


def _every_control(config: BotConfig) -> list[dict[str, Any]]:
    """The bot's parameter controls, those inside the layout included."""
    return config.controls + flatten(config.parameter_controls)
