"""Build the manifest of a freshly exported artifact."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from .artifact import FORMAT_VERSION, utc_now
from .spec import ExportSpec

__all__ = ["producer_versions", "new_manifest"]


def producer_versions() -> dict[str, str]:
    versions = {}
    for package, dist in [("attn_export", "attn-export"), ("torch", "torch"), ("onnx", "onnx"),
                          ("onnxscript", "onnxscript"), ("onnxruntime", "onnxruntime")]:
        try:
            versions[package] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def new_manifest(
    spec: ExportSpec,
    model_kind: str,
    model_config: dict[str, Any] | None,
    opset: int,
    source: dict[str, Any],
    data: dict[str, Any] | None,
) -> dict[str, Any]:
    """Manifest fields known at export time; variants and file checksums are added later."""
    return {
        "format_version": FORMAT_VERSION,
        "created_utc": utc_now(),
        "model": {"kind": model_kind, "config": model_config},
        "inputs": [t.to_dict() for t in spec.inputs],
        "outputs": [t.to_dict() for t in spec.outputs],
        "dynamic_axes": spec.dynamic_axes,
        "id_inputs": dict(spec.id_inputs),
        "vocab_size": spec.vocab_size,
        "max_seq_len": spec.max_seq_len,
        "padding_id": spec.padding_id,
        "opset": opset,
        "tolerances": {"atol": spec.atol, "rtol": spec.rtol},
        "producer": producer_versions(),
        "source": source,
        "data": data,
        "variants": {},
        "default_variant": None,
        "files": {},
    }
