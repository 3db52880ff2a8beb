"""Graph optimization of exported target-attention graphs (`attn-export optimize`).

One pass or concern per module. `graph_pipeline` runs onnxscript's generic passes, the attention
rewrites listed in `ATTENTION_REWRITES`, and onnxruntime's offline optimization.
`artifact_variant` checks parity and records the "optimized" variant in the artifact.
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
