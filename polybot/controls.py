"""`[[controls]]` in bot.toml: Poe parameter controls, and the values a user picks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import BaseModel, Field

from polybot.config import validate_model
from polybot.errors import Problem

if TYPE_CHECKING:
    import fastapi_poe as fp

#: Control values with these names override the bot's provider parameters.
OVERRIDABLE = ("temperature", "max_tokens", "model")


@cache
def _model() -> type[BaseModel]:
    """Poe's own control types (fastapi_poe is imported only when a bot has controls)."""
    import fastapi_poe as fp

    control = Annotated[
        Union[fp.Divider, fp.TextField, fp.TextArea, fp.DropDown, fp.ToggleSwitch, fp.Slider],
        Field(discriminator="control"),
    ]

    class Controls(BaseModel):
        controls: list[control]

    return Controls


def control_problems(controls: Sequence[Mapping[str, Any]], text: str, rel_path: str) -> list[Problem]:
    """Located problems in `[[controls]]` entries (validated as Poe's own control types)."""
    if not controls:
        return []
    return validate_model(_model(), {"controls": list(controls)}, text, rel_path)[1]


def parameter_controls(controls: Sequence[Mapping[str, Any]]) -> fp.ParameterControls | None:
    """The settings' `parameter_controls`: one section holding every control."""
    import fastapi_poe as fp

    if not controls:
        return None
    parsed = _model().model_validate({"controls": list(controls)}).controls  # type: ignore[attr-defined]
    return fp.ParameterControls(sections=[fp.Section(controls=list(parsed))])


def default_params(controls: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each control's default value, by parameter name (what `params` holds before a user picks)."""
    return {
        str(c["parameter_name"]): c["default_value"]
        for c in controls
        if "parameter_name" in c and c.get("default_value") is not None
    }


#: Longest text a text_field / text_area control passes on.
MAX_TEXT_PARAM = 10_000
#: An undeclared `max_tokens` (OpenAI-compatible clients send one) may only lower the output limit:
#: at most the bot's own max_tokens, or this many when the bot sets none.
MAX_CLIENT_TOKENS = 65_536


def allowed_params(controls: Sequence[Mapping[str, Any]], picked: Mapping[str, Any],
                   max_tokens: int | None = None) -> dict[str, Any]:
    """The values in `picked` (Poe `parameters`) that a declared control accepts, each within it:
    a slider's number clamped to min..max, a drop-down's value one of its options, a toggle a bool,
    a text at most MAX_TEXT_PARAM characters. Anything else is dropped, except an undeclared
    `max_tokens` from 1 to the bot's own `max_tokens` (or MAX_CLIENT_TOKENS)."""
    out: dict[str, Any] = {}
    declared = set()
    for control in controls:
        name = control.get("parameter_name")
        declared.add(name)
        if not isinstance(name, str) or name not in picked:
            continue
        value = _within(control, picked[name])
        if value is not None:
            out[name] = value
    limit = picked.get("max_tokens")
    if "max_tokens" not in declared and isinstance(limit, int) and not isinstance(limit, bool) and \
            0 < limit <= (max_tokens or MAX_CLIENT_TOKENS):
        out["max_tokens"] = limit
    return out


def _within(control: Mapping[str, Any], value: Any) -> Any:
    kind = control.get("control")
    if kind == "slider":
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:  # NaN
            return None
        low, high = control.get("min_value"), control.get("max_value")
        if isinstance(low, int | float):
            value = max(value, low)
        if isinstance(high, int | float):
            value = min(value, high)
        return value
    if kind == "drop_down":
        options = {o.get("value") for o in control.get("options", []) if isinstance(o, Mapping)}
        return value if isinstance(value, str) and value in options else None
    if kind == "toggle_switch":
        return value if isinstance(value, bool) else None
    if kind in ("text_field", "text_area"):
        return value[:MAX_TEXT_PARAM] if isinstance(value, str) else None
    return None
