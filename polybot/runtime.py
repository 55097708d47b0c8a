"""A compiled bot answering: prompt -> hooks -> provider chain -> events; and its assembly from a manifest."""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastapi_poe as fp

from polybot.config import ProviderConfig
from polybot.controls import allowed_params, default_params, parameter_controls
from polybot.conversation import last_user_text, poe_system_text, template_context, to_messages
from polybot.hookloader import Hooks, hook_problem, load_hooks
from polybot.manifest import BotSpec, Manifest
from polybot.pricing import Meter, charges
from polybot.project import SHARED_DIR
from polybot.prompts import PromptLibrary, RenderTimeout, render_off_loop, render_problem
from polybot.protect import Protection
from polybot.providers.base import ChatRequest, FileOut, Message, Origin, ToolCall, ToolSpec
from polybot.reliability import Event, ProviderPool, ReplyInfo, Step, Tools, stream_chain
from polybot.security import clean_request
from polybot.tools import ToolBox, load_tools

log = logging.getLogger("polybot")


@dataclass(slots=True)
class Runtime:
    """A compiled bot ready to answer: its spec plus the shared prompt library and providers.

    Hooks' `respond(request, bot)` receives this as `bot`: `bot.spec`, `bot.provider()` (the
    configured adapter) and `bot.complete(request)` (the normal reply path) are there to use.
    """

    spec: BotSpec
    library: PromptLibrary
    pool: ProviderPool
    hooks: Hooks | None = None
    root: Path = field(default_factory=Path.cwd)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    toolbox: ToolBox | None = field(default=None, init=False)
    #: The process's limits and response cache (polybot/protect.py); None: neither.
    protection: Protection | None = None

    def __post_init__(self) -> None:
        if self.spec.tools and self.hooks is not None:
            tools, _ = load_tools(self.spec.tools, self.hooks.namespace, self.hooks.rel_path, "", None)
            self.toolbox = ToolBox(tools, self.root / self.hooks.rel_path, self.hooks.rel_path)

    def provider(self) -> Any:
        return self.pool.get(self.spec.provider)

    async def complete(self, request: fp.QueryRequest, info: ReplyInfo | None = None) -> AsyncGenerator[Event, None]:
        """The reply a bot without `respond` gives: render, map, stream with failover."""
        params = chosen_params(self.spec, request)
        try:
            system = await render_off_loop(self.render_prompt, request, params)
            messages = self.messages_for(request)
        except (_HookOrTemplateError, RenderTimeout) as exc:
            yield fp.ErrorResponse(text=str(exc), allow_retry=False)
            return
        except ImportError as exc:
            yield fp.ErrorResponse(text=f"provider {self.spec.provider!r} cannot load its SDK ({exc.name}); "
                                   "reinstall polybot", allow_retry=False)
            return
        if request.skip_system_prompt:
            system = ""
        stop = tuple(request.stop_sequences)
        origin = Origin(request.user_id, request.conversation_id, request.message_id, request.metadata,
                        access_key=self.environ.get(self.spec.access_key_env) or None,
                        access_key_env=self.spec.access_key_env)
        temperature = params.get("temperature", self.spec.temperature)
        if temperature is None:
            temperature = request.temperature  # Poe's own, when the bot pins none
        chain = [self._step(self.spec.provider, _override_model(self.spec, params), system, messages,
                            params, stop, origin, temperature, primary=True, request_tools=request.tools)]
        chain += [self._step(fb.provider, fb.model or "", system, messages, params, stop, origin, temperature,
                             primary=False, request_tools=request.tools)
                  for fb in self.spec.fallback]
        tools = Tools(self.toolbox, frozenset(t.function.name for t in request.tools or ()),
                      self.spec.max_tool_rounds)
        fields = {"user_id": request.user_id, "conversation_id": request.conversation_id,
                  "message_id": request.message_id, "prompt": last_user_text(request)}
        gate = self.protection.gate(self.spec, request, chain, self.pool, fields) \
            if self.protection is not None else None
        meter = self._meter(request, origin.access_key)
        if gate is not None or meter is not None:
            info = info or ReplyInfo()
        try:  # from the gate's reservation on: whatever happens next, `after` settles it
            if gate is not None:
                assert info is not None
                answered = await gate.before(info)  # over a limit, or in the cache: no provider call
                if answered is not None:
                    yield answered
                    return
            if meter is not None:
                size = len(system) + sum(len(m.text) for m in messages)
                refused = await meter.authorize(request, meter.estimate(size, chain[0].request.max_tokens))
                if refused is not None:
                    yield refused
                    return
            async with aclosing(stream_chain(self.spec.name, chain, self.pool, show_thinking=self.spec.show_thinking,
                                             info=info, tools=tools, fields=fields)) as events:
                async for event in events:
                    if gate is not None:
                        gate.saw(event)
                    yield event
        finally:
            if gate is not None and info is not None:
                await gate.after(info)  # also when the client went away or a provider raised: settled
        if meter is not None and info is not None and info.outcome in ("ok", "truncated"):
            await meter.capture(request, info.usage)

    def _meter(self, request: fp.QueryRequest, access_key: str | None) -> Meter | None:
        """The cost meter of a priced reply on Poe (Poe sends a bot_query_id); None otherwise."""
        pricing = self.spec.poe.pricing
        if not charges(pricing) or self.spec.poe.kind == "api" or not request.bot_query_id or not access_key:
            return None
        assert pricing is not None
        return Meter(pricing, fp.PoeBot(path=f"/{self.spec.name}", access_key=access_key, bot_name=None))

    def render_prompt(self, request: fp.QueryRequest, params: dict[str, Any]) -> str:
        spec = self.spec
        context = template_context(request, params)
        if self.hooks is not None and self.hooks.context is not None:
            context = {**self._call_hook("context", self.hooks.context, request), **context}
        context["bot"] = spec.metadata()
        context["vars"] = spec.vars
        try:
            prompt = self.library.render(spec.name, context)
        except Exception as exc:  # noqa: BLE001 - reported located, never raw
            raise _HookOrTemplateError(str(render_problem(exc, f"bots/{spec.name}/system.md.j2"))) from None
        extra = poe_system_text(request.query)
        return f"{prompt.rstrip()}\n\n{extra}" if extra else prompt

    def messages_for(self, request: fp.QueryRequest) -> list[Message]:
        messages = to_messages(request.query, self.spec.name) + tool_round(request)
        if self.hooks is not None and self.hooks.messages is not None:
            messages = list(self._call_hook("messages", self.hooks.messages, messages, request))
        return messages

    def _step(self, provider: str, model: str, system: str, messages: list[Message],
              params: dict[str, Any], stop: tuple[str, ...], origin: Origin, temperature: Any, *,
              primary: bool, request_tools: Sequence[fp.ToolDefinition] | None = None) -> Step:
        spec = self.spec
        config = self.pool.configs[provider]
        extra = dict(spec.params) if primary else {}
        max_tokens = params.get("max_tokens", spec.max_tokens)
        return Step(provider, ChatRequest(
            model=model or config.default_model or "",
            system=system,
            messages=tuple(messages),
            temperature=float(temperature) if temperature is not None else None,
            max_tokens=int(max_tokens) if max_tokens is not None else None,
            stop=stop,
            params={**config.params, **extra},
            origin=origin,
            tools=self._tool_specs(request_tools),
        ))

    def _tool_specs(self, request_tools: Sequence[fp.ToolDefinition] | None) -> tuple[ToolSpec, ...]:
        """The bot's own tools, then those the Poe request supplies (returned to the caller)."""
        own = self.toolbox.specs() if self.toolbox is not None else ()
        theirs = tuple(ToolSpec(t.function.name, t.function.description, t.function.parameters.model_dump(
            exclude_none=True)) for t in request_tools or ())
        return own + theirs

    def _call_hook(self, name: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - user code; located, never a bare traceback
            assert self.hooks is not None
            path = self.root / self.hooks.rel_path
            raise _HookOrTemplateError(str(hook_problem(exc, path, self.hooks.rel_path, f"{name}() failed"))) \
                from None

    async def respond(self, request: fp.QueryRequest,
                      info: ReplyInfo | None = None) -> AsyncIterator[Event | fp.MetaResponse]:
        """Every event of one reply. Never raises: failures become error events. `info` receives
        the outcome and usage once the reply has ended."""
        spec = self.spec
        request = clean_request(request)
        if spec.poe.suggested_replies is not None:
            yield fp.MetaResponse(text="", suggested_replies=spec.poe.suggested_replies)
        if last_user_text(request).strip().lower() == "bot info":
            yield fp.PartialResponse(text=json.dumps(spec.metadata(), indent=2))
            return
        source = self.complete(request, info)
        if self.hooks is not None and self.hooks.respond is not None:
            source = self._respond_hook(request)
        try:
            async with aclosing(source) as events:  # closed with this one: a reply abandoned settles now
                async for event in events:
                    yield event
        except Exception as exc:  # last line of defence: Poe gets an event, not repr(e)
            log.exception("bot %s failed", spec.name)
            yield fp.ErrorResponse(text=f"{spec.name} hit an internal error ({type(exc).__name__}); "
                                   "the server log has details", allow_retry=True)

    async def _respond_hook(self, request: fp.QueryRequest) -> AsyncGenerator[Event, None]:
        assert self.hooks is not None and self.hooks.respond is not None
        try:
            async for item in self.hooks.respond(request, self):
                if isinstance(item, str):
                    yield fp.PartialResponse(text=item)
                elif isinstance(item, FileOut):
                    yield fp.PartialResponse(text="", attachment=fp.Attachment(
                        url=item.url, content_type=item.content_type, name=item.name, inline_ref=item.inline_ref))
                else:
                    yield item
        except Exception as exc:  # noqa: BLE001 - user code; located, never a bare traceback
            path = self.root / self.hooks.rel_path
            problem = hook_problem(exc, path, self.hooks.rel_path, "respond() failed")
            yield fp.ErrorResponse(text=str(problem), allow_retry=False)

    async def report(self, hook: str, report: Any) -> None:
        """Hand one of Poe's reports to the matching hook, if hooks.py defines it."""
        fn = getattr(self.hooks, hook, None) if self.hooks is not None else None
        if fn is None:
            return
        try:
            result = fn(report)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # noqa: BLE001 - user code; logged located, never raised to Poe
            assert self.hooks is not None
            log.warning("%s", hook_problem(exc, self.root / self.hooks.rel_path, self.hooks.rel_path,
                                           f"{hook}() failed"))

    def settings(self) -> fp.SettingsResponse:
        return settings(self.spec, self.pool.configs)

    def dependencies(self) -> dict[str, int]:
        return dependencies(self.spec, self.pool.configs)


def settings(spec: BotSpec, providers: Mapping[str, ProviderConfig]) -> fp.SettingsResponse:
    """What the bot answers Poe's settings request with (and `polybot sync` pushes): from its
    compiled spec and the manifest's providers alone, no hooks.py imported."""
    values = spec.poe.model_dump(exclude={"access_key_env", "suggested_replies", "kind", "base_url", "pricing"},
                                 exclude_none=True)
    values["server_bot_dependencies"] = dependencies(spec, providers)
    return fp.SettingsResponse(**values, parameter_controls=parameter_controls(spec.controls, spec.layout))


def dependencies(spec: BotSpec, providers: Mapping[str, ProviderConfig]) -> dict[str, int]:
    """Poe bots this bot calls: one call per reply for every `poe`-kind link of its chain
    (fallbacks included), merged with `[poe] server_bot_dependencies` (explicit counts win)."""
    found: dict[str, int] = {}
    links = [(spec.provider, spec.model)]
    links += [(fb.provider, fb.model or "") for fb in spec.fallback]
    for provider, model in links:
        config = providers.get(provider)
        if config is not None and config.kind == "poe":
            name = model or config.default_model or ""
            if name:
                found[name] = max(found.get(name, 0), 1)
    return {**found, **spec.poe.server_bot_dependencies}


def tool_round(request: fp.QueryRequest) -> list[Message]:
    """A Poe request that returns results of tools it supplied: the calls and their results."""
    if not request.tool_calls:
        return []
    calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in request.tool_calls)
    names = {c.id: c.name for c in calls}
    return [Message("assistant", "", tool_calls=calls)] + [
        Message("tool", r.content, name=names.get(r.tool_call_id, r.name), tool_call_id=r.tool_call_id)
        for r in request.tool_results or ()]


