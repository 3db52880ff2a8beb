"""Rewrite: zero the values of empty histories only, instead of masking every padding slot.

After `move_mask_to_values` the graph computes `softmax(scores + bias) @ (V * mask^T)` with a
per-slot mask [batch, (1,) seq_len, 1]. That Mul broadcasts along the innermost axis, which
onnxruntime 1.32 runs far slower than a plain elementwise pass. The per-slot mask is redundant
whenever the softmax input already carries a fill of at most MAX_FILL on padding slots. In a
row with at least one real slot, exp(fill - max) underflows, so padding weights are 0 and masking
V changes nothing (onnxruntime 1.32's Softmax returns exact zeros there). Only a row with no real slot
needs the mask, because its softmax spreads weight over padding. So V is multiplied by one
number per row, `any(mask)` as [batch, 1, (1,) 1], which keeps empty histories at a zero interest
vector and broadcasts as one scalar per contiguous block.

DIN's unnormalized `logits * mask` has no softmax and is left alone.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from .graph_tools import add_initializer, add_node_before, constant_array, producer_op
from .mask_fill_to_bias import MAX_FILL

__all__ = ["gate_values_by_history_presence"]

logger = logging.getLogger(__name__)


def _is_fill(value: ir.Value) -> bool:
    fill = constant_array(value)
    return fill is not None and fill.size == 1 and float(fill.reshape(())) <= MAX_FILL


def _softmax_masks_padding(weights: ir.Value, mask: ir.Value) -> bool:
    """True when `weights` is a Softmax whose input fills the slots where `mask` is False."""
    softmax = producer_op(weights, "Softmax")
    if softmax is None:
        return False
    logits = softmax.inputs[0]
    where = producer_op(logits, "Where")
    if where is not None:
        negation = producer_op(where.inputs[0], "Not")
        return negation is not None and negation.inputs[0] is mask and _is_fill(where.inputs[1])
    add = producer_op(logits, "Add")
    if add is None:
        return False
    for operand in add.inputs:
        bias = producer_op(operand, "Where")
        if bias is None or bias.inputs[0] is not mask or not _is_fill(bias.inputs[2]):
            continue
        zero = constant_array(bias.inputs[1])
        if zero is not None and zero.size == 1 and float(zero.reshape(())) == 0.0:
            return True
    return False


def gate_values_by_history_presence(graph: ir.Graph) -> int:
    """Replace `V * mask^T` before a padding-filled softmax with `V * any(mask)`; return the count."""
    gated = 0
    for node in list(graph):
        if node.op_type != "Mul" or node.domain not in ("", "ai.onnx"):
            continue
        for mask_index in (1, 0):
            transpose = producer_op(node.inputs[mask_index], "Transpose")
            cast = producer_op(transpose.inputs[0], "Cast") if transpose is not None else None
            if cast is not None:
                break
        else:
            continue
        values = node.inputs[1 - mask_index]
        mask = cast.inputs[0]
        readers = node.outputs[0].consumers()
        if not readers or node.outputs[0].is_graph_output():
            continue
        if not all(
            reader.op_type == "MatMul" and reader.inputs[1] is node.outputs[0]
            and _softmax_masks_padding(reader.inputs[0], mask)
            for reader in readers
        ):
            continue

        axes = add_initializer(graph, "last_axis", np.asarray([-1], dtype=np.int64))
        present = add_node_before(graph, node, "ReduceMax", [cast.outputs[0], axes], {"keepdims": 1},
                                  hint="history_present")  # [batch, 1, (1,) 1]
        node.replace_input_with(mask_index, present)  # the unused Transpose is removed by the next optimizer run
        gated += 1
        logger.debug("Gated the values of %s by history presence", node.name)
    return gated

