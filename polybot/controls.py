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