class _HookOrTemplateError(Exception):
    """A located failure in a template or hook, already phrased for the user."""


def chosen_params(spec: BotSpec, request: fp.QueryRequest) -> dict[str, Any]:
    """Control defaults, overridden by what the user picked for the latest message: only declared
    `[[controls]]`, each value clamped to its control's bounds or options."""
    params = default_params(spec.controls)
    for message in reversed(request.query):
        if message.role == "user":
            params.update(allowed_params(spec.controls, message.parameters, spec.max_tokens))
            break
    return params


def _override_model(spec: BotSpec, params: Mapping[str, Any]) -> str:
    """A `model` control may pick among its own drop-down options, nothing else."""
    picked = params.get("model")
    if picked is None:
        return spec.model
    for control in spec.controls:
        if control.get("parameter_name") == "model":
            allowed = {o.get("value") for o in control.get("options", [])}
            if picked in allowed:
                return str(picked)
    return spec.model


def runtimes_from_manifest(manifest: Manifest, root: Path,
                           environ: Mapping[str, str] | None = None) -> list[Runtime]:
    """Everything `serve` needs, from build/manifest.json (plus the hooks.py files it names)."""
    environ = os.environ if environ is None else environ
    library = PromptLibrary()
    library.set_files(SHARED_DIR, manifest.shared_templates)
    pool = ProviderPool(manifest.providers)
    protection = Protection(manifest.settings, environ)
    runtimes = []
    for spec in manifest.bots.values():
        library.set_files(spec.name, spec.templates)
        hooks = load_hooks(root / spec.hooks, spec.hooks, spec.name) if spec.hooks else None
        runtimes.append(Runtime(spec, library, pool, hooks, root, environ, protection=protection))
    return runtimes
