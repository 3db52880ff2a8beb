"""Benchmark worker process: time one engine with one thread budget and print JSON results.

Run as `python -m attn_export.bench.worker < spec.json` (or `--spec FILE`). The spec names the
engine ("pytorch" or "onnxruntime"), artifact, variant, threads, spinning policy, grid points,
timing budget and seed; the result is one JSON document on stdout. Everything else the process
writes, including native library output, goes to stderr.

The two engines never share a process: the PyTorch worker does not import onnxruntime, and the
onnxruntime worker does not import torch (it uses attn_runtime and numpy). The orchestrator sets
OMP_NUM_THREADS and MKL_NUM_THREADS in this process's environment before it starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from typing import Any, TextIO

__all__ = ["ENGINES", "run_spec", "main"]

logger = logging.getLogger(__name__)

ENGINES = ("pytorch", "onnxruntime")


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the work in `spec` with the engine it names and return the JSON-ready result."""
    engine = spec.get("engine")
    if engine == "pytorch":
        from .engine_torch import run_torch_spec

        result = run_torch_spec(spec)
    elif engine == "onnxruntime":
        from .engine_ort import run_ort_spec

        result = run_ort_spec(spec)
    else:
        raise ValueError(f"Worker spec field 'engine' must be one of {ENGINES}, received {engine!r}.")
    # Recorded so the report (and the tests) can show the engines stayed apart.
    result["imported"] = {name: name in sys.modules for name in ("torch", "onnxruntime")}
    result["pid"] = os.getpid()
    return result


def _redirect_stdout_to_stderr() -> TextIO:
    """Point file descriptor 1 at stderr and return a stream on the original stdout."""
    sys.stdout.flush()
    result_stream = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return result_stream


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time one engine of an attn-export artifact.")
    parser.add_argument("--spec", help="JSON spec file; default: read the spec from stdin.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="worker %(levelname)s %(name)s: %(message)s")

    result_stream = _redirect_stdout_to_stderr()
    try:
        text = open(args.spec).read() if args.spec else sys.stdin.read()
        spec = json.loads(text)
        result = run_spec(spec)
        status = 0
    except Exception as exc:  # report any failure as JSON so the orchestrator can name it
        traceback.print_exc(file=sys.stderr)
        result = {"error": f"{type(exc).__name__}: {exc}"}
        status = 1
    result_stream.write(json.dumps(result) + "\n")
    result_stream.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
