"""Median latency of ONNX variants on one representative request, in one process.

Only onnxruntime sessions are timed, so the comparison is fair among ORT variants. Variants are
timed in interleaved rounds so that drift of the machine (frequency, other load) hits all alike.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..verify import make_session

__all__ = ["BENCH_SHAPE", "representative_request", "median_latencies_ms"]

logger = logging.getLogger(__name__)

BENCH_SHAPE = {"batch": 1, "seq_len": 50, "num_candidates": 100}


def representative_request(requests, seq_len: int = 50, num_candidates: int = 100) -> dict[str, np.ndarray]:
    """Build one real request at batch 1 from the longest history (padded to `seq_len`) and `num_candidates` candidates."""
    row = int(np.argmax(requests.history_lengths))
    ids = np.zeros((1, seq_len), dtype=np.int64)  # [1, seq_len]
    length = min(int(requests.history_lengths[row]), seq_len, requests.history_ids.shape[1])
    ids[0, :length] = requests.history_ids[row, :length]
    candidates = requests.candidate_ids[row : row + 1, :num_candidates]  # [1, num_candidates]
    return {"history_ids": ids, "history_lengths": np.array([length], dtype=np.int64),
            "candidate_ids": np.ascontiguousarray(candidates)}


def median_latencies_ms(
    models: dict[str, Path],
    feeds: dict[str, np.ndarray],
    runs: int = 300,
    rounds: int = 5,
    warmup: int = 20,
    threads: int = 1,
) -> dict[str, float]:
    """Return {variant: median latency in ms} over `runs` session.run calls each, on `threads` threads."""
    sessions = {name: make_session(path, threads=threads) for name, path in models.items()}
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    for session in sessions.values():
        for _ in range(warmup):
            session.run(None, feeds)
    per_round = max(1, runs // rounds)
    for _ in range(rounds):
        for name, session in sessions.items():
            for _ in range(per_round):
                start = time.perf_counter()
                session.run(None, feeds)
                samples[name].append((time.perf_counter() - start) * 1e3)
    medians = {name: float(np.median(values)) for name, values in samples.items()}
    logger.info("Median latency (ms, %d threads): %s", threads, medians)
    return medians
