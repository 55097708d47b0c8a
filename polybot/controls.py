"""`[[controls]]` in bot.toml: Poe parameter controls, and the values a user picks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union

import fastapi_poe as fp
from pydantic import BaseModel, Field

from polybot.config import validate_model
from polybot.errors import Problem

Control = Annotated[
    Union[fp.Divider, fp.TextField, fp.TextArea, fp.DropDown, fp.ToggleSwitch, fp.Slider],
    Field(discriminator="control"),
]

#: Control values with these names override the bot's provider parameters.
OVERRIDABLE = ("temperature", "max_tokens", "model")


class _Controls(BaseModel):
    controls: list[Control]


def control_problems(controls: Sequence[Mapping[str, Any]], text: str, rel_path: str) -> list[Problem]:
    """Located problems in `[[controls]]` entries (validated as Poe's own control types)."""
    if not controls:
        return []
    return validate_model(_Controls, {"controls": list(controls)}, text, rel_path)[1]


def parameter_controls(controls: Sequence[Mapping[str, Any]]) -> fp.ParameterControls | None:
    """The settings' `parameter_controls`: one section holding every control."""
    if not controls:
        return None
    parsed = _Controls.model_validate({"controls": list(controls)}).controls
    return fp.ParameterControls(sections=[fp.Section(controls=list(parsed))])


def default_params(controls: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each control's default value, by parameter name (what `params` holds before a user picks)."""
    return {
        str(c["parameter_name"]): c["default_value"]
        for c in controls
        if "parameter_name" in c and c.get("default_value") is not None
    }
