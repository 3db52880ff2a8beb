"""Latency benchmarks of attn-export artifacts: PyTorch eager against onnxruntime variants.

Each engine runs in its own worker process (`attn_export.bench.worker`) with an explicit thread
budget; this package's top level imports neither torch nor onnxruntime.
"""

from .compare import compare_reports, render_comparison
from .flops import RequestFlops, ranker_flops
from .grid import FULL_GRID, QUICK_GRID, GridPoint, build_grid
from .measure import measure_variant
from .runner import BenchOptions, run_benchmark
from .stats import TimingBudget
from .write import write_report

__all__ = [
    "BenchOptions",
    "FULL_GRID",
    "GridPoint",
    "QUICK_GRID",
    "RequestFlops",
    "TimingBudget",
    "build_grid",
    "compare_reports",
    "measure_variant",
    "ranker_flops",
    "render_comparison",
    "run_benchmark",
    "write_report",
]
