"""Dynamic int8 quantization of weight matrix products with onnxruntime.quantize_dynamic.

Weights of MatMul/Gemm nodes with a constant B are stored as int8, per output channel;
activations are quantized to uint8 at run time from each batch's own min/max
(DynamicQuantizeLinear), so no calibration data is needed.

NOTE: because the activation range is taken over the whole batch tensor, a row's scores can
move slightly with the other rows of the batch and with ids in padded slots. The gate measures
the effect on rankings; bit-exact padding invariance holds only for the fp32 variants.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import onnx

from ..errors import QuantizeError
from .graph import weight_matmul_nodes

__all__ = ["DynamicInt8"]

logger = logging.getLogger(__name__)


@dataclass
class DynamicInt8:
    """The `int8_dynamic` scheme: int8 weights per channel, uint8 activations quantized per batch."""

    name: str = "int8_dynamic"
    per_channel: bool = True
    op_types: tuple[str, ...] = ("MatMul", "Gemm")
    default_exclusions: dict[str, str] = field(default_factory=dict)

    @property
    def description(self) -> str:
        channel = "per-channel" if self.per_channel else "per-tensor"
        return f"dynamic int8 {'/'.join(self.op_types)} weights ({channel}), uint8 activations per batch"

    def options(self) -> dict[str, Any]:
        return {"scheme": "dynamic", "per_channel": self.per_channel, "op_types": list(self.op_types),
                "weight_type": "int8", "activation_type": "uint8 (per batch)"}

    def prepare(self, prepared: Path, workdir: Path) -> None:
        """Nothing to calibrate: dynamic quantization takes ranges at run time."""

    def candidate_nodes(self, model: onnx.ModelProto) -> list[str]:
        """MatMul/Gemm nodes with a constant weight matrix (the ones quantize_dynamic rewrites)."""
        return weight_matmul_nodes(model)

    def build(self, prepared: Path, target: Path, exclude: Sequence[str] = (),
              only: Sequence[str] | None = None) -> None:
        """Quantize `prepared` into `target`, skipping `exclude`, or quantizing only `only`."""
        from onnxruntime.quantization import QuantType, quantize_dynamic

        if only is not None and not only:
            raise QuantizeError("DynamicInt8.build: `only` is an empty list; pass None to quantize every candidate.")
        try:
            quantize_dynamic(
                str(prepared), str(target),
                op_types_to_quantize=list(self.op_types),
                per_channel=self.per_channel,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=list(only) if only else None,
                nodes_to_exclude=list(exclude),
                extra_options={"MatMulConstBOnly": True},
            )
        except Exception as exc:  # onnxruntime's quantizer raises many exception types
            raise QuantizeError(
                f"onnxruntime quantize_dynamic failed for {self.name}: {type(exc).__name__}: {exc}"
            ) from exc
        logger.info("Built %s -> %s (excluded %d nodes)", self.name, target, len(exclude))
