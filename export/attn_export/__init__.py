"""attn-export: export target-attention rankers from PyTorch to verified ONNX artifacts."""

from .errors import AttnExportError, ExportError, FrozenAxisError, VerifyError
from .spec import ExportSpec, TensorSpec, ranker_export_spec

__all__ = [
    "AttnExportError",
    "ExportError",
    "ExportSpec",
    "FrozenAxisError",
    "TensorSpec",
    "VerifyError",
    "ranker_export_spec",
]
__version__ = "0.1.0"
