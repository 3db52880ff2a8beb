"""Write every output file of a benchmark run: report.json, report.md and the PNG plots."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .compare import compare_reports, read_baseline, render_comparison
from .plots import write_plots
from .report import REPORT_MD, render_markdown, write_json

__all__ = ["write_report"]

logger = logging.getLogger(__name__)


def write_report(
    report: dict[str, Any],
    out_dir: str | Path,
    compare_with: str | Path | None = None,
    regression_threshold: float = 0.10,
    plots: bool = True,
) -> dict[str, Any]:
    """Write report.json, report.md and plots into `out_dir`; return the report with its comparison.

    With `compare_with` (an earlier report.json), `report["comparison"]` contains new/old ratios
    and a table is added to report.md. Raises ValueError when that file is not a usable report
    (see `compare.read_baseline`).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    comparison_md = None
    if compare_with is not None:
        report["comparison"] = compare_reports(report, read_baseline(compare_with), regression_threshold)
        report["comparison"]["old_report"] = str(compare_with)
        comparison_md = render_comparison(report["comparison"])
    plot_names = write_plots(report, out_dir) if plots else []
    report["plots"] = plot_names
    write_json(report, out_dir)
    (out_dir / REPORT_MD).write_text(render_markdown(report, plot_names, comparison_md))
    logger.info("Wrote benchmark report to %s", out_dir)
    return report
