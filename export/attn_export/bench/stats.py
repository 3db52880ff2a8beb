"""Timing loop and latency statistics shared by the benchmark workers (stdlib and numpy only)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["TimingBudget", "time_calls", "summarize_latencies"]


@dataclass(frozen=True)
class TimingBudget:
    """How long to time one point.

    warmup_runs: untimed calls first, so lazy allocation and kernel selection are not measured.
    min_runs: timed calls to make at least, unless `max_seconds` runs out first.
    min_seconds: keep timing past `min_runs` until this much time has passed, for steadier tails
        on fast points.
    max_seconds: stop timing once this much time has passed, even below `min_runs`; the result
        then has `budget_exhausted` set.
    """

    warmup_runs: int = 20
    min_runs: int = 200
    min_seconds: float = 1.0
    max_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.warmup_runs < 0 or self.min_runs < 1:
            raise ValueError(
                f"TimingBudget needs warmup_runs >= 0 and min_runs >= 1, got {self.warmup_runs} and {self.min_runs}."
            )
        if self.min_seconds < 0 or self.max_seconds <= 0:
            raise ValueError(
                f"TimingBudget needs min_seconds >= 0 and max_seconds > 0, got {self.min_seconds} and {self.max_seconds}."
            )

    def to_dict(self) -> dict[str, Any]:
        return {"warmup_runs": self.warmup_runs, "min_runs": self.min_runs,
                "min_seconds": self.min_seconds, "max_seconds": self.max_seconds}


def time_calls(call: Callable[[], Any], budget: TimingBudget) -> tuple[np.ndarray, bool]:
    """Time `call` with time.perf_counter_ns and return (latencies in ms, budget_exhausted).

    budget_exhausted is True when `max_seconds` ended the loop before `min_runs` calls.
    """
    for _ in range(budget.warmup_runs):
        call()
    min_ns = int(budget.min_seconds * 1e9)
    max_ns = int(budget.max_seconds * 1e9)
    samples: list[int] = []
    start = time.perf_counter_ns()
    while True:
        before = time.perf_counter_ns()
        call()
        after = time.perf_counter_ns()
        samples.append(after - before)
        elapsed = after - start
        if len(samples) >= budget.min_runs and elapsed >= min_ns:
            return np.asarray(samples, dtype=np.float64) / 1e6, False
        if elapsed >= max_ns:
            return np.asarray(samples, dtype=np.float64) / 1e6, len(samples) < budget.min_runs


def summarize_latencies(latencies_ms: np.ndarray, batch: int, num_candidates: int) -> dict[str, Any]:
    """Return percentiles (ms) and throughput of one point.

    A request is one user, that is one row of the batch, so requests_per_s = batch / mean latency
    and candidates_per_s = batch * num_candidates / mean latency (single stream, one call at a time).
    """
    if latencies_ms.size == 0:
        raise ValueError("summarize_latencies received no samples; time at least one call.")
    p50, p90, p99 = np.percentile(latencies_ms, [50, 90, 99])
    mean_ms = float(latencies_ms.mean())
    return {
        "runs": int(latencies_ms.size),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": mean_ms,
        "min_ms": float(latencies_ms.min()),
        "max_ms": float(latencies_ms.max()),
        "std_ms": float(latencies_ms.std()),
        "requests_per_s": batch * 1000.0 / mean_ms,
        "candidates_per_s": batch * num_candidates * 1000.0 / mean_ms,
    }
