"""The validate stage: every check a bot must pass, each a function returning located problems.

`validate` runs them in order; a check that needs what an earlier one found (the parsed config,
the loaded hooks) runs only when that one succeeded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from polybot.config import (
    BotConfig,
    Fallback,
    ProviderConfig,
    default_access_key_env,
    locate,
    parse_toml,
    validate_model,
)
from polybot.controls import control_problems, layout_problems
from polybot.conversation import sample_request
from polybot.errors import PolybotError, Problem, did_you_mean
from polybot.hookloader import Hooks, hook_problem, load_hooks
from polybot.project import HOOKS_FILE, PROMPT_FILE, BotFiles, Project
from polybot.prompts import CONTEXT_NAMES, PromptLibrary


@dataclass(slots=True)
class Checked:
    """One bot after validation: what the checks found out about it, and what is wrong with it."""

    bot: BotFiles
    config: BotConfig | None = None
    model: str | None = None  # the resolved model (bot.toml's, else the provider's default)
    fallbacks: list[Fallback] = field(default_factory=list)  # each with its model resolved
    hooks: Hooks | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # what context() returns for the sample request
    problems: list[Problem] = field(default_factory=list)

    def resolved(self) -> tuple[BotConfig, str]:
        """The config and model of a bot that passed every check."""
        assert self.config is not None and self.model is not None, "only a valid bot is rendered"
        return self.config, self.model

    @property
    def access_key_env(self) -> str:
        """The variable holding the bot's Poe access key: `[poe] access_key_env`, else the default."""
        configured = self.config.poe.access_key_env if self.config is not None else None
        return configured or default_access_key_env(self.bot.name)


def validate(project: Project, bot: BotFiles, library: PromptLibrary) -> Checked:
    """Every check of one bot, in order; sets its templates in `library` (the render stage uses them)."""
    out = check_config(project, bot)
    if bot.toml is None:
        return out
    out.problems += check_options(project.providers, out) + check_controls(out)
    if missing := check_prompt(bot):
        out.problems += missing
        return out
    library.set_files(bot.name, bot.templates)
    if bot.hooks is not None and (failed := check_hooks(out)):
        out.problems += failed
        return out
    out.problems += check_tools(out) + check_templates(out, library)
    return out


def rel(bot: BotFiles, file: str) -> str:
    """`bots/<Name>/<file>`, the path problems are reported at."""
    return f"{bot.folder.rel}/{file}"


def check_config(project: Project, bot: BotFiles) -> Checked:
    """bot.toml: TOML syntax, the schema, then providers and models (what `polybot list` shows)."""
    out = Checked(bot, problems=list(bot.problems))
    if bot.toml is None:
        return out
    rel_toml = rel(bot, "bot.toml")
    data, problems = parse_toml(bot.toml, rel_toml)
    out.problems += problems
    if data is None:
        return out
    out.config, problems = validate_model(BotConfig, data, bot.toml, rel_toml)
    models, found = check_providers(project.providers, data, bot.toml, rel_toml)
    out.problems += problems + found
    if out.config is not None:
        out.model = models[0]
        out.fallbacks = [fb.model_copy(update={"model": model})
                         for fb, model in zip(out.config.fallback, models[1:], strict=True)]
    return out


def check_providers(providers: Mapping[str, ProviderConfig], data: dict[str, Any], text: str,
                    rel_toml: str) -> tuple[list[str | None], list[Problem]]:
    """The provider and model of bot.toml and of each `[[fallback]]`, resolved: [main, *fallbacks].

    Works on the parsed TOML, so a bot.toml that fails its schema still gets every provider problem
    in the same build; an entry without a provider name gets None.
    """
    entries: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    if isinstance(data.get("fallback"), list):
        entries += [(("fallback", i), fb) for i, fb in enumerate(data["fallback"])]
    models: list[str | None] = []
    problems: list[Problem] = []
    for prefix, entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("provider"), str):
            models.append(None)
            continue
        model = entry.get("model")
        found = resolve_model(providers, entry["provider"], model if isinstance(model, str) else None, text,
                              rel_toml, prefix)
        if isinstance(found, Problem):
            problems.append(found)
        models.append(found if isinstance(found, str) else None)
    return models, problems


