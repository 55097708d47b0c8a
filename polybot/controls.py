"""`[[controls]]` in bot.toml: Poe parameter controls, and the values a user picks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from polybot.config import validate_model
from polybot.errors import Problem

if TYPE_CHECKING:
    import fastapi_poe as fp


@cache
def _model() -> type[BaseModel]:
    """Poe's own control types (fastapi_poe is imported only when a bot has controls)."""
    import fastapi_poe as fp
    from fastapi_poe.types import AspectRatio, ConditionallyRenderControls

    control = Annotated[
        Union[fp.Divider, fp.TextField, fp.TextArea, fp.DropDown, fp.ToggleSwitch, fp.Slider, AspectRatio,
              ConditionallyRenderControls],
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


@cache
def _layout_model() -> type[BaseModel]:
    """fastapi_poe's ParameterControls, with its control unions discriminated by `control` so that
    a mistake gets one message, not one per control type."""
    import fastapi_poe as fp
    from fastapi_poe.types import AspectRatio, ComparatorCondition

    base = Annotated[Union[fp.Divider, fp.TextField, fp.TextArea, fp.DropDown, fp.ToggleSwitch, fp.Slider,
                           AspectRatio], Field(discriminator="control")]
    strict = ConfigDict(extra="forbid")

    class Condition(BaseModel):
        model_config = strict
        control: Literal["condition"]
        condition: ComparatorCondition
        controls: list[base]

    full = Annotated[Union[fp.Divider, fp.TextField, fp.TextArea, fp.DropDown, fp.ToggleSwitch, fp.Slider,
                           AspectRatio, Condition], Field(discriminator="control")]

    class Tab(BaseModel):
        model_config = strict
        name: str | None = None
        controls: list[full]

    class Section(BaseModel):
        model_config = strict
        name: str | None = None
        controls: list[full] | None = None
        tabs: list[Tab] | None = None
        collapsed_by_default: bool | None = None

    class Layout(BaseModel):
        model_config = strict
        api_version: Literal["2"] = "2"
        sections: list[Section]

    return Layout


def layout_problems(layout: Mapping[str, Any] | None, text: str, rel_path: str) -> list[Problem]:
    """Located problems in `[parameter_controls]` (sections, tabs, conditions)."""
    if layout is None:
        return []
    return validate_model(_layout_model(), dict(layout), text, rel_path, ("parameter_controls",))[1]


def flatten(layout: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every control in a `[parameter_controls]` layout: in sections, tabs and conditions."""
    found: list[dict[str, Any]] = []

    def walk(controls: Any) -> None:
        for control in controls or ():
            if isinstance(control, Mapping):
                if control.get("control") == "condition":
                    walk(control.get("controls"))
                else:
                    found.append(dict(control))

    for section in (layout or {}).get("sections", ()):
        walk(section.get("controls"))
        for tab in section.get("tabs") or ():
            walk(tab.get("controls"))
    return found


def parameter_controls(controls: Sequence[Mapping[str, Any]],
                       layout: Mapping[str, Any] | None = None) -> fp.ParameterControls | None:
    """The settings' `parameter_controls`: `[[controls]]` as one section, then the sections of
    `[parameter_controls]` as written (with its tabs and conditions)."""
    import fastapi_poe as fp

    own = [c for c in controls if c not in flatten(layout)]
    sections: list[fp.Section] = []
    if own:
        parsed = _model().model_validate({"controls": own}).controls  # type: ignore[attr-defined]
        sections.append(fp.Section(controls=list(parsed)))
    if layout is not None:
        sections += fp.ParameterControls.model_validate(dict(layout)).sections
    return fp.ParameterControls(sections=sections) if sections else None


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
    if kind in ("drop_down", "aspect_ratio"):
        options = {o.get("value") for o in control.get("options") or [] if isinstance(o, Mapping)}
        return value if isinstance(value, str) and value in options else None
    if kind == "toggle_switch":
        return value if isinstance(value, bool) else None
    if kind in ("text_field", "text_area"):
        return value[:MAX_TEXT_PARAM] if isinstance(value, str) else None
    return None
