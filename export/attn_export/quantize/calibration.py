"""Calibration for static quantization: real request batches, ORT calibrators, range checks.

Calibration runs once per scheme and its ranges are cached in ORT's JSON calibration cache, so
the gate's re-quantizations (with more nodes excluded) reuse the same ranges.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import QuantizeError
from .graph import SENTINEL_MAGNITUDE

__all__ = ["CALIBRATION_METHODS", "FeedReader", "calibration_feeds", "calibrate", "check_ranges"]

logger = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


def calibration_feeds(requests, batch_size: int = 16) -> list[dict[str, np.ndarray]]:
    """Split RankingRequests into model-input batches (histories keep their real lengths)."""
    return [requests.take(slice(start, start + batch_size)).model_inputs()
            for start in range(0, len(requests), batch_size)]


class FeedReader:
    """An onnxruntime CalibrationDataReader over a fixed list of feed dicts."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position >= len(self._feeds):
            return None
        feed = self._feeds[self._position]
        self._position += 1
        return feed

    def __len__(self) -> int:
        return len(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._feeds = self._feeds[start_index:end_index]
        self._position = 0


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    if name not in methods:
        raise QuantizeError(f"Unknown calibration method {name!r}; expected one of {CALIBRATION_METHODS}.")
    return methods[name]


def calibrate(
    prepared: Path,
    feeds: Sequence[dict[str, np.ndarray]],
    method: str,
    op_types: Iterable[str],
    workdir: Path,
) -> tuple[Path, dict[str, tuple[float, float]]]:
    """Run the ORT calibrator over `feeds`; return (calibration cache path, {tensor: (min, max)}).

    Raises QuantizeError when there are no feeds or the calibrator fails.
    """
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    if not feeds:
        raise QuantizeError("Static quantization needs calibration requests, but none were given; "
                            "the artifact must record its data source (MovieLens or synthetic).")
    workdir.mkdir(parents=True, exist_ok=True)
    cache = workdir / f"calibration_{method}.json"
    try:
        calibrator = create_calibrator(prepared, list(op_types), augmented_model_path=str(workdir / f"augmented_{method}.onnx"),
                                       calibrate_method=_method(method))
        # onnxruntime's histogram calibrators report progress with print(). Capture it so that
        # stdout stays clean for --json and stderr for errors, and keep it in the DEBUG log.
        calibrator_output = io.StringIO()
        try:
            with contextlib.redirect_stdout(calibrator_output), contextlib.redirect_stderr(calibrator_output):
                calibrator.collect_data(FeedReader(feeds))
                tensors = calibrator.compute_data()
        finally:
            _log_calibrator_output(method, calibrator_output.getvalue())
    except QuantizeError:
        raise
    except Exception as exc:  # onnxruntime's calibrators raise many exception types
        raise QuantizeError(f"Calibration ({method}) failed: {type(exc).__name__}: {exc}") from exc
    save_tensors_data(tensors, cache)
    ranges = {name: (float(np.min(data.range_value[0])), float(np.max(data.range_value[1])))
              for name, data in tensors.items()}
    logger.info("Calibrated %d tensors with %s on %d batches", len(ranges), method, len(feeds))
    return cache, ranges


def _log_calibrator_output(method: str, output: str) -> None:
    if output.strip():
        logger.debug("onnxruntime calibrator output (%s):\n%s", method, output.rstrip())


def check_ranges(ranges: dict[str, tuple[float, float]], limit: float = SENTINEL_MAGNITUDE) -> None:
    """Reject calibration ranges that are non-finite or set by a sentinel such as the -1e9 mask fill.

    A uint8 range of [-1e9, 10] has a step of about 4e6, so every real value rounds to the zero
    point; an infinite bound gives an infinite scale. Raises QuantizeError naming each tensor.
    """
    bad = []
    for name, (low, high) in sorted(ranges.items()):
        if not (math.isfinite(low) and math.isfinite(high)):
            bad.append(f"{name}: [{low:g}, {high:g}] is not finite")
        elif max(abs(low), abs(high)) >= limit:
            bad.append(f"{name}: [{low:g}, {high:g}] reaches a sentinel magnitude (|bound| >= {limit:g})")
    if bad:
        raise QuantizeError(
            "Calibration ranges that would wipe out real values: " + "; ".join(bad) + ". These tensors "
            "carry masked attention scores (a -1e9 or -inf fill). Keep the masking and softmax path "
            "in fp32 (the default of the static schemes) or exclude these tensors' nodes."
        )
