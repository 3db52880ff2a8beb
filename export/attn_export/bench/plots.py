"""PNG plots of a benchmark report; matplotlib is optional (`pip install 'attn-export[plot]'`)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from .report import point_key

__all__ = ["write_plots"]

logger = logging.getLogger(__name__)


def _load_pyplot():
    try:
        import matplotlib
    except ImportError:
        logger.warning("matplotlib is not installed, so no plots were written; install it with `pip install 'attn-export[plot]'`.")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _latency_plot(plt, results: list[dict[str, Any]], threads: int, out_dir: Path) -> str | None:
    rows = [r for r in results if r["threads"] == threads and r["batch"] == 1]
    counts = sorted({r["num_candidates"] for r in rows})
    if not counts:
        return None
    columns = min(len(counts), 4)
    figure, axes = plt.subplots(1, columns, figsize=(4.2 * columns, 3.6), squeeze=False)
    for axis, count in zip(axes[0], counts[:columns]):
        subset = [r for r in rows if r["num_candidates"] == count]
        for engine, variant in sorted({(r["engine"], r["variant"]) for r in subset}):
            line = sorted((r["seq_len"], r["p50_ms"]) for r in subset if (r["engine"], r["variant"]) == (engine, variant))
            axis.plot([x for x, _ in line], [y for _, y in line], marker="o", label=f"{engine} {variant}")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("seq_len (history slots)")
        axis.set_ylabel("p50 latency (ms)")
        axis.set_title(f"batch 1, {count} candidate(s)")
        axis.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize="small")
    figure.suptitle(f"p50 latency against seq_len, {threads} thread(s)")
    figure.tight_layout()
    name = f"latency_vs_seq_len_t{threads}.png"
    figure.savefig(out_dir / name, dpi=110)
    plt.close(figure)
    return name


def _heatmap(plt, results: list[dict[str, Any]], variant: str, threads: int, out_dir: Path) -> str | None:
    reference = {point_key(r): r["p50_ms"] for r in results if r["engine"] == "pytorch" and r["threads"] == threads and r["batch"] == 1}
    other = {point_key(r): r["p50_ms"] for r in results
             if r["engine"] == "onnxruntime" and r["variant"] == variant and r["threads"] == threads and r["batch"] == 1}
    shared = sorted(set(reference) & set(other))
    if not shared:
        return None
    seq_lens = sorted({key[2] for key in shared})
    counts = sorted({key[3] for key in shared})
    grid = [[math.nan for _ in counts] for _ in seq_lens]
    for key in shared:
        grid[seq_lens.index(key[2])][counts.index(key[3])] = reference[key] / other[key]
    figure, axis = plt.subplots(figsize=(1.4 * len(counts) + 2.5, 1.0 * len(seq_lens) + 1.8))
    image = axis.imshow(grid, cmap="RdYlGn", aspect="auto")
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if not math.isnan(value):
                axis.text(j, i, f"{value:.2f}x", ha="center", va="center", fontsize="small")
    axis.set_xticks(range(len(counts)), [str(c) for c in counts])
    axis.set_yticks(range(len(seq_lens)), [str(s) for s in seq_lens])
    axis.set_xlabel("num_candidates")
    axis.set_ylabel("seq_len")
    axis.set_title(f"PyTorch p50 / onnxruntime {variant} p50\nbatch 1, {threads} thread(s)")
    figure.colorbar(image, ax=axis, label="speed-up (x)")
    figure.tight_layout()
    name = f"speedup_{variant}_t{threads}.png"
    figure.savefig(out_dir / name, dpi=110)
    plt.close(figure)
    return name


def write_plots(report: dict[str, Any], out_dir: Path) -> list[str]:
    """Write latency-against-seq_len plots and speed-up heatmaps; return the file names written.

    Returns [] and logs a warning when matplotlib is missing.
    """
    plt = _load_pyplot()
    if plt is None:
        return []
    results = report["results"]
    names = []
    for threads in sorted({r["threads"] for r in results}):
        names.append(_latency_plot(plt, results, threads, out_dir))
        for variant in sorted({r["variant"] for r in results if r["engine"] == "onnxruntime"}):
            names.append(_heatmap(plt, results, variant, threads, out_dir))
    return [name for name in names if name]
