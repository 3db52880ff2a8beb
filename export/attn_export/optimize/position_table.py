"""Rewrite: compute sinusoidal position encodings once per distinct position, then gather them.

The exported encoding evaluates `Concat(Sin(p f), Cos(p f))` on [batch, seq_len, dim / 2] angles,
so a batch of 32 users runs Sin and Cos on 32 copies of the same positions. Positions are
non-negative integers (the export clamps them at 0), so the rewrite builds a table for
0..max(p), [max(p) + 1, dim], with the same Cast, Mul, Sin and Cos, and gathers rows by p.
Each row is computed from the same float32 angle as before, so the encoding is unchanged up to
the kernel's rounding, and it stays valid for any seq_len and any position values.

The rewrite applies only where p comes from a Clip with a constant lower bound of at least 0,
because Gather would read negative indices from the end of the table.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from .graph_tools import add_initializer, add_node_before, constant_array, producer_op

__all__ = ["tabulate_sinusoidal_positions"]

logger = logging.getLogger(__name__)


def _non_negative_integers(value: ir.Value) -> bool:
    """True when `value` is the output of an integer Clip whose constant minimum is at least 0."""
    clip = producer_op(value, "Clip")
    if clip is None or len(clip.inputs) < 2:
        return False
    low = constant_array(clip.inputs[1])
    return low is not None and low.size == 1 and np.issubdtype(low.dtype, np.integer) and int(low.reshape(())) >= 0


def _angle_source(concat: ir.Node) -> tuple[ir.Value, ir.Node, ir.Value] | None:
    """Return (positions, Cast node, frequencies) for `Concat(Sin(a), Cos(a))` with a = Unsqueeze(Cast(p), -1) * f."""
    if len(concat.inputs) != 2:
        return None
    sin, cos = producer_op(concat.inputs[0], "Sin"), producer_op(concat.inputs[1], "Cos")
    if sin is None or cos is None or sin.inputs[0] is not cos.inputs[0]:
        return None
    mul = producer_op(sin.inputs[0], "Mul")
    if mul is None:
        return None
    for angle_index in (0, 1):
        frequencies = mul.inputs[1 - angle_index]
        frequency_array = constant_array(frequencies)
        unsqueeze = producer_op(mul.inputs[angle_index], "Unsqueeze")
        if frequency_array is None or frequency_array.ndim != 1 or unsqueeze is None:
            continue
        axes = constant_array(unsqueeze.inputs[1]) if len(unsqueeze.inputs) > 1 else None
        cast = producer_op(unsqueeze.inputs[0], "Cast")
        rank = len(cast.inputs[0].shape) if cast is not None and cast.inputs[0].shape is not None else None
        if axes is None or axes.size != 1 or rank is None or int(axes.reshape(())) not in (-1, rank):
            continue
        if _non_negative_integers(cast.inputs[0]):
            return cast.inputs[0], cast, frequencies
    return None


def _concat_on_last_axis(concat: ir.Node) -> bool:
    axis_attr = concat.attributes.get("axis")
    shape = concat.outputs[0].shape
    if axis_attr is None:
        return False
    axis = axis_attr.as_int()
    return axis == -1 or (shape is not None and axis == len(shape) - 1)


def tabulate_sinusoidal_positions(graph: ir.Graph) -> int:
    """Replace each per-slot sinusoidal encoding with a table lookup; return the number replaced."""
    replaced = 0
    for node in list(graph):
        if node.op_type != "Concat" or node.domain not in ("", "ai.onnx") or not _concat_on_last_axis(node):
            continue
        source = _angle_source(node)
        if source is None:
            continue
        positions, cast, frequencies = source

        top = add_node_before(graph, node, "ReduceMax", [positions], {"keepdims": 0}, hint="max_position")  # []
        unit_step = add_initializer(graph, "unit_step", np.asarray(1, dtype=np.int64))
        zero = add_initializer(graph, "zero_position", np.asarray(0, dtype=np.int64))
        count = add_node_before(graph, node, "Add", [top, unit_step], hint="table_rows")
        rows = add_node_before(graph, node, "Range", [zero, count, unit_step], hint="table_positions")  # [rows]
        rows_float = add_node_before(graph, node, "Cast", [rows], {"to": cast.attributes["to"].as_int()},
                                     hint="table_positions_float")
        last_axis = add_initializer(graph, "table_axis", np.asarray([-1], dtype=np.int64))
        column = add_node_before(graph, node, "Unsqueeze", [rows_float, last_axis], hint="table_column")  # [rows, 1]
        # A MatMul with an inner size of 1 computes each p * f as one rounded product, exactly as
        # the Mul did, but without the Mul's slow innermost-axis broadcast.
        frequency_row = add_initializer(graph, "frequency_row", constant_array(frequencies).reshape(1, -1))
        angles = add_node_before(graph, node, "MatMul", [column, frequency_row], hint="table_angles")  # [rows, dim / 2]
        sines = add_node_before(graph, node, "Sin", [angles], hint="table_sin")
        cosines = add_node_before(graph, node, "Cos", [angles], hint="table_cos")
        table = add_node_before(graph, node, "Concat", [sines, cosines], {"axis": -1}, hint="position_table")  # [rows, dim]
        encoding = add_node_before(graph, node, "Gather", [table, positions], {"axis": 0},
                                   hint="position_encoding")  # [batch, seq_len, dim]
        node.outputs[0].replace_all_uses_with(encoding)
        graph.remove(node, safe=True)
        replaced += 1
        logger.debug("Tabulated the sinusoidal encoding of %s", positions.name)
    return replaced
