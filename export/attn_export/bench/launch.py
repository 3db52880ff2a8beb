"""Start one benchmark worker subprocess with an explicit thread budget and read its JSON result."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from typing import Any

from ..errors import BenchError

__all__ = ["THREAD_ENV_VARS", "worker_env", "run_worker"]

logger = logging.getLogger(__name__)

# Read by OpenMP, MKL and OpenBLAS when they start, so they must be set before the worker starts.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

# Seconds a worker may take beyond its timing budget: imports, model load, warm-up, peak GEMM.
STARTUP_ALLOWANCE_S = 180.0


def worker_env(threads: int) -> dict[str, str]:
    """Return this process's environment with every thread-count variable set to `threads`."""
    env = dict(os.environ)
    for name in THREAD_ENV_VARS:
        env[name] = str(threads)
    return env


def run_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run `python -m attn_export.bench.worker` on `spec` and return its parsed result.

    Raises BenchError when the worker times out, exits non-zero or prints no valid JSON; the
    message carries the worker's last stderr lines.
    """
    budget = spec.get("budget", {})
    per_point = float(budget.get("max_seconds", 10.0)) * 2 + 5.0  # timed loop plus warm-up
    points = len(spec.get("points", [])) + (1 if spec.get("overhead_point") else 0)
    timeout = STARTUP_ALLOWANCE_S + per_point * points
    what = f"{spec['engine']} worker (variant {spec.get('variant')}, {spec['threads']} thread(s))"
    logger.info("Starting %s on %d point(s)", what, len(spec.get("points", [])))
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "attn_export.bench.worker"],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            env=worker_env(int(spec["threads"])),
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(
            f"The {what} timed out after {timeout:.0f} s. Lower --max-seconds or use fewer grid points."
        ) from exc
    stderr_tail = "\n".join(completed.stderr.strip().splitlines()[-15:])
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if completed.returncode != 0 or not isinstance(result, dict) or "error" in result:
        reason = result.get("error") if isinstance(result, dict) else "no JSON result on stdout"
        raise BenchError(
            f"The {what} failed with exit code {completed.returncode}: {reason}\n"
            f"Last worker log lines:\n{stderr_tail}"
        )
    return result
