"""Benchmark requests: the same seeded inputs in every worker, whatever the engine.

numpy only, so both the PyTorch worker and the onnxruntime worker can import it.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .grid import GridPoint

__all__ = ["make_request", "digest_request"]

# Histories in a batch are drawn this close to full (fraction of seq_len), so padding stays small.
MIN_FILL_FRACTION = 0.8


def make_request(point: GridPoint, vocab_size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Build id-level inputs for one grid point from `seed`.

    Ids are uniform in [1, vocab_size). The first user's history is full to seq_len and the other
    users' lengths are drawn from [0.8 * seq_len, seq_len], as in a service that keeps each user's
    most recent items. Padded slots hold the padding id 0. Equal arguments give equal arrays.
    """
    if vocab_size < 2:
        raise ValueError(f"vocab_size must be at least 2 (padding id 0 plus one item), got {vocab_size}.")
    rng = np.random.default_rng([seed, point.batch, point.seq_len, point.num_candidates])
    low = max(1, int(np.ceil(MIN_FILL_FRACTION * point.seq_len)))
    lengths = rng.integers(low, point.seq_len + 1, size=point.batch).astype(np.int64)  # [batch]
    lengths[0] = point.seq_len
    history = rng.integers(1, vocab_size, size=(point.batch, point.seq_len)).astype(np.int64)  # [batch, seq_len]
    history[np.arange(point.seq_len)[None, :] >= lengths[:, None]] = 0
    candidates = rng.integers(1, vocab_size, size=(point.batch, point.num_candidates)).astype(np.int64)
    return {"history_ids": history, "history_lengths": lengths, "candidate_ids": candidates}


def digest_request(feeds: dict[str, np.ndarray]) -> str:
    """Return a short sha256 of the inputs, so a report can show that every engine saw the same data."""
    digest = hashlib.sha256()
    for name in sorted(feeds):
        array = np.ascontiguousarray(feeds[name])
        digest.update(name.encode())
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]
