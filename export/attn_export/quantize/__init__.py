"""Quantization of ONNX artifacts: dynamic int8, per-row int8 and fp16 tables, static QDQ int8.

One module per concern: `prepare` (ORT pre-processing), `graph` (masking path, tables,
matmuls), `tables`, `dynamic`, `calibration`, `static`, `schemes` (names and chaining),
`timing` and `run` (build, gate, time and record variants in an artifact).
"""

from .calibration import CALIBRATION_METHODS, calibrate, calibration_feeds, check_ranges
from .dynamic import DynamicInt8
from .graph import attention_weight_tensors, masking_path_nodes
from .prepare import prepare_for_quantization
from .run import AUTO_SCHEMES, QuantizeOptions, QuantizeSummary, VariantOutcome, quantize_artifact
from .schemes import SCHEME_NAMES, ChainedScheme, TableScheme, make_scheme
from .static import StaticInt8
from .tables import compress_tables, quantize_rows_int8

__all__ = [
    "AUTO_SCHEMES",
    "CALIBRATION_METHODS",
    "ChainedScheme",
    "DynamicInt8",
    "QuantizeOptions",
    "QuantizeSummary",
    "SCHEME_NAMES",
    "StaticInt8",
    "TableScheme",
    "VariantOutcome",
    "attention_weight_tensors",
    "calibrate",
    "calibration_feeds",
    "check_ranges",
    "compress_tables",
    "make_scheme",
    "masking_path_nodes",
    "prepare_for_quantization",
    "quantize_artifact",
    "quantize_rows_int8",
]
