"""Select the k best-scored candidates per user.

numpy and onnxruntime only; services install this without torch.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from attn_runtime.errors import InputError

__all__ = ["top_k"]


def top_k(scores: Any, k: int) -> tuple[Any, Any]:
    """Return `(indices, scores)` of the k highest scores, sorted by descending score.

    `scores` is a float array `[num_candidates]` or `[batch, num_candidates]`, or a list
    of 1-D arrays (the ragged result of `Scorer.score(histories=..., candidates=...)`).
    The result has the same form: arrays `[batch, k]` (or `[k]`), or lists with one
    array per user. Indices are int64 positions into the candidates. Scores are float32.

    k is clipped to the number of candidates, per user for ragged input, so k larger
    than a user's candidate count returns all of that user's candidates, sorted. Equal
    scores keep candidate order (lower index first).

    Raises:
        InputError: k is not an int >= 0, or the scores are not 1-D/2-D floats, or
            contain NaN.
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 0:
        raise InputError(f"k must be an int >= 0, received {k!r}. Pass the number of candidates to keep.")
    k = int(k)

    if isinstance(scores, np.ndarray):
        return _top_k_array(scores, k)
    if isinstance(scores, Sequence) and not isinstance(scores, (str, bytes)):
        pairs = [_top_k_array(np.asarray(row), k, name=f"scores[{index}]", rank=1) for index, row in enumerate(scores)]
        return [indices for indices, _ in pairs], [values for _, values in pairs]
    raise InputError(
        f"scores must be a numpy array or a list of 1-D arrays, received {type(scores).__name__}. "
        "Pass the output of Scorer.score."
    )


def _top_k_array(
    scores: np.ndarray, k: int, *, name: str = "scores", rank: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    allowed_ranks = (rank,) if rank is not None else (1, 2)
    if scores.ndim not in allowed_ranks or scores.dtype.kind != "f":
        expected = " or ".join(f"{r}-D" for r in allowed_ranks)
        raise InputError(
            f"{name} must be a {expected} float array, received dtype {scores.dtype} with shape "
            f"{scores.shape}. Pass the output of Scorer.score."
        )
    if np.isnan(scores).any():
        raise InputError(f"{name} contains NaN, which has no rank. Remove or replace NaN scores before top_k.")

    keep = min(k, scores.shape[-1])
    # A stable sort of the negated scores puts high scores first and keeps ties in index order.
    order = np.argsort(-scores, axis=-1, kind="stable")[..., :keep]  # [..., keep]
    values = np.take_along_axis(scores, order, axis=-1).astype(np.float32, copy=False)  # [..., keep]
    return order.astype(np.int64, copy=False), values
