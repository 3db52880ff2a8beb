"""Convert one request value to a numpy array of the dtype the model declares.

numpy and onnxruntime only; services install this without torch.

Only lossless conversions happen silently: narrower signed or unsigned integers are
widened, and an integer array is narrowed only when every value fits. Floats, bools,
strings and objects given for an integer input are rejected because a silent cast
(1.7 -> 1, True -> 1) would score a different item than the caller meant.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from attn_runtime.errors import InputError

__all__ = ["to_array", "coerce_dtype"]


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


def coerce_dtype(name: str, array: np.ndarray, expected: np.dtype) -> np.ndarray:
    """Return `array` converted to `expected`, or raise if that would change a value.

    Raises:
        InputError: the conversion is not lossless. The message names the input, both
            dtypes and the fix.
    """
    received = array.dtype
    if received == expected:
        return array

    if expected.kind in "iu":
        return _coerce_integer(name, array, expected)
    if expected.kind == "f" and received.kind == "f" and received.itemsize < expected.itemsize:
        return array.astype(expected)

    raise InputError(
        f"Input {name!r} has dtype {received}, but the model expects {expected}. "
        f"Convert it explicitly, e.g. value.astype(np.{expected.name}), after checking "
        "that no value changes."
    )


def _coerce_integer(name: str, array: np.ndarray, expected: np.dtype) -> np.ndarray:
    received = array.dtype
    if received.kind not in "iu":
        kind = {"b": "bool", "f": "floating-point", "c": "complex", "U": "string", "S": "bytes", "O": "object"}.get(
            received.kind, received.kind
        )
        raise InputError(
            f"Input {name!r} has {kind} dtype {received}, but the model expects integer ids of "
            f"dtype {expected}. Build the array with dtype=np.{expected.name}. If the values "
            f"are whole numbers stored as floats, convert with value.astype(np.{expected.name})."
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
