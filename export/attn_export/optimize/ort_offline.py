"""onnxruntime's own graph optimizations, run once offline and saved as a plain ONNX file."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

__all__ = ["OFFLINE_LEVEL", "optimize_with_onnxruntime"]

logger = logging.getLogger(__name__)

# ORT_ENABLE_EXTENDED, not ORT_ENABLE_ALL. In onnxruntime 1.32 the levels above EXTENDED
# (ORT_ENABLE_LAYOUT and ORT_ENABLE_ALL) add layout transformations such as NCHWc, which pick
# block sizes for the CPU the optimizer runs on, so a file saved with them can be wrong or slow
# elsewhere. EXTENDED fusions (MatMul+Add -> Gemm-like FusedMatMul, Gelu, LayerNorm, ...) emit
# com.microsoft contrib ops that every CPU build of onnxruntime implements, independent of the
# instruction set. A serving session still applies the layout level online at load time.
OFFLINE_LEVEL = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED


def optimize_with_onnxruntime(source: Path, target: Path) -> None:
    """Load `source` with offline optimization at OFFLINE_LEVEL and save the result to `target`."""
    options = ort.SessionOptions()
    options.graph_optimization_level = OFFLINE_LEVEL
    options.optimized_model_filepath = str(target)
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    logger.info("onnxruntime saved the %s-optimized graph to %s", OFFLINE_LEVEL.name, target)
