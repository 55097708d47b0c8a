"""The schema of bot.toml and providers.toml, and loading them with located errors."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from polybot.errors import Problem, did_you_mean, sorted_problems
from polybot.security import check_header_variables, check_literal_headers


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Strict):
    """One `[name]` table of providers.toml (or a built-in preset)."""

    kind: str
    api_base: str | None = None
    api_key_env: str | None = None
    default_model: str | None = None
    models: list[str] | None = None
    api_version: str | None = None
    headers: dict[str, str] = {}
    headers_env: dict[str, str] = {}  # header name -> environment variable holding its value (secrets)
    params: dict[str, Any] = {}
    timeout: float = Field(60.0, gt=0)
    max_retries: int = Field(2, ge=0, le=10)
    #: Whether the models take images; unset: the model table in polybot/providers/models.py.
    vision: bool | None = None

    @field_validator("headers")
    @classmethod
    def _no_literal_secrets(cls, headers: dict[str, str]) -> dict[str, str]:
        return check_literal_headers(headers)

    @field_validator("headers_env")
    @classmethod
    def _variable_names(cls, headers_env: dict[str, str]) -> dict[str, str]:
        return check_header_variables(headers_env)

    def request_headers(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """`headers` plus each `headers_env` header whose variable is set (values never stored)."""
        environ = os.environ if environ is None else environ
        return {**self.headers, **{h: environ[v] for h, v in self.headers_env.items() if environ.get(v)}}

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str, info: ValidationInfo) -> str:
        # The registry (polybot.providers) imports this module: the caller passes its kinds in the
        # validation context, `model_validate(data, context={"kinds": known_kinds()})`.
        kinds = (info.context or {}).get("kinds")
        if kinds is not None and kind not in kinds:
            raise ValueError(f"unknown kind {kind!r}{did_you_mean(kind, kinds)}; "
                             f"expected one of {', '.join(kinds)}")
        return kind


class Fallback(_Strict):
    """One `[[fallback]]` entry: the next provider (and model) to try."""

    provider: str
    model: str | None = None


class PoePricingTier(_Strict):
    """A `[[poe.pricing.tiers]]` entry: the rates once a request's input reaches `min_prompt_tokens`."""

    min_prompt_tokens: int = Field(gt=0)
    prompt: float | str
    completion: float | str


class PoePricing(_Strict):
    """`[poe.pricing]`: what a reply costs the user, in USD.

    `prompt` and `completion` are per token (a Poe API bot's prices, sent by `polybot sync
    --api-bots`; a server bot charges them from the usage its provider reports), `per_reply` a flat
    charge per reply (server bots). A server bot authorizes before calling the provider and
    captures the actual amount after, through Poe's cost API.
    """

    prompt: float | str | None = None
    completion: float | str | None = None
    per_reply: float | None = Field(None, ge=0)
    tiers: list[PoePricingTier] = []


class PoeConfig(_Strict):
    """The `[poe]` table: Poe settings (SettingsResponse) and serving."""

    access_key_env: str | None = None
    introduction_message: str | None = None
    allow_attachments: bool | None = None
    enable_image_comprehension: bool | None = None
    expand_text_attachments: bool | None = None
    enforce_author_role_alternation: bool | None = None
    enable_multi_entity_prompting: bool | None = None
    server_bot_dependencies: dict[str, int] = {}
    suggested_replies: bool | None = None
    #: Shown to users on Poe (SettingsResponse): the prices in words, and the label under each reply.
    rate_card: str | None = None
    cost_label: str | None = None
    #: "api": published as a Poe API bot by `polybot sync --api-bots` (SPEC §9); not a setting.
    kind: Literal["server", "api"] | None = None
    #: The public base URL Poe calls for an API bot (e.g. "https://bots.example.com/v1").
    base_url: str | None = None
    pricing: PoePricing | None = None


class OpenAIApiConfig(_Strict):
    """The `[openai_api]` table: this bot on the OpenAI-compatible endpoint."""

    #: The variable holding the key clients send for this bot (default: POLYBOT_API_KEY).
    key_env: str | None = None


