"""Rewrite: apply a key mask to the values instead of to the attention weights.

The exported masked softmax ends with `weights * mask` and then `weights @ V`, where the mask is
[batch, 1, seq_len] or [batch, 1, 1, seq_len]: constant across the candidate axis. Because
sum_s (w_cs m_s) v_sd == sum_s w_cs (m_s v_sd), the product can move onto V:
`MatMul(w, Mul(V, m^T))`. That multiplies [batch, (heads,) seq_len, width] once per user instead
of the [batch, (heads,) num_candidates, seq_len] weights, one pass less over the largest tensor.
With a 0/1 mask every product is identical to the original, so an empty history still gives a
zero interest vector. DIN's unnormalized `logits * mask` has the same form and is handled too.

NOTE: with very few candidates the per-slot Mul on V costs more than it saves, because it
broadcasts along the innermost axis. After a padding-filled softmax, `empty_history_gate`
replaces it with one factor per row.
"""

from __future__ import annotations

import logging

import onnx_ir as ir

from .graph_tools import add_node_before, only_consumer, producer_op, static_shape

__all__ = ["move_mask_to_values"]

logger = logging.getLogger(__name__)


def _row_constant_mask(mul: ir.Node) -> tuple[ir.Value, ir.Value] | None:
    """Return (weights, mask) when one Mul input broadcasts as [..., 1, seq_len] against the other."""
    for mask_index in (1, 0):
        mask, weights = mul.inputs[mask_index], mul.inputs[1 - mask_index]
        mask_dims, weight_dims = static_shape(mask), static_shape(weights)
        if mask_dims is None or weight_dims is None or len(mask_dims) != len(weight_dims) or len(mask_dims) < 2:
            continue
        if mask_dims[-2] == 1 and weight_dims[-2] != 1 and mask_dims[-1] == weight_dims[-1] is not None:
            return weights, mask
    return None


def move_mask_to_values(graph: ir.Graph) -> int:
    """Rewrite `MatMul(Mul(w, mask), V)` to `MatMul(w, Mul(V, mask^T))`; return the number rewritten."""
    moved = 0
    for node in list(graph):
        if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx"):
            continue
        weighted, values = node.inputs
        mul = producer_op(weighted, "Mul")
        if mul is None or only_consumer(weighted) is not node:
            continue
        operands = _row_constant_mask(mul)
        value_dims = static_shape(values)
        if operands is None or value_dims is None:
            continue
        weights, mask = operands
        rank = len(static_shape(mask))
        if len(value_dims) != rank:
            continue

        perm = [*range(rank - 2), rank - 1, rank - 2]
        mask_t = add_node_before(graph, node, "Transpose", [mask], {"perm": perm}, hint="mask_over_keys")  # [batch, (1,) seq_len, 1]
        masked_values = add_node_before(graph, node, "Mul", [values, mask_t], hint="masked_values")
        node.replace_input_with(0, weights)
        node.replace_input_with(1, masked_values)
        graph.remove(mul, safe=True)
        moved += 1
        logger.debug("Moved the key mask of %s from the weights to the values", node.name)
    return moved
