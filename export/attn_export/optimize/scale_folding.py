"""Rewrite: fold the softmax scale of `(Q K^T) * c` into the key projection weight.

The exported attention multiplies the whole score tensor [batch, heads, num_candidates, seq_len]
by 1/sqrt(head_dim). Scaling is linear, so `(Q K^T) * c == Q (K c)^T`, and when K comes from
`MatMul(history, W_k)` through Reshape/Transpose nodes, `K c == MatMul(history, W_k c)`: the
multiplication moves into a constant and one full pass over the score tensor disappears.
When K has no constant projection (plain dot attention), a Mul on K itself is inserted, which is
per-user work of size [batch, seq_len, embed_dim] instead of per-candidate work.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from .graph_tools import add_initializer, add_node_before, constant_array, only_consumer, producer_op

__all__ = ["fold_attention_scale"]

logger = logging.getLogger(__name__)

# Nodes that commute with multiplying every element by a scalar.
_LAYOUT_OPS = ("Transpose", "Reshape")


def _scalar_operand(node: ir.Node) -> tuple[int, float] | None:
    """Return (index of the non-constant input, scalar) for Mul(x, c) with a one-element constant c."""
    for const_index in (1, 0):
        array = constant_array(node.inputs[const_index])
        if array is not None and array.size == 1 and array.dtype == np.float32:
            return 1 - const_index, float(array.reshape(()))
    return None


def _key_root(key_side: ir.Value) -> tuple[ir.Value, ir.Node]:
    """Walk back from the MatMul's key input through single-use layout nodes.

    Returns (root value, the node that reads the root on the way to the MatMul).
    """
    value = key_side
    reader = only_consumer(value)
    while True:
        node = value.producer()
        if node is None or node.op_type not in _LAYOUT_OPS or only_consumer(value) is None:
            return value, reader
        reader = node
        value = node.inputs[0]


def fold_attention_scale(graph: ir.Graph) -> int:
    """Fold every `MatMul(Q, K) * scalar` into K's projection weight; return the number folded."""
    folded = 0
    for node in list(graph):
        if node.op_type != "Mul" or node.domain not in ("", "ai.onnx"):
            continue
        operand = _scalar_operand(node)
        if operand is None:
            continue
        data_index, scale = operand
        matmul = producer_op(node.inputs[data_index], "MatMul")
        if matmul is None or only_consumer(matmul.outputs[0]) is not node:
            continue
        key_side = matmul.inputs[1]
        if only_consumer(key_side) is not matmul:
            continue

        root, reader = _key_root(key_side)
        projection = producer_op(root, "MatMul")
        weight = constant_array(projection.inputs[1]) if projection is not None else None
        if projection is not None and weight is not None and weight.ndim == 2 and only_consumer(root) is not None:
            scaled = add_initializer(graph, "scaled_key_weight", (weight * np.float32(scale)).astype(weight.dtype))
            projection.replace_input_with(1, scaled)
        else:
            # No constant projection to absorb the scale: scale K once per user instead.
            scale_value = add_initializer(graph, "attention_scale", np.asarray(scale, dtype=np.float32))
            scaled_root = add_node_before(graph, reader, "Mul", [root, scale_value], hint="scaled_keys")
            reader.replace_input_with(list(reader.inputs).index(root), scaled_root)

        node.outputs[0].replace_all_uses_with(matmul.outputs[0])
        graph.remove(node, safe=True)
        folded += 1
        logger.debug("Folded attention scale %.6g into the keys of %s", scale, matmul.name)
    return folded
