"""Small helpers over onnx_ir graphs shared by the attention rewrites."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import onnx_ir as ir

__all__ = [
    "constant_array",
    "only_consumer",
    "producer_op",
    "static_shape",
    "add_initializer",
    "add_node_before",
    "op_counts",
]

_name_counter = itertools.count()


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """Return the value's constant data (an initializer or a folded Constant), else None."""
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def only_consumer(value: ir.Value) -> ir.Node | None:
    """Return the single node that reads `value`, or None when it has several readers or is a graph output."""
    if value.is_graph_output():
        return None
    consumers = value.consumers()
    return consumers[0] if len(consumers) == 1 else None


def producer_op(value: ir.Value | None, op_type: str) -> ir.Node | None:
    """Return the node producing `value` when it is a default-domain `op_type` node."""
    if value is None:
        return None
    node = value.producer()
    if node is None or node.op_type != op_type or node.domain not in ("", "ai.onnx"):
        return None
    return node


def static_shape(value: ir.Value) -> list[int | str | None] | None:
    """Return the dims of `value` (ints for static sizes, symbol names, None for unknown)."""
    if value.shape is None:
        return None
    dims: list[int | str | None] = []
    for dim in value.shape:
        if isinstance(dim, int):
            dims.append(dim)
        elif isinstance(dim, ir.SymbolicDim):
            dims.append(dim.value)
        else:
            dims.append(None)
    return dims


def add_initializer(graph: ir.Graph, hint: str, array: np.ndarray) -> ir.Value:
    """Register `array` as a new initializer with a unique name and return its value."""
    name = f"attn_opt_{hint}_{next(_name_counter)}"
    tensor = ir.tensor(np.ascontiguousarray(array), name=name)
    value = ir.Value(name=name, shape=tensor.shape, type=ir.TensorType(tensor.dtype), const_value=tensor)
    graph.register_initializer(value)
    return value


def add_node_before(
    graph: ir.Graph,
    anchor: ir.Node,
    op_type: str,
    inputs: list[ir.Value],
    attributes: dict | None = None,
    hint: str = "",
) -> ir.Value:
    """Insert a one-output node before `anchor` (keeping topological order) and return its output."""
    name = f"attn_opt_{hint or op_type.lower()}_{next(_name_counter)}"
    node = ir.node(op_type, inputs, attributes or {}, name=name)
    node.outputs[0].name = name
    graph.insert_before(anchor, node)
    return node.outputs[0]


def op_counts(graph: ir.Graph) -> dict[str, int]:
    """Count nodes per op type (domain-qualified for non-default domains), sorted by op name."""
    counts = Counter(
        node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}" for node in graph
    )
    return dict(sorted(counts.items()))