def resolve_model(providers: Mapping[str, ProviderConfig], name: str, model: str | None, text: str,
                  rel_toml: str, prefix: tuple[str | int, ...]) -> str | Problem:
    """The model provider `name` runs (`model`, else its default), or the located problem why none."""
    label = "provider" if not prefix else f"fallback[{prefix[1]}].provider"
    provider = providers.get(name)
    if provider is None:
        return Problem(rel_toml, locate(text, (*prefix, "provider")),
                       f"{label}: unknown provider {name!r}{did_you_mean(name, providers)}; "
                       f"define it in providers.toml or use a built-in one ({', '.join(sorted(providers))})")
    resolved = model or provider.default_model
    label = label.replace("provider", "model")
    if resolved is None:
        return Problem(rel_toml, locate(text, (*prefix, "provider")),
                       f"{label}: provider {name!r} has no default_model; set `model`")
    if provider.models is not None and resolved not in provider.models:
        return Problem(rel_toml, locate(text, (*prefix, "model")),
                       f"{label}: unknown model {resolved!r} for provider {name!r}"
                       f"{did_you_mean(resolved, provider.models)}; it offers {', '.join(provider.models)}")
    return resolved


def check_options(providers: Mapping[str, ProviderConfig], out: Checked) -> list[Problem]:
    """`params` against the adapter's declared options, and its model rules (SPEC §6, STYLE #12)."""
    config, model, text, rel_toml = out.config, out.model, out.bot.toml, rel(out.bot, "bot.toml")
    if config is None or model is None or text is None:
        return []
    from polybot.providers import adapter_class

    provider = providers[config.provider]
    adapter = adapter_class(provider.kind)
    if adapter is None:
        return []
    params = {**provider.params, **config.params}
    problems = [Problem(p.path, p.line, f"{p.message}; options polybot does not know go under "
                        "params.extra_body, unchecked" if "unknown key" in p.message else p.message)
                for p in validate_model(adapter.Options, config.params, text, rel_toml, ("params",))[1]]
    for key, message in adapter.rules(model, config.temperature, config.max_tokens, params):
        problems.append(Problem(rel_toml, locate(text, tuple(key.split("."))), message))
    return problems


def check_controls(out: Checked) -> list[Problem]:
    """Poe parameter controls: each control, and the layout they sit in."""
    if out.config is None or out.bot.toml is None:
        return []
    text, rel_toml = out.bot.toml, rel(out.bot, "bot.toml")
    return control_problems(out.config.controls, text, rel_toml) + \
        layout_problems(out.config.parameter_controls, text, rel_toml)


def check_prompt(bot: BotFiles) -> list[Problem]:
    """The system prompt template is there."""
    if PROMPT_FILE in bot.templates:
        return []
    return [Problem(rel(bot, PROMPT_FILE), None, "missing: every bot needs a system prompt template "
                    "(create it, even if it is one line)")]


def check_hooks(out: Checked) -> list[Problem]:
    """hooks.py imports, and its context() answers the sample request; sets `out.hooks` and `out.extra`."""
    folder = out.bot.folder
    rel_hooks = rel(out.bot, HOOKS_FILE)
    try:
        out.hooks = load_hooks(folder.path / HOOKS_FILE, rel_hooks, folder.name)
    except PolybotError as exc:
        return [p for p in exc.problems if isinstance(p, Problem)]
    if out.hooks.context is not None:
        try:
            out.extra = dict(out.hooks.context(sample_request()))
        except Exception as exc:  # noqa: BLE001 - user code; report where it failed
            return [hook_problem(exc, folder.path / HOOKS_FILE, rel_hooks, "context() failed")]
    return []


def check_tools(out: Checked) -> list[Problem]:
    """Every name in `tools` is a function in hooks.py whose type hints have a JSON schema (SPEC §7)."""
    if out.config is None or not out.config.tools or out.bot.toml is None:
        return []
    from polybot.tools import load_tools

    namespace = out.hooks.namespace if out.hooks is not None else {}
    return load_tools(out.config.tools, namespace, rel(out.bot, HOOKS_FILE), rel(out.bot, "bot.toml"),
                      locate(out.bot.toml, ("tools",)))[1]


def check_templates(out: Checked, library: PromptLibrary) -> list[Problem]:
    """Jinja syntax, includes that exist, and no name the context cannot supply (context() included)."""
    return library.check(out.bot.name, CONTEXT_NAMES | frozenset(out.extra))
