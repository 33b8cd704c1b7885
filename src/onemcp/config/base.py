"""The base of every mcp.json model: unknown keys refused, no `true`, NaN or "20" where a number belongs,
and no 1 or "true" where true or false does.

Boundary: the shared model class and the `Seconds` types; the settings themselves live in `model`
and `auth_settings`.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from onemcp.config import values

Seconds = Annotated[float, Field(gt=0, le=86_400)]
# A server's `timeout` (each request's deadline): at most an hour, however it is written (a number, a
# string, a ${VAR}): a larger one is most likely milliseconds (1MCP's unit), so it is refused, not waited.
TIMEOUT_MAX = 3_600
RequestSeconds = Annotated[float, Field(gt=0, le=TIMEOUT_MAX)]


class StrictModel(BaseModel):
    # An unknown key is an error ("did you mean"); other clients' own keys are dropped before
    # validation (`compat.FOREIGN_SERVER_KEYS`).
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_truth_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """`true` where a number belongs is a mistake, not 1 (pydantic would take it), and so is a
        number or a boolean written in quotes ("20000", "true": pydantic's lax mode would take them). A
        string a ${VAR} filled in (`values.FromEnv`) still is one: substitution leaves every value a
        string. NaN and the infinities are no numbers either (pydantic would take them, and compare
        them to the bounds). A number where true or false belongs is a mistake too (pydantic takes 1 and 0)."""
        if info.field_name is None:
            return value
        kinds = kinds_of(cls.model_fields[info.field_name].annotation)
        if bool in kinds and not kinds & {int, float} and type(value) in (int, float):
            raise ValueError(f"expected true or false, not the number {value!r}")  # pydantic would take 1 and 0
        if kinds & {int, float}:
            if isinstance(value, bool) and bool not in kinds:
                raise ValueError("expected a number, not true or false")
            if any(values.not_finite(v, str in kinds) for v in values.scalars(value)):
                raise ValueError("must be a finite number (not NaN or infinity)")
        if kinds & {int, float, bool} and str not in kinds:
            quoted = next((v for v in values.scalars(value) if type(v) is str), None)
            if quoted is not None:  # written in quotes by hand, not filled in by a ${VAR} (`values.FromEnv`)
                hint = ": write it without quotes" if _reads_as_value(quoted) else ""
                raise ValueError(f"expected {_kind(kinds)}, not the string {_shown(quoted)}{hint}")
        return value


def _kind(kinds: set[Any]) -> str:
    if kinds & {int, float}:
        return "a number" if bool not in kinds else "a number or true/false"
    return "true or false"


def _reads_as_value(text: str) -> bool:
    if text.strip().lower() in ("true", "false"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def kinds_of(annotation: Any) -> set[Any]:
    """The plain types an annotation admits (`int | None` -> {int, NoneType})."""
    args = get_args(annotation)
    return set().union(*(kinds_of(a) for a in args)) if args else {annotation}
