"""onnxscript's generic passes: constant folding, dead-code removal, rewrite rules, ORT fusions."""

from __future__ import annotations

import logging

import onnx_ir as ir

__all__ = ["CONSTANT_FOLD_INPUT_LIMIT", "run_onnxscript_optimizer", "run_ort_fusions"]

logger = logging.getLogger(__name__)

# onnxscript 0.7.2 folds only ops whose inputs have at most 8192 elements by default, which
# leaves DIN's weight Split/Add/Sub at run time. Weight matrices of these rankers are far below
# this limit; the item embedding table is never folded because its Gather indices are inputs.
CONSTANT_FOLD_INPUT_LIMIT = 1 << 22


def run_onnxscript_optimizer(model: ir.Model) -> None:
    """Fold constants, remove dead nodes and apply onnxscript's default rewrite rules, in place."""
    import onnxscript.optimizer

    onnxscript.optimizer.optimize(model, input_size_limit=CONSTANT_FOLD_INPUT_LIMIT)


def run_ort_fusions(model: ir.Model) -> dict[str, int]:
    """Apply onnxscript's onnxruntime fusions in place; return the count of each fusion applied.

    The SDPA rule matches scaled dot-product attention with an additive mask, so on the
    exported graph (Where-filled masked softmax) it matches nothing, but after
    `masked_fill_to_bias` and `move_mask_to_values` it turns the target attention into
    com.microsoft.MultiHeadAttention. Parity is checked on the final graph either way.
    """
    from onnxscript.rewriter import ort_fusions

    _, counts = ort_fusions.optimize_for_ort(model)
    applied = {name: int(count) for name, count in counts.items() if count}
    logger.info("onnxscript ORT fusions applied: %s", applied or "none")
    return applied
