"""Rewrite: project straight into the [batch, heads, length, head_dim] layout, without Transposes.

The exported multi-head split is `Transpose(Reshape(x W, [batch, length, heads, head_dim]))`,
which copies every query, key and value once more after the projection. Splitting W by heads
into a constant [heads, embed_dim, head_dim] gives the same tensor as one broadcasting MatMul:
`Unsqueeze(x, 1) @ W_heads` -> [batch, heads, length, head_dim]. For keys, exported as the
[batch, heads, head_dim, length] Transpose, the rewrite keeps a last-two-axes Transpose, which
onnxruntime fuses into the score MatMul (FusedMatMul with transB) instead of copying the keys.
Each output element is the same dot product as before, so results match to float32 rounding.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from .graph_tools import add_initializer, add_node_before, constant_array, only_consumer, producer_op

__all__ = ["project_into_head_major_layout"]

logger = logging.getLogger(__name__)

_HEAD_MAJOR = [0, 2, 1, 3]  # [batch, length, heads, head_dim] -> [batch, heads, length, head_dim]
_HEAD_MAJOR_KEYS_T = [0, 2, 3, 1]  # [batch, length, heads, head_dim] -> [batch, heads, head_dim, length]


def _split_sizes(reshape: ir.Node, width: int) -> tuple[int, int] | None:
    """Return (heads, head_dim) when the Reshape target is [*, *, heads, head_dim] with heads known."""
    target = constant_array(reshape.inputs[1])
    if target is not None:
        parts = [np.asarray([dim]) for dim in target.reshape(-1)] if target.size == 4 else None
    else:
        concat = producer_op(reshape.inputs[1], "Concat")
        if concat is None or len(concat.inputs) != 4:
            return None
        parts = [constant_array(value) for value in concat.inputs]
    if parts is None or parts[2] is None or parts[3] is None or parts[2].size != 1 or parts[3].size != 1:
        return None
    heads, head_dim = int(parts[2].reshape(())), int(parts[3].reshape(()))
    if heads <= 0 or width % heads:
        return None
    if head_dim == -1:
        head_dim = width // heads
    return (heads, head_dim) if heads * head_dim == width else None


def project_into_head_major_layout(graph: ir.Graph) -> int:
    """Replace each `Transpose(Reshape(MatMul(x, W)))` head split with a per-head MatMul; return the count."""
    rewritten = 0
    for node in list(graph):
        if node.op_type != "Transpose" or node.domain not in ("", "ai.onnx"):
            continue
        perm_attr = node.attributes.get("perm")
        perm = list(perm_attr.as_ints()) if perm_attr is not None else None
        if perm not in (_HEAD_MAJOR, _HEAD_MAJOR_KEYS_T):
            continue
        reshape = producer_op(node.inputs[0], "Reshape")
        if reshape is None or only_consumer(node.inputs[0]) is not node:
            continue
        projection = producer_op(reshape.inputs[0], "MatMul")
        if projection is None or only_consumer(reshape.inputs[0]) is not reshape:
            continue
        weight = constant_array(projection.inputs[1])
        source_shape = projection.inputs[0].shape
        if weight is None or weight.ndim != 2 or source_shape is None or len(source_shape) != 3:
            continue
        sizes = _split_sizes(reshape, weight.shape[1])
        if sizes is None:
            continue
        heads, head_dim = sizes

        embed_dim = weight.shape[0]
        per_head = np.ascontiguousarray(weight.reshape(embed_dim, heads, head_dim).transpose(1, 0, 2))  # [heads, embed_dim, head_dim]
        axis = add_initializer(graph, "head_axis", np.asarray([1], dtype=np.int64))
        expanded = add_node_before(graph, node, "Unsqueeze", [projection.inputs[0], axis], hint="head_input")  # [batch, 1, length, embed_dim]
        weight_value = add_initializer(graph, "per_head_weight", per_head)
        result = add_node_before(graph, node, "MatMul", [expanded, weight_value], hint="head_projection")  # [batch, heads, length, head_dim]
        if perm == _HEAD_MAJOR_KEYS_T:
            result = add_node_before(graph, node, "Transpose", [result], {"perm": [0, 1, 3, 2]},
                                     hint="keys_t")  # [batch, heads, head_dim, length]
        node.outputs[0].replace_all_uses_with(result)
        graph.remove(node, safe=True)
        graph.remove(reshape, safe=True)
        graph.remove(projection, safe=True)
        rewritten += 1
        logger.debug("Projected %s straight into the head-major layout", projection.name)
    return rewritten
