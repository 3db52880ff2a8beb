"""Time one onnxruntime variant of an artifact in a fresh subprocess, for other pipeline stages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifact import read_manifest
from ..errors import BenchError
from .grid import GridPoint
from .launch import run_worker
from .stats import TimingBudget

__all__ = ["measure_variant"]


def measure_variant(
    artifact: str | Path,
    variant: str,
    batch: int = 1,
    seq_len: int = 50,
    num_candidates: int = 100,
    threads: int = 1,
    runs: int = 200,
    warmup_runs: int = 20,
    max_seconds: float = 10.0,
    spinning: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Time `variant` on one request shape and return its statistics.

    The variant runs in its own `attn_export.bench.worker` process with `threads` intra-op threads,
    so the caller's imports and threads do not disturb it. The returned dict has p50_ms, p90_ms,
    p99_ms, mean_ms, min_ms, max_ms, runs, requests_per_s, candidates_per_s, budget_exhausted and
    the point's batch, seq_len and num_candidates. `runs` timed calls are made unless
    `max_seconds` runs out first. Takes about 2 s plus the timed calls.

    Raises BenchError when the variant is not in the artifact or the worker fails.
    """
    artifact = Path(artifact).resolve()
    manifest = read_manifest(artifact)
    if variant not in manifest.get("variants", {}):
        raise BenchError(f"Variant {variant!r} is not in {artifact}; available: {sorted(manifest.get('variants', {}))}.")
    if not manifest.get("vocab_size"):
        raise BenchError(f"{artifact}/manifest.json has no vocab_size, so no requests can be generated; re-export it.")
    budget = TimingBudget(warmup_runs=warmup_runs, min_runs=runs, min_seconds=0.0, max_seconds=max_seconds)
    spec = {
        "engine": "onnxruntime",
        "artifact": str(artifact),
        "variant": variant,
        "threads": threads,
        "spinning": spinning,
        "vocab_size": int(manifest["vocab_size"]),
        "seed": seed,
        "budget": budget.to_dict(),
        "points": [GridPoint(batch, seq_len, num_candidates).to_dict()],
    }
    result = run_worker(spec)
    return {"variant": variant, "threads": threads, **result["results"][0]}
