"""Graph queries used by the quantizers: weight matmuls, table lookups and the masking path.

The masking path of an attention block is the chain that turns raw scores into weights. It
starts at the masked fill (Where with a sentinel such as -1e9) and goes through the Softmax and
the multiplication by the float mask to the MatMul that applies the weights to the values. Quantizing it is unsafe:
the sentinel dominates any calibrated range, and a uint8 softmax output rounds the small
weights of long histories to zero. The static scheme keeps this path in fp32 by default.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = [
    "SENTINEL_MAGNITUDE",
    "constant_values",
    "consumers",
    "producers",
    "weight_matmul_nodes",
    "matmul_nodes",
    "table_gather_nodes",
    "masking_path_nodes",
    "attention_weight_tensors",
]

# A constant at least this large in magnitude (or infinite) in a Where is a mask fill, not data.
SENTINEL_MAGNITUDE = 1e8

# Ops through which the masked weights flow unchanged in meaning between the fill and the MatMul.
_PATH_OPS = {"Softmax", "Where", "Mul", "Div", "Cast", "Exp", "ReduceSum", "Sub", "Add",
             "Unsqueeze", "Squeeze", "Reshape", "Transpose", "Expand"}
_MATMUL_OPS = {"MatMul", "Gemm"}


def constant_values(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Map each initializer and Constant-node output to its value."""
    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attribute.t)
    return values


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """Map each tensor name to the node that outputs it."""
    return {output: node for node in model.graph.node for output in node.output}


def consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Map each tensor name to the nodes that read it."""
    table: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            if name:
                table[name].append(node)
    return table


def matmul_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of all MatMul and Gemm nodes, in graph order."""
    return [node.name for node in model.graph.node if node.op_type in _MATMUL_OPS]


def weight_matmul_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of MatMul/Gemm nodes whose second input is a constant weight matrix."""
    constants = constant_values(model)
    return [node.name for node in model.graph.node
            if node.op_type in _MATMUL_OPS and len(node.input) > 1 and node.input[1] in constants]


def table_gather_nodes(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Map each float32 2-D initializer read by Gather(axis=0) to the names of those Gathers."""
    initializers = {init.name: init for init in model.graph.initializer}
    tables: dict[str, list[str]] = defaultdict(list)
    for node in model.graph.node:
        if node.op_type != "Gather" or node.input[0] not in initializers:
            continue
        init = initializers[node.input[0]]
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) == 2 and axis == 0:
            tables[node.input[0]].append(node.name)
    return dict(tables)


def _is_mask_fill(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> bool:
    if node.op_type != "Where":
        return False
    for name in node.input[1:]:
        value = constants.get(name)
        if value is not None and value.size and np.issubdtype(value.dtype, np.floating):
            magnitude = np.abs(value.astype(np.float64))
            if (~np.isfinite(magnitude)).any() or (magnitude >= SENTINEL_MAGNITUDE).any():
                return True
    return False


def _is_bool_mask_multiply(node: onnx.NodeProto, made_by: dict[str, onnx.NodeProto], types: dict[str, int]) -> bool:
    if node.op_type != "Mul":
        return False
    for name in node.input:
        cast = made_by.get(name)
        if cast is not None and cast.op_type == "Cast" and types.get(cast.input[0]) == onnx.TensorProto.BOOL:
            return True
    return False


def _element_types(model: onnx.ModelProto) -> dict[str, int]:
    types = {}
    for info in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    return types


def masking_path_nodes(model: onnx.ModelProto) -> dict[str, str]:
    """Return {node name: reason} for the masking and softmax path of every attention block.

    Seeds are Softmax nodes, Where nodes that fill with a sentinel constant, and Mul nodes that
    multiply by a float cast of a bool mask. From each seed the walk follows consumers through
    elementwise and layout ops and stops at (and includes) the first MatMul, which applies the
    weights to the values. Needs shape-inferred value_info to see bool masks; run
    `prepare_for_quantization` first.
    """
    constants = constant_values(model)
    made_by = producers(model)
    read_by = consumers(model)
    types = _element_types(model)
    path: dict[str, str] = {}
    pending: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.op_type == "Softmax":
            path[node.name] = "softmax of attention scores"
        elif _is_mask_fill(node, constants):
            path[node.name] = "masked fill of attention scores with a sentinel constant"
        elif _is_bool_mask_multiply(node, made_by, types):
            path[node.name] = "multiplication of attention weights by the padding mask"
        else:
            continue
        pending.append(node)
    visited: set[str] = set()
    while pending:
        node = pending.pop()
        if node.name in visited:
            continue
        visited.add(node.name)
        for output in node.output:
            for reader in read_by.get(output, []):
                if reader.op_type in _MATMUL_OPS:
                    path.setdefault(reader.name, "MatMul that applies attention weights to the values")
                elif reader.op_type in _PATH_OPS:
                    path.setdefault(reader.name, f"{reader.op_type} on the attention weights")
                    pending.append(reader)
    return path


def attention_weight_tensors(model: onnx.ModelProto) -> list[str]:
    """Names of tensors that hold final attention weights: the inputs of the masking path's MatMuls."""
    path = masking_path_nodes(model)
    made_by = producers(model)
    names = []
    for node in model.graph.node:
        if node.name in path and node.op_type in _MATMUL_OPS:
            for name in node.input:
                producer = made_by.get(name)
                if producer is not None and producer.name in path:
                    names.append(name)
    return names
