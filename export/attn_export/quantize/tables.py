"""Embedding-table compression as an ONNX graph transform: per-row int8 or fp16 tables.

Per-row int8: each row r of a float32 table W [vocab, dim] gets its own symmetric scale
s_r = max|W_r| / 127, so W_r ~= q_r * s_r with q_r = round(W_r / s_r) in [-127, 127]. The table
initializer becomes an int8 [vocab, dim] initializer plus a float32 [vocab, 1] scale initializer,
and each Gather of the table becomes

    Gather(int8 table, ids) -> Cast(float) -> Mul(., Gather(scales, ids))

with standard ONNX ops only. A per-table scale (onnxruntime's Gather quantization) lets one
large-norm row set the step for every row; a per-row scale does not. An all-zero row, such as the
padding row 0, gets scale 1.0 and quantizes to exact zeros.

fp16 tables: the table is stored as float16 and each Gather becomes Gather(fp16) -> Cast(float).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..errors import QuantizeError
from .graph import table_gather_nodes

__all__ = ["TableFormat", "quantize_rows_int8", "compress_tables", "table_nodes"]

logger = logging.getLogger(__name__)

TableFormat = Literal["int8_rows", "fp16"]
INT8_MAX = 127


def quantize_rows_int8(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantize a float table [vocab, dim] to (int8 [vocab, dim], float32 scales [vocab, 1]).

    Symmetric per row: scale = max|row| / 127; all-zero rows get scale 1.0 and stay exactly zero.
    Raises QuantizeError on non-finite values.
    """
    table = np.asarray(table, dtype=np.float32)
    if not np.isfinite(table).all():
        bad_rows = np.flatnonzero(~np.isfinite(table).all(axis=1))[:5].tolist()
        raise QuantizeError(
            f"Embedding table has non-finite values in rows {bad_rows}; expected finite float32. "
            "Fix or retrain the model before quantizing."
        )
    max_abs = np.abs(table).max(axis=1, keepdims=True)  # [vocab, 1]
    scales = np.where(max_abs > 0, max_abs / INT8_MAX, 1.0).astype(np.float32)  # [vocab, 1]
    quantized = np.clip(np.rint(table / scales), -INT8_MAX, INT8_MAX).astype(np.int8)  # [vocab, dim]
    return quantized, scales


def table_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the Gather nodes that a table transform would rewrite, in graph order."""
    return [name for names in table_gather_nodes(model).values() for name in names]


def compress_tables(
    source: Path | onnx.ModelProto,
    target: Path,
    table_format: TableFormat,
    exclude_nodes: Sequence[str] = (),
    only_nodes: Sequence[str] | None = None,
) -> list[str]:
    """Rewrite every Gather of a float32 table to read a compressed table; save to `target`.

    exclude_nodes: Gathers that keep reading the original fp32 table (which then stays in the
      file). only_nodes: if given, rewrite only these Gathers. Returns the rewritten node names.
    Raises QuantizeError when the graph has no float32 table read by a Gather.
    """
    model = onnx.load(str(source)) if isinstance(source, Path) else source
    tables = table_gather_nodes(model)
    if not tables:
        raise QuantizeError(
            "No embedding table found: expected a float32 [vocab, dim] initializer read by Gather "
            "(axis 0). Table schemes apply to id-level models; use int8_dynamic or int8_static."
        )
    excluded = set(exclude_nodes)
    selected = None if only_nodes is None else set(only_nodes)
    initializers = {init.name: init for init in model.graph.initializer}
    rewritten: list[str] = []
    new_nodes: list[onnx.NodeProto] = []
    table_inputs: dict[str, tuple[str, str | None]] = {}
    still_read_as_fp32: set[str] = set()

    for node in model.graph.node:
        table = node.input[0] if node.op_type == "Gather" else None
        chosen = (table in tables and node.name not in excluded
                  and (selected is None or node.name in selected))
        if not chosen:
            if table in tables:
                still_read_as_fp32.add(table)
            new_nodes.append(node)
            continue
        if table not in table_inputs:
            table_inputs[table] = _add_compressed_table(model, initializers[table], table_format)
        new_nodes.extend(_rewrite_gather(node, *table_inputs[table]))
        rewritten.append(node.name)

    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    unused = [name for name in table_inputs if name not in still_read_as_fp32]
    kept = [init for init in model.graph.initializer if init.name not in unused]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    _save_checked(model, target)
    logger.info("Rewrote %d Gather nodes to %s tables (%s)", len(rewritten), table_format, ", ".join(table_inputs))
    return rewritten


def _add_compressed_table(model: onnx.ModelProto, init: onnx.TensorProto, table_format: TableFormat) -> tuple[str, str | None]:
    weights = numpy_helper.to_array(init)  # [vocab, dim]
    if table_format == "int8_rows":
        quantized, scales = quantize_rows_int8(weights)
        q_name, s_name = f"{init.name}_int8", f"{init.name}_row_scale"
        model.graph.initializer.extend([numpy_helper.from_array(quantized, q_name),
                                        numpy_helper.from_array(scales, s_name)])
        return q_name, s_name
    if table_format == "fp16":
        if np.abs(weights).max(initial=0.0) > np.finfo(np.float16).max:
            raise QuantizeError(
                f"Table {init.name!r} has values beyond the float16 maximum 65504 "
                f"(max |w| = {np.abs(weights).max():.3g}); use int8_rows for this table."
            )
        h_name = f"{init.name}_fp16"
        model.graph.initializer.append(numpy_helper.from_array(weights.astype(np.float16), h_name))
        return h_name, None
    raise QuantizeError(f"Unknown table format {table_format!r}; expected 'int8_rows' or 'fp16'.")


def _rewrite_gather(node: onnx.NodeProto, table: str, scales: str | None) -> list[onnx.NodeProto]:
    ids, output, name = node.input[1], node.output[0], node.name
    if scales is None:
        return [
            helper.make_node("Gather", [table, ids], [f"{name}_fp16_rows"], name=f"{name}_fp16", axis=0),
            helper.make_node("Cast", [f"{name}_fp16_rows"], [output], name=f"{name}_to_float",
                             to=onnx.TensorProto.FLOAT),
        ]
    return [
        helper.make_node("Gather", [table, ids], [f"{name}_int8_rows"], name=f"{name}_int8", axis=0),
        helper.make_node("Cast", [f"{name}_int8_rows"], [f"{name}_int8_as_float"], name=f"{name}_to_float",
                         to=onnx.TensorProto.FLOAT),
        helper.make_node("Gather", [scales, ids], [f"{name}_scales"], name=f"{name}_scale", axis=0),
        # [..., dim] * [..., 1]: each gathered row times its own scale.
        helper.make_node("Mul", [f"{name}_int8_as_float", f"{name}_scales"], [output], name=f"{name}_dequantize"),
    ]


def _save_checked(model: onnx.ModelProto, target: Path) -> None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise QuantizeError(f"The table transform produced an invalid ONNX graph: {exc}") from exc
    onnx.save_model(model, str(target))
