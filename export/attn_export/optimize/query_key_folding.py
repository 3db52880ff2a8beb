"""Rewrite: fold W_q W_k^T into one matrix for single-head projected attention.

Scores are (e_c W_q)(h W_k)^T = e_c (h W_k W_q^T)^T. Two directions are possible; this one puts
the product on the user side: keys become `h (W_k W_q^T)` [batch, seq_len, embed_dim], computed
once per user, and the candidate side needs no query projection at all. The other direction
(q' = e_c W_q W_k^T against the raw history) keeps a per-candidate projection of the same cost,
so it is never cheaper. The fold widens the score MatMul from attention_dim to embed_dim, so it
applies only when embed_dim <= attention_dim, where it removes work and adds none. Multi-head
attention is left alone: per head the folded width would be embed_dim instead of head_dim.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from .graph_tools import add_initializer, constant_array, only_consumer, producer_op

__all__ = ["fold_query_key_product"]

logger = logging.getLogger(__name__)


def _swaps_last_two_axes(transpose: ir.Node) -> bool:
    perm = transpose.attributes.get("perm")
    if perm is None:
        return False
    perm = list(perm.as_ints())
    rank = len(perm)
    return rank >= 2 and perm == [*range(rank - 2), rank - 1, rank - 2]


def _projection(value: ir.Value) -> tuple[ir.Node, np.ndarray] | None:
    node = producer_op(value, "MatMul")
    if node is None:
        return None
    weight = constant_array(node.inputs[1])
    if weight is None or weight.ndim != 2:
        return None
    return node, weight


def fold_query_key_product(graph: ir.Graph) -> int:
    """Rewrite `MatMul(e W_q, Transpose(h W_k))` to `MatMul(e, Transpose(h W_k W_q^T))`; return the count."""
    folded = 0
    for node in list(graph):
        if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx"):
            continue
        queries, keys_t = node.inputs
        transpose = producer_op(keys_t, "Transpose")
        if transpose is None or not _swaps_last_two_axes(transpose) or only_consumer(keys_t) is not node:
            continue
        query_proj = _projection(queries)
        key_proj = _projection(transpose.inputs[0])
        if query_proj is None or key_proj is None:
            continue
        query_node, w_q = query_proj
        key_node, w_k = key_proj
        if only_consumer(queries) is not node or only_consumer(transpose.inputs[0]) is not transpose:
            continue
        embed_dim, attention_dim = w_q.shape
        if w_k.shape != w_q.shape or embed_dim > attention_dim:
            continue

        folded_weight = (w_k.astype(np.float64) @ w_q.astype(np.float64).T).astype(w_k.dtype)  # [embed_dim, embed_dim]
        key_node.replace_input_with(1, add_initializer(graph, "folded_query_key_weight", folded_weight))
        node.replace_input_with(0, query_node.inputs[0])
        graph.remove(query_node, safe=True)
        folded += 1
        logger.debug("Folded W_q W_k^T into the keys of %s", node.name)
    return folded