class TestSettings(_Strict):
    """The `[test]` table: how `polybot test` grades this bot."""

    #: The bot (in this project) that grades `judge = "..."` checks: it must answer PASS or FAIL.
    judge: str | None = None


class LogsSettings(_Strict):
    """`[logs]` (polybot.toml): the reply store, one row per reply (docs/logs.md)."""

    #: Keep a reply store at all (SQLite at `path`, relative to the project root).
    enabled: bool = True
    path: str = ".polybot/logs.db"
    #: Store message text (the user's last message and the reply); unset: on in `dev`, off in `serve`.
    content: bool | None = None
    #: Retention: the newest `max_rows` rows, none older than `max_days`.
    max_rows: int = Field(default=100_000, gt=0)
    max_days: float = Field(default=30, gt=0)


class ModelPrice(_Strict):
    """One `[limits.prices."<provider>/<model>"]` override: USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cached_input: float | None = Field(default=None, ge=0)


class BotLimits(_Strict):
    """`[limits]` in bot.toml: this bot's caps, over polybot.toml's (docs/limits.md). Unset: the
    project's default, else no limit."""

    #: Per user (Poe `user_id`; on /v1 the `user` field, else the API key).
    user_requests_per_minute: int | None = Field(default=None, gt=0)
    user_tokens_per_day: int | None = Field(default=None, gt=0)
    #: USD per UTC day for this bot (in polybot.toml: for each bot).
    bot_spend_per_day: float | None = Field(default=None, ge=0)
    #: Price overrides by "provider/model" (else the maintained price table), USD per million tokens.
    prices: dict[str, ModelPrice] = {}


class LimitsSettings(BotLimits):
    """`[limits]` in polybot.toml: every bot's default caps, plus what only the project can say."""

    #: USD per UTC day for all bots together.
    project_spend_per_day: float | None = Field(default=None, ge=0)
    #: Share counters across workers and replicas (POLYBOT_REDIS_URL wins); when Redis is down:
    #: "open" answers (logged once), "closed" refuses.
    redis: str | None = None
    on_redis_down: Literal["open", "closed"] = "open"


class CacheSettings(_Strict):
    """`[cache]`: an exact-match response cache for deterministic requests (docs/limits.md)."""

    enabled: bool = False
    ttl: float = Field(default=3600, gt=0)  # seconds


class ProjectSettings(_Strict):
    """polybot.toml: project-wide settings for operating the fleet."""

    logs: LogsSettings = LogsSettings()
    limits: LimitsSettings = LimitsSettings()
    cache: CacheSettings = CacheSettings()


class BotConfig(_Strict):
    """A bot's bot.toml."""

    provider: str
    model: str | None = None
    description: str = ""
    version: str = "1.0.0"
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0)
    params: dict[str, Any] = {}
    #: Stream the model's reasoning first, as a Markdown blockquote (hidden by default).
    show_thinking: bool = False
    #: Functions in hooks.py the model may call (SPEC §7), and how many rounds of calls per reply.
    tools: list[str] = []
    max_tool_rounds: int = Field(5, ge=1, le=50)
    vars: dict[str, Any] = {}
    fallback: list[Fallback] = []
    poe: PoeConfig = PoeConfig()
    controls: list[dict[str, Any]] = []
    #: Poe's full ParameterControls layout: sections, tabs, conditions (checked at build time).
    parameter_controls: dict[str, Any] | None = None
    openai_api: OpenAIApiConfig = OpenAIApiConfig()
    test: TestSettings = TestSettings()
    #: This bot's own caps and cache, over polybot.toml's (docs/limits.md).
    limits: BotLimits | None = None
    cache: CacheSettings | None = None


def default_access_key_env(bot_name: str) -> str:
    """`POE_ACCESS_KEY_<NAME>`: NAME upper-cased, non-alphanumerics replaced by `_`."""
    return "POE_ACCESS_KEY_" + re.sub(r"[^A-Z0-9]", "_", bot_name.upper())


# --- loading -------------------------------------------------------------------------------

_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)$")


