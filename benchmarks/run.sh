#!/usr/bin/env bash
# Quick latency benchmark of artifacts/default into bench-out/; extra arguments go to
# `attn-export bench` (for example --full, or --compare bench-out/<earlier run>/report.json).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
exec "$PYTHON" benchmarks/run_bench.py "${ARTIFACT:-artifacts/default}" "$@"
