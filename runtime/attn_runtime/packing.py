"""Pack ragged Python lists of ids into padded arrays plus lengths.

numpy and onnxruntime only; services install this without torch.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from attn_runtime.coercion import coerce_dtype
from attn_runtime.errors import InputError

__all__ = ["pack_rows"]

_ID_DTYPE = np.dtype(np.int64)


def pack_rows(name: str, rows: Sequence[Any], *, padding_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad ragged id rows with `padding_id`.

    Returns `(ids, lengths)`: int64 `[batch, width]` and int64 `[batch]`, where width is
    the longest row, or 1 when every row is empty so the array never has a zero-width
    axis. Rows may be lists, tuples or 1-D integer arrays.

    Raises:
        InputError: `rows` is not a list of rows, or a row is not a 1-D sequence of
            integer ids. The message names the row, e.g. "histories[3]".
    """
    if isinstance(rows, (str, bytes, np.ndarray)) or not isinstance(rows, Sequence):
        raise InputError(
            f"{name!r} must be a list with one list of ids per user, but received "
            f"{type(rows).__name__}. Pass e.g. {name}=[[3, 5, 9], [7]]."
        )

    arrays = [_row_to_array(f"{name}[{index}]", row) for index, row in enumerate(rows)]
    lengths = np.array([array.shape[0] for array in arrays], dtype=_ID_DTYPE)  # [batch]
    width = max(1, int(lengths.max()) if lengths.size else 0)

    ids = np.full((len(arrays), width), padding_id, dtype=_ID_DTYPE)  # [batch, width]
    for row_index, array in enumerate(arrays):
        ids[row_index, : array.shape[0]] = array
    return ids, lengths


def _row_to_array(name: str, row: Any) -> np.ndarray:
    if isinstance(row, (str, bytes)) or not isinstance(row, (Sequence, np.ndarray)):
        raise InputError(
            f"{name} must be a list of integer ids, but received {type(row).__name__}. "
            "Give each user's ids as a list such as [3, 5, 9] (an empty list is allowed)."
        )
    if len(row) == 0:
        return np.zeros(0, dtype=_ID_DTYPE)

    try:
        array = np.asarray(row)
    except (ValueError, TypeError) as error:
        raise InputError(f"{name} could not be read as a list of ids: {error}. Give a flat list of ints.") from error
    if array.ndim != 1:
        raise InputError(
            f"{name} must be a flat list of ids, but received shape {array.shape}. "
            "Give one flat list of ids per user."
        )
    return coerce_dtype(name, array, _ID_DTYPE, role="ids")
