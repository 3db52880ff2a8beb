"""Compare a benchmark report with an earlier one and flag latency regressions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .report import markdown_table, read_report

__all__ = ["MATCH_FIELDS", "LATENCY_FIELDS", "read_baseline", "compare_reports", "render_comparison"]

logger = logging.getLogger(__name__)

# A point of one report matches a point of the other when all these fields are equal.
MATCH_FIELDS = ("engine", "variant", "threads", "batch", "seq_len", "num_candidates")
# Latencies in milliseconds that the comparison divides by, so they must be positive numbers.
LATENCY_FIELDS = ("p50_ms", "p99_ms")


def read_baseline(path: str | Path) -> dict[str, Any]:
    """Load an earlier report.json and check that `compare_reports` can use every result row.

    Raises ValueError naming the file and the first problem: unreadable, invalid JSON, no
    `results` list, a row without the match or latency fields, or a latency that is not positive.
    """
    report = read_report(path)
    for index, row in enumerate(report["results"]):
        if not isinstance(row, dict):
            raise ValueError(f"{path} is not an attn-export benchmark report: results[{index}] is not an object.")
        missing = [name for name in (*MATCH_FIELDS, *LATENCY_FIELDS) if name not in row]
        if missing:
            raise ValueError(f"{path} is not an attn-export benchmark report: results[{index}] has no {missing}.")
        for name in LATENCY_FIELDS:
            value = row[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{path}: results[{index}].{name} is {value!r}; expected a positive number of ms.")
    return report


def _index(report: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
    return {tuple(row[name] for name in MATCH_FIELDS): row for row in report["results"]}


def compare_reports(new: dict[str, Any], old: dict[str, Any], threshold: float = 0.10) -> dict[str, Any]:
    """Return new/old latency ratios for every matching point, with regressions flagged.

    A point regresses when its new p50 exceeds the old p50 by more than `threshold` (0.10 = 10 %).
    p99 ratios are reported too but not flagged, because tails vary more between runs.
    Points in only one report are listed under `only_new` and `only_old`.
    """
    if threshold < 0:
        raise ValueError(f"The regression threshold must be >= 0 (0.10 means 10 %), got {threshold}.")
    new_rows, old_rows = _index(new), _index(old)
    rows = []
    for key in sorted(set(new_rows) & set(old_rows), key=str):
        current, earlier = new_rows[key], old_rows[key]
        p50_ratio = current["p50_ms"] / earlier["p50_ms"]
        rows.append({
            **dict(zip(MATCH_FIELDS, key)),
            "old_p50_ms": earlier["p50_ms"],
            "new_p50_ms": current["p50_ms"],
            "p50_ratio": p50_ratio,
            "old_p99_ms": earlier["p99_ms"],
            "new_p99_ms": current["p99_ms"],
            "p99_ratio": current["p99_ms"] / earlier["p99_ms"],
            "regression": p50_ratio > 1.0 + threshold,
        })
    regressions = [row for row in rows if row["regression"]]
    if regressions:
        logger.warning("%d of %d matched points are more than %.0f %% slower at p50.", len(regressions), len(rows),
                       threshold * 100)
    return {
        "threshold": threshold,
        "old_created_utc": old.get("created_utc"),
        "old_cpu_model": old.get("machine", {}).get("cpu_model"),
        "rows": rows,
        "regressions": len(regressions),
        "only_new": [dict(zip(MATCH_FIELDS, key)) for key in sorted(set(new_rows) - set(old_rows), key=str)],
        "only_old": [dict(zip(MATCH_FIELDS, key)) for key in sorted(set(old_rows) - set(new_rows), key=str)],
    }


def render_comparison(comparison: dict[str, Any]) -> str:
    """Return a markdown section with one row per matched point."""
    header = ["engine", "variant", "threads", "batch", "seq_len", "candidates", "old p50 ms", "new p50 ms",
              "new/old p50", "new/old p99", "regression"]
    rows = [[r["engine"], r["variant"], r["threads"], r["batch"], r["seq_len"], r["num_candidates"],
             f"{r['old_p50_ms']:.3f}", f"{r['new_p50_ms']:.3f}", f"{r['p50_ratio']:.2f}", f"{r['p99_ratio']:.2f}",
             "**yes**" if r["regression"] else "no"] for r in comparison["rows"]]
    lines = [
        "## Comparison with an earlier report",
        "",
        f"Earlier report: {comparison['old_created_utc']} on {comparison['old_cpu_model']}. A point regresses when "
        f"its p50 is more than {comparison['threshold'] * 100:.0f} % above the earlier p50; "
        f"{comparison['regressions']} of {len(comparison['rows'])} matched points did.",
        "",
        markdown_table(header, rows),
    ]
    if comparison["only_new"] or comparison["only_old"]:
        lines += ["", f"Unmatched points: {len(comparison['only_new'])} only in this report, "
                      f"{len(comparison['only_old'])} only in the earlier one."]
    return "\n".join(lines)
