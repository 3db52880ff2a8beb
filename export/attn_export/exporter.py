"""PyTorch -> ONNX with torch.onnx.export(dynamo=True), then structural checks of the graph.

Default opset: 18. The target attention here is written with MatMul, Where and Softmax, so it
needs nothing newer, and opset 18 is served by every onnxruntime release since 1.14 and handled
by onnxruntime's quantization tools. We deliberately avoid the opset-23 `Attention` op: its
bool-mask form at lower opsets returns the mean over padding for an all-padding row, a float
-inf mask returns NaN, and onnxruntime 1.32 rejects a [batch, 1, 1, seq_len] mask broadcast over
several candidates. Our own masking keeps empty histories at a zero interest vector.
"""

from __future__ import annotations

import contextlib
import io
import re
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch.export import Dim

from .errors import ExportError, FrozenAxisError
from .spec import ExportSpec

__all__ = ["DEFAULT_OPSET", "EXTERNAL_DATA_THRESHOLD_BYTES", "export_onnx", "check_dynamic_axes"]

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 18
# Weights above this size go to an external-data file next to the graph, so the .onnx file
# stays small enough to parse and diff. Below it, one self-contained file is simpler to ship.
EXTERNAL_DATA_THRESHOLD_BYTES = 64 * 1024 * 1024


def _dynamic_shapes(spec: ExportSpec) -> tuple[dict[int, Dim], ...]:
    """Dynamic shapes by input position, so a model's own argument names do not matter."""
    dims = {name: Dim(name) for name in spec.dynamic_axes}
    return tuple(
        {i: dims[d] for i, d in enumerate(tensor.shape) if isinstance(d, str)} for tensor in spec.inputs
    )


def _summarize_export_failure(exc: Exception) -> str:
    """Keep the part of a torch.onnx failure a user can act on: the exception summary."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1]
        text = text.split("(Refer to the full stack trace", 1)[0]
    return text.strip()


def export_onnx(
    model: torch.nn.Module,
    spec: ExportSpec,
    path: str | Path,
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
) -> onnx.ModelProto:
    """Export `model` to `path` and return the checked ONNX model.

    Raises ExportError when torch.export or the ONNX translation fails, and FrozenAxisError when
    a declared dynamic axis came out static.
    """
    path = Path(path)
    sizes = spec.sample_sizes
    if any(sizes.get(axis, 0) < 2 for axis in spec.dynamic_axes):
        raise ExportError(
            f"Sample sizes {sizes} must be at least 2 on every dynamic axis {spec.dynamic_axes}: "
            "torch.export specializes an axis whose sample size is 1."
        )
    feeds = spec.sample_inputs(sizes, np.random.default_rng(seed))
    args = tuple(torch.from_numpy(np.ascontiguousarray(feeds[name])) for name in spec.input_names)
    model = model.eval()
    logger.info("Exporting with torch.onnx.export(dynamo=True), opset %d, sample sizes %s", opset, sizes)
    log_stream = io.StringIO()
    # torch.onnx logs its steps and optional-dependency notes (torchvision ops) at WARNING;
    # they are noise for this exporter, so they are kept out of the user's stderr.
    torch_onnx_logger = logging.getLogger("torch.onnx")
    previous_level = torch_onnx_logger.level
    torch_onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(log_stream):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model,
                args,
                input_names=spec.input_names,
                output_names=spec.output_names,
                dynamic_shapes=_dynamic_shapes(spec),
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # torch.export raises many exception types; all mean the same here
        logger.debug("torch.onnx.export output:\n%s", log_stream.getvalue())
        raise ExportError(
            f"torch.onnx.export failed ({type(exc).__name__}): {_summarize_export_failure(exc)}\n"
            "Run with --verbose for the exporter log."
        ) from exc
    finally:
        torch_onnx_logger.setLevel(previous_level)
    logger.debug("torch.onnx.export output:\n%s", log_stream.getvalue())

    proto = program.model_proto
    check_dynamic_axes(proto, spec)
    _save(proto, path)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker rejected {path.name}: {exc}") from exc
    return proto


def _save(proto: onnx.ModelProto, path: Path) -> None:
    size = proto.ByteSize()
    if size > EXTERNAL_DATA_THRESHOLD_BYTES:
        data_name = path.name + ".data"
        logger.info("Model is %.1f MB; writing weights to external data %s", size / 2**20, data_name)
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
    else:
        onnx.save_model(proto, str(path))


def _graph_dims(value: onnx.ValueInfoProto) -> list[str | int | None]:
    dims: list[str | int | None] = []
    for dim in value.type.tensor_type.shape.dim:
        if dim.HasField("dim_param"):
            dims.append(dim.dim_param)
        elif dim.HasField("dim_value"):
            dims.append(dim.dim_value)
        else:
            dims.append(None)
    return dims


def check_dynamic_axes(proto: onnx.ModelProto, spec: ExportSpec) -> None:
    """Check every declared axis is symbolic, with its declared name, on every input and output.

    Raises FrozenAxisError naming the tensor, the axis and the fixed size it got.
    """
    graph_values = {v.name: v for v in (*proto.graph.input, *proto.graph.output)}
    problems: list[str] = []
    for tensor in (*spec.inputs, *spec.outputs):
        value = graph_values.get(tensor.name)
        if value is None:
            problems.append(f"{tensor.name}: missing from the exported graph (found {sorted(graph_values)})")
            continue
        dims = _graph_dims(value)
        if len(dims) != len(tensor.shape):
            problems.append(f"{tensor.name}: rank {len(dims)} in the graph, expected {len(tensor.shape)}")
            continue
        for index, (declared, got) in enumerate(zip(tensor.shape, dims)):
            if isinstance(declared, str) and not isinstance(got, str):
                problems.append(
                    f"{tensor.name} axis {index} '{declared}' is frozen to {got}; "
                    "the model code probably specializes on that size (a Python int from .shape "
                    "used in arithmetic, or a sample size of 1)"
                )
            elif isinstance(declared, str) and got != declared:
                problems.append(f"{tensor.name} axis {index}: expected symbol '{declared}', got '{got}'")
            elif isinstance(declared, int) and got != declared:
                problems.append(f"{tensor.name} axis {index}: expected static size {declared}, got {got}")
    if problems:
        raise FrozenAxisError("Exported graph has wrong axes:\n  - " + "\n  - ".join(problems))
