"""Pre-processing shared by every quantization scheme: ORT's quant_pre_process and node names.

onnxruntime's quantization docs recommend running `quant_pre_process` (graph optimization plus
ONNX and symbolic shape inference) before quantizing, because a tensor with unknown shape or
type cannot be quantized. Node names matter here: exclusion lists, sensitivity ranks and the
manifest all refer to nodes by name, so every node gets a unique, stable one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import onnx

from ..errors import QuantizeError

__all__ = ["prepare_for_quantization", "ensure_node_names"]

logger = logging.getLogger(__name__)


def ensure_node_names(model: onnx.ModelProto) -> int:
    """Give every unnamed or duplicate-named node a unique name; return how many were renamed."""
    seen: set[str] = set()
    renamed = 0
    for index, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            base = f"{node.op_type}_{index}"
            name = base
            suffix = 0
            while name in seen:
                suffix += 1
                name = f"{base}_{suffix}"
            node.name = name
            renamed += 1
        seen.add(node.name)
    return renamed


def prepare_for_quantization(source: Path, target: Path) -> Path:
    """Run ORT's quant pre-processing on `source` and write the result, with unique node names, to `target`.

    Raises QuantizeError when pre-processing fails (the message carries onnxruntime's error).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(source), str(target))
    except Exception as exc:  # onnxruntime raises several unrelated types here
        raise QuantizeError(
            f"onnxruntime quant pre-processing (shape inference and optimization) failed on {source}: "
            f"{type(exc).__name__}: {exc}. Re-export the artifact with `attn-export export`, and check "
            "that its fp32 model passes `attn-export verify`."
        ) from exc
    model = onnx.load(str(target))
    if ensure_node_names(model):
        onnx.save_model(model, str(target))
    logger.info("Pre-processed %s for quantization -> %s", source, target)
    return target
