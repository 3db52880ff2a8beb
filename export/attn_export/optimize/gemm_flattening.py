"""Rewrite: run `MatMul(x, W) + c` on rank-3 inputs as a 2-D Gemm that adds c itself.

onnxruntime 1.32 fuses MatMul + Add into Gemm only for 2-D inputs, so the MLP head on
[batch, num_candidates, width] runs every bias Add as its own pass over the activations. This
rewrite flattens x to [batch * num_candidates, width], lets Gemm add c (a constant bias row, or a
full tensor of the output's shape), and reshapes back. Between two such layers a Relu is moved
onto the 2-D tensor, so the next layer reads the 2-D tensor directly. The whole head then stays
2-D, and onnxruntime's extended level fuses each Gemm + Relu into one FusedGemm.

Only the summation order inside each output element changes (c is added by the GEMM kernel), so
results agree with the original to float32 rounding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from .graph_tools import add_initializer, add_node_before, constant_array, only_consumer, producer_op, static_shape

__all__ = ["flatten_matmul_add_to_gemm"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Flat:
    """A rank-3 value made by this rewrite: its 2-D source and the Shape value of its leading dims."""

    matrix: ir.Value
    leading: ir.Value
    leading_dims: list[int | str]
    width: int


def _constant_weight(node: ir.Node) -> np.ndarray | None:
    weight = constant_array(node.inputs[1])
    return weight if weight is not None and weight.ndim == 2 else None


def _leading_dims(value: ir.Value, flat: dict[ir.Value, _Flat]) -> list[int | str] | None:
    """Return the known dims before the last axis of a rank-3 value, else None."""
    if value in flat:
        return flat[value].leading_dims
    dims = static_shape(value)
    if dims is None or len(dims) != 3 or any(dim is None for dim in dims[:-1]):
        return None
    return dims[:-1]


def _reassociate_bias(graph: ir.Graph) -> None:
    """Rewrite `(MatMul_a + MatMul_b) + bias` to `MatMul_a + (MatMul_b + bias)`, so each Add has a MatMul operand."""
    for node in list(graph):
        if node.op_type != "Add" or node.domain not in ("", "ai.onnx"):
            continue
        inner = producer_op(node.inputs[0], "Add")
        bias = constant_array(node.inputs[1])
        if inner is None or bias is None or bias.ndim != 1 or only_consumer(node.inputs[0]) is not node:
            continue
        first, second = (producer_op(value, "MatMul") for value in inner.inputs)
        if first is None or second is None:
            continue
        biased = add_node_before(graph, node, "Add", [inner.inputs[1], node.inputs[1]], hint="biased_term")
        node.replace_input_with(0, inner.inputs[0])
        node.replace_input_with(1, biased)
        graph.remove(inner, safe=True)


def _flatten(graph: ir.Graph, anchor: ir.Node, value: ir.Value, width: int, flat: dict[ir.Value, _Flat]) -> ir.Value:
    """Return `value` as [rows, width]: the 2-D tensor it was reshaped from, or a new Reshape."""
    if value in flat:
        return flat[value].matrix
    target = add_initializer(graph, "flat_shape", np.asarray([-1, width], dtype=np.int64))
    return add_node_before(graph, anchor, "Reshape", [value, target], hint="flatten")  # [batch * num_candidates, width]


def flatten_matmul_add_to_gemm(graph: ir.Graph) -> int:
    """Replace each rank-3 `Add(MatMul(x, W), c)` with a 2-D Gemm; return the number replaced."""
    _reassociate_bias(graph)
    flat: dict[ir.Value, _Flat] = {}
    replaced = 0
    for node in list(graph):
        if node.op_type == "Relu" and node.inputs[0] in flat and only_consumer(node.inputs[0]) is node:
            # Relu(Reshape(g)) == Reshape(Relu(g)): keep the activation 2-D.
            source = flat[node.inputs[0]]
            reshape = node.inputs[0].producer()
            activated = add_node_before(graph, node, "Relu", [source.matrix], hint="flat_relu")
            restored = add_node_before(graph, node, "Reshape", [activated, reshape.inputs[1]], hint="unflatten")
            node.outputs[0].replace_all_uses_with(restored)
            graph.remove(node, safe=True)
            graph.remove(reshape, safe=True)
            flat[restored] = _Flat(activated, source.leading, source.leading_dims, source.width)
            continue
        if node.op_type != "Add" or node.domain not in ("", "ai.onnx"):
            continue
        match = _match_layer(node, flat)
        if match is None:
            continue
        matmul, addend, bias_is_row = match

        x = matmul.inputs[0]
        weight = constant_array(matmul.inputs[1])
        out_width = int(weight.shape[1])
        x_flat = _flatten(graph, node, x, int(weight.shape[0]), flat)
        c_flat = addend if bias_is_row else _flatten(graph, node, addend, out_width, flat)
        gemm = add_node_before(graph, node, "Gemm", [x_flat, matmul.inputs[1], c_flat], hint="gemm")  # [rows, out_width]
        if x in flat:
            leading = flat[x].leading
        else:
            leading = add_node_before(graph, node, "Shape", [x], {"start": 0, "end": -1}, hint="leading_dims")
        width = add_initializer(graph, "out_width", np.asarray([out_width], dtype=np.int64))
        shape = add_node_before(graph, node, "Concat", [leading, width], {"axis": 0}, hint="unflat_shape")
        restored = add_node_before(graph, node, "Reshape", [gemm, shape], hint="unflatten")  # [batch, num_candidates, out_width]
        node.outputs[0].replace_all_uses_with(restored)
        graph.remove(node, safe=True)
        graph.remove(matmul, safe=True)
        flat[restored] = _Flat(gemm, leading, _leading_dims(x, flat), out_width)
        replaced += 1
        logger.debug("Flattened %s into a 2-D Gemm", matmul.name)
    return replaced


def _match_layer(add: ir.Node, flat: dict[ir.Value, _Flat]) -> tuple[ir.Node, ir.Value, bool] | None:
    """Return (MatMul, addend, addend is a bias row) when `add` is a rank-3 layer that a Gemm can compute.

    The addend must be a constant row of the output width, or a tensor whose leading dims are
    known to equal x's, because flattening a broadcast addend would pair the wrong rows.
    """
    for matmul_index in (0, 1):
        matmul = producer_op(add.inputs[matmul_index], "MatMul")
        addend = add.inputs[1 - matmul_index]
        if matmul is None or only_consumer(matmul.outputs[0]) is not add:
            continue
        weight = _constant_weight(matmul)
        leading = _leading_dims(matmul.inputs[0], flat)
        if weight is None or leading is None:
            continue
        bias = constant_array(addend)
        if bias is not None:
            if bias.ndim == 1 and bias.shape[0] == weight.shape[1]:
                return matmul, addend, True
            continue
        addend_dims = static_shape(addend)
        if addend in flat:
            addend_width = flat[addend].width
        else:
            addend_width = addend_dims[-1] if addend_dims else None
        if _leading_dims(addend, flat) == leading and addend_width == weight.shape[1]:
            return matmul, addend, False
    return None