def parse_toml(text: str, rel_path: str) -> tuple[dict[str, Any] | None, list[Problem]]:
    """Parse TOML text; a syntax error becomes one located problem."""
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        line = int(match.group(1)) if match else None
        message = _TOML_POSITION.sub("", message).replace(" (at end of document)", "")
        return None, [Problem(rel_path, line, f"TOML syntax error: {message}")]


M = TypeVar("M", bound=BaseModel)


def validate_model(
    model: type[M], data: dict[str, Any], text: str, rel_path: str, prefix: tuple[str | int, ...] = (),
    context: Mapping[str, Any] | None = None,
) -> tuple[M | None, list[Problem]]:
    """Validate TOML data against a model, turning every pydantic error into a located problem.
    `context` is pydantic's validation context (ProviderConfig checks `kind` against `kinds`)."""
    try:
        return model.model_validate(data, context=context), []
    except ValidationError as exc:
        problems = [_problem(model, {**err, "loc": _without_tags(data, err["loc"])}, text, rel_path, prefix)
                    for err in exc.errors()]
        return None, sorted_problems(problems)


@cache
def builtin_presets() -> dict[str, ProviderConfig]:
    """The presets shipped in polybot/presets.toml."""
    text = resources.files("polybot").joinpath("presets.toml").read_text("utf-8")
    return {name: ProviderConfig.model_validate(table) for name, table in tomllib.loads(text).items()}


def load_providers(root: Path, kinds: Sequence[str]) -> tuple[dict[str, ProviderConfig], list[Problem]]:
    """Built-in presets overlaid with the project's providers.toml (if any); each `kind` must be
    one of `kinds` (the registered adapters: `polybot.providers.known_kinds()`)."""
    providers = dict(builtin_presets())
    path = root / "providers.toml"
    if not path.is_file():
        return providers, []
    text = path.read_text("utf-8")
    data, problems = parse_toml(text, "providers.toml")
    if data is None:
        return providers, problems
    for name, table in data.items():
        if not isinstance(table, dict):
            line = locate(text, (name,))
            problems.append(
                Problem("providers.toml", line, f"{name}: expected a table [{name}] but received {table!r}")
            )
            continue
        config, found = validate_model(ProviderConfig, table, text, "providers.toml", (name,),
                                       context={"kinds": kinds})
        problems += found
        if config is not None:
            providers[name] = config
    return providers, problems


#: The project-wide settings file (optional).
SETTINGS_FILE = "polybot.toml"


def load_settings(root: Path) -> tuple[ProjectSettings, str, list[Problem]]:
    """polybot.toml (defaults when absent): the settings, the file's text (for digests) and its problems."""
    path = root / SETTINGS_FILE
    if not path.is_file():
        return ProjectSettings(), "", []
    text = path.read_text("utf-8")
    data, problems = parse_toml(text, SETTINGS_FILE)
    if data is None:
        return ProjectSettings(), text, problems
    settings, problems = validate_model(ProjectSettings, data, text, SETTINGS_FILE)
    return settings or ProjectSettings(), text, problems


# --- turning pydantic errors into `path:line: message` ---------------------------------------

_TYPE_NAMES = {
    "float": "a number",
    "int": "a whole number",
    "string": "a string",
    "bool": "true or false",
    "dict": "a table",
    "list": "an array",
    "model": "a table",
}


