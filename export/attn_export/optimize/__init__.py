"""Graph optimization of exported target-attention graphs (`attn-export optimize`).

One pass or concern per module: onnxscript's generic passes, four attention rewrites, and
onnxruntime's offline optimization, run by `graph_pipeline`; `artifact_variant` checks parity
and records the "optimized" variant in the artifact.
"""

from .artifact_variant import (
    FP32_ONNX_ATOL,
    FP32_ONNX_RTOL,
    MODEL_FILE,
    PARITY_FILE,
    VARIANT_NAME,
    OptimizeResult,
    optimize_artifact,
)
from .graph_pipeline import ATTENTION_REWRITES, embedding_gathers, optimize_onnx_file

__all__ = [
    "ATTENTION_REWRITES",
    "FP32_ONNX_ATOL",
    "FP32_ONNX_RTOL",
    "MODEL_FILE",
    "PARITY_FILE",
    "VARIANT_NAME",
    "OptimizeResult",
    "embedding_gathers",
    "optimize_artifact",
    "optimize_onnx_file",
]
