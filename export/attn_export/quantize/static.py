"""Static int8 quantization in QDQ format with ranges calibrated on real requests.

Weights of MatMul/Gemm are int8 per channel, activations uint8 with calibrated ranges
(MinMax, Percentile or Entropy). By default the masking and softmax path of every attention
block stays fp32 (see `graph.masking_path_nodes`); `quantize_masking_path=True` includes it and
exists to demonstrate why it is excluded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import onnx

from ..errors import QuantizeError
from .calibration import CALIBRATION_METHODS, calibrate, check_ranges
from .graph import masking_path_nodes, matmul_nodes

__all__ = ["StaticInt8", "MASKING_PATH_OP_TYPES"]

logger = logging.getLogger(__name__)

MASKING_PATH_OP_TYPES = ("Where", "Softmax", "Mul")


@dataclass
class StaticInt8:
    """The `int8_static*` schemes: QDQ int8 with calibration on `feeds`.

    range_overrides: {tensor name: (rmin, rmax)} replaces calibrated ranges (ORT
      TensorQuantOverrides), for manual fixes or to build a deliberately coarse variant.
    check_ranges: reject non-finite or sentinel-dominated calibration ranges (QuantizeError).
    """

    feeds: list[dict[str, np.ndarray]]
    method: str = "minmax"
    name: str = "int8_static"
    per_channel: bool = True
    quantize_masking_path: bool = False
    check_ranges: bool = True
    range_overrides: dict[str, tuple[float, float]] = field(default_factory=dict)
    default_exclusions: dict[str, str] = field(default_factory=dict)
    calibration_cache: Path | None = None
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise QuantizeError(f"Unknown calibration method {self.method!r}; expected one of {CALIBRATION_METHODS}.")

    @property
    def op_types(self) -> tuple[str, ...]:
        return ("MatMul", "Gemm", *MASKING_PATH_OP_TYPES) if self.quantize_masking_path else ("MatMul", "Gemm")

    @property
    def description(self) -> str:
        path = "masking path quantized" if self.quantize_masking_path else "masking/softmax path fp32"
        return f"static QDQ int8 MatMul/Gemm, uint8 activations calibrated with {self.method}, {path}"

    def options(self) -> dict[str, Any]:
        return {"scheme": "static_qdq", "calibration": self.method, "calibration_batches": len(self.feeds),
                "calibration_requests": int(sum(len(f["history_lengths"]) for f in self.feeds)),
                "per_channel": self.per_channel, "op_types": list(self.op_types),
                "weight_type": "int8", "activation_type": "uint8",
                "quantize_masking_path": self.quantize_masking_path,
                "range_overrides": {k: list(v) for k, v in self.range_overrides.items()}}

    def prepare(self, prepared: Path, workdir: Path) -> None:
        """Calibrate once, check the ranges, and set the default exclusions (the masking path)."""
        model = onnx.load(str(prepared))
        if not self.quantize_masking_path:
            self.default_exclusions = {name: f"kept fp32: {reason}"
                                       for name, reason in masking_path_nodes(model).items()}
        self.calibration_cache, self.ranges = calibrate(prepared, self.feeds, self.method, self.op_types,
                                                        workdir / self.name)
        if self.check_ranges:
            checked = {k: v for k, v in self.ranges.items() if k not in self.range_overrides}
            check_ranges(checked)

    def candidate_nodes(self, model: onnx.ModelProto) -> list[str]:
        """MatMul/Gemm nodes, plus the masking-path nodes when those are quantized too."""
        names = matmul_nodes(model)
        if self.quantize_masking_path:
            names += [n.name for n in model.graph.node if n.op_type in MASKING_PATH_OP_TYPES]
        return names

    def build(self, prepared: Path, target: Path, exclude: Sequence[str] = (),
              only: Sequence[str] | None = None) -> None:
        """Quantize `prepared` into `target` with the cached calibration ranges.

        The default exclusions (the masking path) always apply, in addition to `exclude`.
        """
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

        from .calibration import _method

        if self.calibration_cache is None:
            raise QuantizeError(f"{self.name}: build() called before prepare(); calibrate first.")
        if only is not None and not only:
            raise QuantizeError(f"{self.name}.build: `only` is an empty list; pass None to quantize every candidate.")
        overrides = {name: [{"rmin": np.float32(low), "rmax": np.float32(high)}]
                     for name, (low, high) in self.range_overrides.items()}
        try:
            quantize_static(
                str(prepared), str(target),
                calibration_data_reader=None,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(self.op_types),
                per_channel=self.per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=list(only) if only else None,
                nodes_to_exclude=sorted({*self.default_exclusions, *exclude}),
                calibrate_method=_method(self.method),
                calibration_cache_path=str(self.calibration_cache),
                extra_options={"TensorQuantOverrides": overrides} if overrides else {},
            )
        except Exception as exc:  # onnxruntime's quantizer raises many exception types
            raise QuantizeError(f"onnxruntime quantize_static failed for {self.name}: {type(exc).__name__}: {exc}") from exc
        logger.info("Built %s -> %s (excluded %d nodes)", self.name, target, len(exclude))
