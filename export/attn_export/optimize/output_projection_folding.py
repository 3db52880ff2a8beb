"""Rewrite: fold a linear projection that feeds a Concat into the MatMul that reads the Concat.

The MLP head computes `[u; e_c] W1` with `u = attn W_o` and no nonlinearity in between. Splitting
W1 by rows into W1_u and W1_e gives `[u; e_c] W1 = attn (W_o W1_u) + e_c W1_e`, so the output
projection disappears into one constant matrix and the Concat of
[batch, num_candidates, 2 * embed_dim] is never built. Per candidate this removes one MatMul
and one copy. Concat inputs without a constant projection keep their own row slice of W1.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from .graph_tools import add_initializer, add_node_before, constant_array, only_consumer, producer_op, static_shape

__all__ = ["fold_projection_into_concat_matmul"]

logger = logging.getLogger(__name__)


def _concat_axis_is_last(concat: ir.Node, rank: int) -> bool:
    axis_attr = concat.attributes.get("axis")
    if axis_attr is None:
        return False
    axis = axis_attr.as_int()
    return axis == -1 or axis == rank - 1


def _input_widths(concat: ir.Node) -> list[int] | None:
    """Return the static last-axis width of every Concat input, or None when one is unknown."""
    widths = []
    rank = None
    for value in concat.inputs:
        dims = static_shape(value) if value is not None else None
        if dims is None or not isinstance(dims[-1], int):
            return None
        if rank is not None and len(dims) != rank:
            return None
        rank = len(dims)
        widths.append(dims[-1])
    return widths


def _foldable_projection(value: ir.Value) -> tuple[ir.Value, np.ndarray, ir.Node] | None:
    """Return (input, weight, node) when `value` is a single-use `MatMul(input, constant 2-D weight)`."""
    node = producer_op(value, "MatMul")
    if node is None or only_consumer(value) is None:
        return None
    weight = constant_array(node.inputs[1])
    if weight is None or weight.ndim != 2:
        return None
    return node.inputs[0], weight, node


def fold_projection_into_concat_matmul(graph: ir.Graph) -> int:
    """Rewrite `MatMul(Concat(x W_o, e), W1)` to `x (W_o W1_u) + e W1_e`; return the number rewritten."""
    folded = 0
    for node in list(graph):
        if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx"):
            continue
        concatenated, weight_value = node.inputs
        concat = producer_op(concatenated, "Concat")
        weight = constant_array(weight_value)
        if concat is None or weight is None or weight.ndim != 2 or only_consumer(concatenated) is not node:
            continue
        widths = _input_widths(concat)
        if widths is None or sum(widths) != weight.shape[0] or not _concat_axis_is_last(concat, len(concat.outputs[0].shape or ())):
            continue
        projections = [_foldable_projection(value) for value in concat.inputs]
        if all(projection is None for projection in projections):
            continue

        terms: list[ir.Value] = []
        removed: list[ir.Node] = []
        offset = 0
        for value, width, projection in zip(concat.inputs, widths, projections):
            rows = weight[offset:offset + width].astype(np.float64)  # [width, out]
            offset += width
            if projection is not None:
                source, inner, projection_node = projection
                matrix = (inner.astype(np.float64) @ rows).astype(weight.dtype)  # [inner_in, out]
                removed.append(projection_node)
            else:
                source, matrix = value, rows.astype(weight.dtype)
            matrix_value = add_initializer(graph, "concat_matmul_rows", matrix)
            terms.append(add_node_before(graph, node, "MatMul", [source, matrix_value], hint="concat_term"))
        total = terms[0]
        for term in terms[1:]:
            total = add_node_before(graph, node, "Add", [total, term], hint="concat_sum")  # [..., out]

        node.outputs[0].replace_all_uses_with(total)
        graph.remove(node, safe=True)
        graph.remove(concat, safe=True)
        for projection_node in removed:
            graph.remove(projection_node, safe=True)
        folded += 1
        logger.debug("Folded %d projection(s) through the Concat into %s", len(removed), node.name)
    return folded
