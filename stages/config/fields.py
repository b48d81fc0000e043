"""Field checks shared by the params sections: types, ranges, choices, one-line messages."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError


def _fail(text: str) -> PydanticCustomError:
    """An error whose text follows the dotted key (``": expected int, got 'x'"`` or ``"=2: expected ..."``)."""
    return PydanticCustomError("hneurons", "{text}", {"text": text})


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_KIND_TESTS: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, list),
    "mapping": lambda v: isinstance(v, dict),
}


def _kinds(*kinds: str, nullable: bool = False) -> BeforeValidator:
    """A value of one of ``kinds`` (``None`` too when ``nullable``), else one line naming them."""

    def check(value: Any) -> Any:
        if (value is None and nullable) or any(_KIND_TESTS[kind](value) for kind in kinds):
            return value
        hint = ""
        if isinstance(value, str) and "number" in kinds and _is_float(value):
            hint = f" (YAML 1.1 reads {value} as text: write it with a dot, e.g. 1.0e-5)"
        expected = " or ".join(kinds) + (" or null" if nullable else "")
        raise _fail(f": expected {expected}, got {value!r}{hint}")

    return BeforeValidator(check)


def _mapping(value: Any) -> Any:
    if not isinstance(value, dict):
        raise _fail(f": expected a mapping, got {value!r}")
    return value


def _families_mapping(value: Any) -> Any:
    if not isinstance(value, dict):
        raise _fail(": expected a mapping family -> overrides ({} for none)")
    return value


Int = Annotated[int, _kinds("int")]
Num = Annotated[int | float, _kinds("number")]
Bool = Annotated[bool, _kinds("bool")]
Str = Annotated[str, _kinds("str")]
AnyList = Annotated[list[Any], _kinds("list")]
IntOrNull = Annotated[int | None, _kinds("int", nullable=True)]
StrOrNull = Annotated[str | None, _kinds("str", nullable=True)]
Rows = Annotated[list[Any] | None, _kinds("list", nullable=True)]
PerDatasetInt = Annotated[int | dict[str, Any] | None, _kinds("int", "mapping", nullable=True)]
Families = Annotated[dict[str, Any], BeforeValidator(_families_mapping)]


def _at_least(minimum: int) -> BeforeValidator:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _fail(f"={value!r}: expected an integer >= {minimum}")
        return value

    return BeforeValidator(check)


def _at_least_or_null(minimum: int) -> BeforeValidator:
    def check(value: Any) -> Any:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
            raise _fail(f"={value!r}: expected null or an integer >= {minimum}")
        return value

    return BeforeValidator(check)


def _positive(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise _fail(f"={value!r}: expected a number > 0")
    return value


def _non_negative(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise _fail(f"={value!r}: expected a number >= 0")
    return value


def _finite(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(f"={value!r}: expected a finite number")
    return value


def _one_of(*choices: str) -> BeforeValidator:
    def check(value: Any) -> Any:
        if value not in choices:
            raise _fail(f"={value!r}: expected one of {', '.join(choices)}")
        return value

    return BeforeValidator(check)


def _true_or_false(value: Any) -> Any:
    if not isinstance(value, bool):
        raise _fail(f"={value!r}: expected true or false")
    return value


def _c_grid(value: Any) -> list[float]:
    if not isinstance(value, (list, tuple)) or not value:
        raise _fail(": expected a non-empty list of numbers > 0")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item) or item <= 0:
            raise _fail(f": every C must be a finite number > 0 (got {item!r})")
    return sorted({float(item) for item in value})
