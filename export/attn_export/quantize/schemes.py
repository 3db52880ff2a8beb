"""The quantization schemes by name, the table schemes' wrapper, and scheme composition.

A scheme has a `name`, a `description`, `options()` for the manifest, `prepare(prepared,
workdir)` (calibration, default exclusions), `candidate_nodes(model)` (the nodes it quantizes,
which the gate may exclude one by one) and `build(prepared, target, exclude, only)`.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import onnx

from ..errors import QuantizeError
from .dynamic import DynamicInt8
from .static import StaticInt8
from .tables import TableFormat, compress_tables, table_nodes

__all__ = ["QuantScheme", "TableScheme", "ChainedScheme", "SCHEME_NAMES", "make_scheme"]

logger = logging.getLogger(__name__)

SCHEME_NAMES = (
    "int8_dynamic",
    "int8_rows",
    "fp16_tables",
    "int8_dynamic_rows",
    "int8_static",
    "int8_static_percentile",
    "int8_static_entropy",
)


class QuantScheme(Protocol):
    name: str
    default_exclusions: dict[str, str]

    @property
    def description(self) -> str: ...

    def options(self) -> dict[str, Any]: ...

    def prepare(self, prepared: Path, workdir: Path) -> None: ...

    def candidate_nodes(self, model: onnx.ModelProto) -> list[str]: ...

    def build(self, prepared: Path, target: Path, exclude: Sequence[str] = (),
              only: Sequence[str] | None = None) -> None: ...


@dataclass
class TableScheme:
    """`int8_rows` (per-row int8 tables) or `fp16_tables`; candidate nodes are the table Gathers."""

    table_format: TableFormat
    name: str
    default_exclusions: dict[str, str] = field(default_factory=dict)

    @property
    def description(self) -> str:
        if self.table_format == "int8_rows":
            return "embedding tables int8 with one float32 scale per row, dequantized after Gather"
        return "embedding tables stored as float16, cast to float32 after Gather"

    def options(self) -> dict[str, Any]:
        return {"scheme": "tables", "table_format": self.table_format}

    def prepare(self, prepared: Path, workdir: Path) -> None:
        """Nothing to calibrate: the tables are quantized from their own values."""

    def candidate_nodes(self, model: onnx.ModelProto) -> list[str]:
        return table_nodes(model)

    def build(self, prepared: Path, target: Path, exclude: Sequence[str] = (),
              only: Sequence[str] | None = None) -> None:
        compress_tables(prepared, target, self.table_format, exclude_nodes=exclude, only_nodes=only)


@dataclass
class ChainedScheme:
    """Apply `first`, then `second` to its output; each gets the exclusions among its own nodes."""

    first: Any
    second: Any
    name: str
    default_exclusions: dict[str, str] = field(default_factory=dict)

    @property
    def description(self) -> str:
        return f"{self.first.description}; then {self.second.description}"

    def options(self) -> dict[str, Any]:
        return {"scheme": "chain", "steps": [self.first.options(), self.second.options()]}

    def prepare(self, prepared: Path, workdir: Path) -> None:
        self.first.prepare(prepared, workdir)
        self.second.prepare(prepared, workdir)
        self.default_exclusions = {**self.first.default_exclusions, **self.second.default_exclusions}

    def candidate_nodes(self, model: onnx.ModelProto) -> list[str]:
        return self.first.candidate_nodes(model) + self.second.candidate_nodes(model)

    def build(self, prepared: Path, target: Path, exclude: Sequence[str] = (),
              only: Sequence[str] | None = None) -> None:
        model = onnx.load(str(prepared), load_external_data=False)
        first_nodes = set(self.first.candidate_nodes(model))
        second_nodes = set(self.second.candidate_nodes(model))
        first_only = None if only is None else [n for n in only if n in first_nodes]
        second_only = None if only is None else [n for n in only if n in second_nodes]
        with tempfile.TemporaryDirectory(prefix="attn-quant-chain-") as scratch:
            middle = Path(scratch) / "first.onnx"
            if first_only == []:
                middle = prepared
            else:
                self.first.build(prepared, middle, [n for n in exclude if n in first_nodes], first_only)
            if second_only == []:
                onnx.save_model(onnx.load(str(middle)), str(target))
            else:
                self.second.build(middle, target, [n for n in exclude if n in second_nodes], second_only)


def make_scheme(
    name: str,
    calibration_feeds: list[dict[str, np.ndarray]] | None = None,
    **static_options: Any,
) -> QuantScheme:
    """Build the scheme `name` (one of SCHEME_NAMES); static schemes need `calibration_feeds`.

    Extra keyword arguments go to StaticInt8 (quantize_masking_path, check_ranges, range_overrides).
    """
    if name == "int8_dynamic":
        return DynamicInt8()
    if name == "int8_rows":
        return TableScheme("int8_rows", name)
    if name == "fp16_tables":
        return TableScheme("fp16", name)
    if name == "int8_dynamic_rows":
        return ChainedScheme(DynamicInt8(), TableScheme("int8_rows", "int8_rows"), name)
    if name.startswith("int8_static"):
        method = {"int8_static": "minmax", "int8_static_percentile": "percentile",
                  "int8_static_entropy": "entropy"}.get(name)
        if method is None:
            raise QuantizeError(f"Unknown scheme {name!r}; expected one of {', '.join(SCHEME_NAMES)}.")
        if not calibration_feeds:
            raise QuantizeError(
                f"Scheme {name!r} needs calibration requests, but the artifact has no data source "
                "(custom model?). Use int8_dynamic or a table scheme instead."
            )
        return StaticInt8(feeds=calibration_feeds, method=method, name=name, **static_options)
    raise QuantizeError(f"Unknown scheme {name!r}; expected one of {', '.join(SCHEME_NAMES)}.")
