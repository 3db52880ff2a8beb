"""Convert one request value to a numpy array of the dtype the model declares.

numpy and onnxruntime only; services install this without torch.

Only lossless conversions happen silently: narrower signed or unsigned integers are
widened, and an integer array is narrowed only when every value fits. Floats, bools,
strings and objects given for an integer input are rejected because a silent cast
(1.7 -> 1, True -> 1) would score a different item than the caller meant.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from attn_runtime.errors import InputError

__all__ = ["InputRole", "to_array", "coerce_dtype"]

# Meaning of an integer input's values, used to name them in dtype error messages.
InputRole = Literal["ids", "lengths", "values"]

_KIND_NAMES = {"b": "bool", "f": "floating-point", "c": "complex", "U": "string", "S": "bytes", "O": "object"}


def to_array(name: str, value: Any) -> np.ndarray:
    """Return `value` as a numpy array without copying an ndarray.

    Raises:
        InputError: `value` is a ragged nested list or cannot form an array.
    """
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as error:
        raise InputError(
            f"Input {name!r} could not be converted to an array: {error}. Expected a numpy "
            "array or equal-length nested lists. Pad ragged rows to the same length, or pass "
            "ragged lists through Scorer.score(histories=..., candidates=...)."
        ) from error


def coerce_dtype(name: str, array: np.ndarray, expected: np.dtype, *, role: InputRole = "values") -> np.ndarray:
    """Return `array` converted to `expected`, or raise if that would change a value.

    `role` names what an integer input contains ("ids", "lengths" or "values") in the
    error message.

    Raises:
        InputError: the conversion is not lossless. The message names the input, both
            dtypes and the fix.
    """
    received = array.dtype
    if received == expected:
        return array

    if expected.kind in "iu":
        return _coerce_integer(name, array, expected, role)
    if expected.kind == "f" and received.kind == "f" and received.itemsize < expected.itemsize:
        return array.astype(expected)

    raise InputError(
        f"Input {name!r} has dtype {received}, but the model expects {expected}. "
        f"Convert it explicitly, e.g. value.astype(np.{expected.name}), after checking "
        "that no value changes."
    )


def _coerce_integer(name: str, array: np.ndarray, expected: np.dtype, role: InputRole) -> np.ndarray:
    received = array.dtype
    if received.kind not in "iu":
        kind = _KIND_NAMES.get(received.kind, received.kind)
        described = f"dtype {received}" if kind == str(received) else f"{kind} dtype {received}"
        raise InputError(
            f"Input {name!r} has {described}, but the model expects integer {role} of "
            f"dtype {expected}. {_integer_hint(received, expected, role)}"
        )

    if np.can_cast(received, expected, casting="safe"):
        return array.astype(expected)

    # Narrowing (e.g. uint64 -> int64, int64 -> int32) is accepted only when every value fits.
    limits = np.iinfo(expected)
    if array.size:
        low, high = int(array.min()), int(array.max())
        if low < limits.min or high > limits.max:
            raise InputError(
                f"Input {name!r} has dtype {received} with values in [{low}, {high}], which do not "
                f"fit the model's dtype {expected} (range [{limits.min}, {limits.max}]). "
                "Remove or remap the out-of-range values."
            )
    return array.astype(expected)


def _integer_hint(received: np.dtype, expected: np.dtype, role: InputRole) -> str:
    """Return the fix for a non-integer array given for an integer input of `role`."""
    build = f"Build the array with dtype=np.{expected.name}."
    if received.kind == "f":
        return (
            f"{build} If the {role} are whole numbers stored as floats, convert with "
            f"value.astype(np.{expected.name}) after checking that no value has a fractional part."
        )
    if received.kind == "b":
        return f"True and False are not {role}, so pass the {role} themselves in an array with dtype=np.{expected.name}."
    if received.kind in "US":
        mapping = " If the strings are item keys, map each key to its trained integer id." if role == "ids" else ""
        return (
            f"Strings are not converted implicitly.{mapping} If they are decimal numbers, parse "
            f"them with value.astype(np.{expected.name})."
        )
    if received.kind == "O":
        return (
            "An object array usually means the values mix types or contain None. Replace the "
            f"values that are not integers, then convert with np.asarray(value, dtype=np.{expected.name})."
        )
    return build
