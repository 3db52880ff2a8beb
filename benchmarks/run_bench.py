"""Run the latency benchmark from a checkout: the same code path as `attn-export bench`.

    python benchmarks/run_bench.py                       # quick grid on artifacts/default
    python benchmarks/run_bench.py artifacts/x --full    # full grid on another artifact

Any `attn-export bench` option can follow; see `attn-export bench --help`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from attn_export.cli import app

DEFAULT_ARTIFACT = Path(__file__).resolve().parent.parent / "artifacts" / "default"


def main(argv: list[str]) -> None:
    if not argv or argv[0].startswith("-"):
        argv = [str(DEFAULT_ARTIFACT), *argv]
    app(args=["bench", *argv], prog_name="run_bench.py")


if __name__ == "__main__":
    main(sys.argv[1:])
