"""Exceptions of the export pipeline, one class per stage, each with its own CLI exit code."""

from __future__ import annotations

__all__ = [
    "AttnExportError",
    "UsageError",
    "ModelLoadError",
    "ExportError",
    "FrozenAxisError",
    "VerifyError",
    "ArtifactError",
    "OptimizeError",
    "QuantizeError",
    "BenchError",
]


class AttnExportError(Exception):
    """Base class; `exit_code` is what the CLI returns when this stage fails."""

    exit_code = 1
    stage = "attn-export"


class UsageError(AttnExportError):
    exit_code = 2
    stage = "usage"


class ModelLoadError(AttnExportError):
    exit_code = 3
    stage = "load model"


class ExportError(AttnExportError):
    exit_code = 4
    stage = "export"


class FrozenAxisError(ExportError):
    """A declared dynamic axis came out of torch.export as a fixed size."""


class VerifyError(AttnExportError):
    exit_code = 5
    stage = "verify"


class ArtifactError(AttnExportError):
    exit_code = 6
    stage = "artifact"


class OptimizeError(AttnExportError):
    exit_code = 7
    stage = "optimize"


class QuantizeError(AttnExportError):
    exit_code = 8
    stage = "quantize"


class BenchError(AttnExportError):
    exit_code = 9
    stage = "bench"