def _without_tags(data: Any, loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """`loc` without the tags pydantic inserts for tagged unions (`controls[0].slider.label`): the
    parts that name no key of the data at that point."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and node.get("control") == part and i + 1 < len(loc) and \
                (part not in node or loc[i + 1] in node):
            continue  # a union tag (the control's own type), not a key of the data
        out.append(part)
        if isinstance(node, dict) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _problem(
    model: type[BaseModel], err: Any, text: str, rel_path: str, prefix: tuple[str | int, ...]
) -> Problem:
    return Problem(rel_path, locate(text, prefix + tuple(err["loc"])), error_message(model, err, prefix))


def error_message(model: type[BaseModel], err: Any, prefix: tuple[str | int, ...] = ()) -> str:
    """One pydantic error of `model` as `key: what is wrong`, the value shown (STYLE #3): the one
    wording of validation errors, located by `validate_model` or shown as is."""
    loc: tuple[str | int, ...] = tuple(err["loc"])
    kind: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    value = err.get("input")
    name = _dotted(prefix + loc)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        message = f"unknown key {key!r}{did_you_mean(key, _fields_at(model, loc[:-1]))}"
        message = f"{_dotted(prefix + loc[:-1])}: {message}" if prefix + loc[:-1] else message
    elif kind == "missing":
        message = f"{name}: missing required key; add `{loc[-1]} = ...`"
    elif kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        word = "at most" if kind == "less_than_equal" else "less than"
        message = f"{name}: must be {word} {_num(bound)}, got {value!r}"
    elif kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        word = "at least" if kind == "greater_than_equal" else "greater than"
        message = f"{name}: must be {word} {_num(bound)}, got {value!r}"
    elif kind == "literal_error":
        hint = did_you_mean(str(value), re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        message = f"{name}: expected one of {ctx.get('expected')} but received {value!r}{hint}"
    elif (base := kind.split("_")[0]) in _TYPE_NAMES and kind.endswith(("_type", "_parsing")):
        message = f"{name}: expected {_TYPE_NAMES[base]} but received {value!r}"
    elif kind == "value_error":
        message = f"{name}: {err['msg'].removeprefix('Value error, ')}"
    else:
        message = f"{name}: {err['msg']}"
    return message


def plain_errors(exc: ValidationError, whole: str = "") -> list[tuple[str, str]]:
    """Each error of `exc` as (where, message) for input that is not a project file (a request
    body, the manifest): `where` dotted (`whole` when the error is about the input itself),
    `message` pydantic's own."""
    return [(".".join(str(p) for p in err["loc"]) or whole, err["msg"]) for err in exc.errors()]


def _num(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fields_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """Field names of the (sub)model at `loc`, for did-you-mean suggestions."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", None)
        current = args[0] if args else annotation
    return list(getattr(current, "model_fields", {}))


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*=""")


def _split_key(key: str) -> list[str]:
    parts = re.findall(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""", key)
    return [a or b or c for a, b, c in parts]


def locate(text: str, loc: Sequence[str | int]) -> int | None:
    """The 1-based line in TOML `text` that defines the key at `loc` (or its nearest parent).

    tomllib keeps no positions, so this walks the lines tracking the current table.
    """
    want = [str(p) for p in loc]
    table: list[str] = []
    counts: dict[tuple[str, ...], int] = {}  # elements of each array of tables, by its full path
    current: dict[tuple[str, ...], int] = {}  # the element now open, by the array's bare keys
    best: tuple[int, int] | None = None  # (matched depth, line)
    in_multiline = False

    def full(keys: list[str]) -> list[str]:
        """`keys` with the open element's index after each enclosing array of tables."""
        path: list[str] = []
        for i, key in enumerate(keys):
            path.append(key)
            if i < len(keys) - 1 and tuple(keys[: i + 1]) in current:
                path.append(str(current[tuple(keys[: i + 1])]))
        return path

    for number, raw in enumerate(text.splitlines(), start=1):
        if in_multiline:
            in_multiline = (raw.count('"""') + raw.count("'''")) % 2 == 0
            continue
        path: list[str] | None = None
        if header := _HEADER.match(raw):
            keys = _split_key(header.group(2))
            if header.group(1) == "[[":
                parent = tuple(full(keys))
                index = counts.get(parent, 0)
                counts[parent] = index + 1
                current[tuple(keys)] = index
                table = [*parent, str(index)]
            else:
                table = full(keys)
            path = table
        elif key := _KEY.match(raw):
            path = table + _split_key(key.group(1))
            in_multiline = (raw.count('"""') + raw.count("'''")) % 2 == 1
        if path is None:
            continue
        depth = _common_prefix(path, want)
        if depth == len(path) and (best is None or depth > best[0]):
            best = (depth, number)
            if depth == len(want):
                break
    return best[1] if best else None


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n
