"""Parse and validate an artifact's manifest.json into typed, read-only records.

numpy and onnxruntime only; services install this without torch.

The manifest format (version 1) is written by `attn-export`. Parsing checks the
structure and the cross-references between keys. Checking the files themselves
(existence, sha256) is the job of `attn_runtime.artifact`.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from attn_runtime.errors import ArtifactError

__all__ = [
    "MANIFEST_NAME",
    "SUPPORTED_FORMAT_VERSIONS",
    "TensorSpec",
    "VariantSpec",
    "FileEntry",
    "Manifest",
    "load_manifest",
    "parse_manifest",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
SUPPORTED_FORMAT_VERSIONS = (1,)

_REQUIRED_KEYS = (
    "format_version",
    "inputs",
    "outputs",
    "id_inputs",
    "vocab_size",
    "max_seq_len",
    "padding_id",
    "variants",
    "default_variant",
    "files",
)
_SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_FIX = "re-export the artifact with attn-export"


@dataclass(frozen=True)
class TensorSpec:
    """Declared name, dtype and shape of one model input or output.

    Each `shape` entry is a symbolic axis name (str, e.g. "batch") or a static size (int).
    """

    name: str
    dtype: np.dtype
    shape: tuple[str | int, ...]


@dataclass(frozen=True)
class VariantSpec:
    """One exported model variant (fp32, optimized, int8, ...) and its parity-gate result.

    `files` lists every artifact file the variant needs: its model file first, then the
    other files of its manifest entry (such as its gate report), then `<model_file>.data`
    external weights when the top-level files list them.
    """

    name: str
    model_file: str
    files: tuple[str, ...]
    passed: bool
    description: str
    gate: Mapping[str, Any]


@dataclass(frozen=True)
class FileEntry:
    """Expected sha256 (lowercase hex) and size in bytes of one artifact file."""

    sha256: str
    size_bytes: int | None


@dataclass(frozen=True)
class Manifest:
    """Validated contents of manifest.json.

    `raw` keeps the whole parsed JSON, including informational keys such as
    `producer`, `model` and `created_utc` that the runtime does not interpret.
    """

    format_version: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    id_inputs: Mapping[str, str | None]
    vocab_size: int | None
    max_seq_len: int | None
    padding_id: int
    variants: Mapping[str, VariantSpec]
    default_variant: str
    files: Mapping[str, FileEntry]
    raw: Mapping[str, Any] = field(repr=False)

    def input_spec(self, name: str) -> TensorSpec:
        """Return the spec of input `name`, or raise KeyError if the model has no such input."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def lengths_inputs(self) -> frozenset[str]:
        """Names of the inputs that contain per-row lengths of an id input."""
        return frozenset(lengths for lengths in self.id_inputs.values() if lengths is not None)


def load_manifest(artifact_dir: str | Path) -> Manifest:
    """Read and validate `<artifact_dir>/manifest.json`.

    Raises:
        ArtifactError: the directory or manifest is missing, the JSON is invalid, the
            format_version is unsupported, or a key is missing or has the wrong type.
    """
    directory = Path(artifact_dir)
    if not directory.is_dir():
        raise ArtifactError(
            f"Artifact directory {str(directory)!r} was not found or is not a directory. "
            "Pass the directory that attn-export wrote (it contains manifest.json)."
        )
    manifest_path = directory / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ArtifactError(
            f"{MANIFEST_NAME} is missing in artifact directory {str(directory)!r}. "
            f"Pass the directory that attn-export wrote, or {_FIX}."
        )

    try:
        document = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ArtifactError(
            f"{manifest_path} is not valid JSON ({error}). Restore the file or {_FIX}."
        ) from error

    manifest = parse_manifest(document, source=str(manifest_path))
    logger.debug("Loaded manifest %s with variants %s", manifest_path, sorted(manifest.variants))
    return manifest


def parse_manifest(document: Any, *, source: str = MANIFEST_NAME) -> Manifest:
    """Validate an already-parsed manifest document. `source` names it in error messages.

    Raises:
        ArtifactError: a required key is missing, has the wrong type, or refers to an
            input, variant or file that the manifest does not declare.
    """
    if not isinstance(document, dict):
        raise _invalid(source, "top level", "a JSON object", type(document).__name__)

    missing = [key for key in _REQUIRED_KEYS if key not in document]
    if missing:
        raise ArtifactError(
            f"{source} is missing required key(s) {missing}. "
            f"This runtime reads manifest format_version {list(SUPPORTED_FORMAT_VERSIONS)}. Re-export the artifact with attn-export."
        )

    format_version = document["format_version"]
    if not _is_int(format_version) or format_version not in SUPPORTED_FORMAT_VERSIONS:
        raise ArtifactError(
            f"{source} has format_version {format_version!r}, but this runtime reads only "
            f"{list(SUPPORTED_FORMAT_VERSIONS)}. Upgrade attn-export-runtime to a version that "
            "reads it, or re-export the artifact with a matching attn-export."
        )

    inputs = _parse_tensor_specs(document["inputs"], "inputs", source)
    outputs = _parse_tensor_specs(document["outputs"], "outputs", source)
    vocab_size = _parse_optional_positive_int(document["vocab_size"], "vocab_size", source)
    max_seq_len = _parse_optional_positive_int(document["max_seq_len"], "max_seq_len", source)
    padding_id = _parse_padding_id(document["padding_id"], vocab_size, source)
    id_inputs = _parse_id_inputs(document["id_inputs"], inputs, source)
    files = _parse_files(document["files"], source)
    variants = _parse_variants(document["variants"], files, source)

    default_variant = document["default_variant"]
    if not isinstance(default_variant, str) or default_variant not in variants:
        raise _invalid(
            source, "default_variant", f"one of the variant names {sorted(variants)}", repr(default_variant)
        )

    return Manifest(
        format_version=format_version,
        inputs=inputs,
        outputs=outputs,
        id_inputs=MappingProxyType(id_inputs),
        vocab_size=vocab_size,
        max_seq_len=max_seq_len,
        padding_id=padding_id,
        variants=MappingProxyType(variants),
        default_variant=default_variant,
        files=MappingProxyType(files),
        raw=MappingProxyType(document),
    )


def _invalid(source: str, key: str, expected: str, received: str) -> ArtifactError:
    return ArtifactError(
        f"{source}: {key} is invalid: expected {expected}, found {received}. "
        "Re-export the artifact with attn-export."
    )


def _is_int(value: Any) -> bool:
    # JSON true/false parse to bool, which is a subclass of int in Python.
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_tensor_specs(entries: Any, key: str, source: str) -> tuple[TensorSpec, ...]:
    if not isinstance(entries, list) or not entries:
        raise _invalid(source, key, "a non-empty list of {name, dtype, shape} objects", repr(entries))

    specs: list[TensorSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{key}[{index}]"
        if not isinstance(entry, dict) or not {"name", "dtype", "shape"} <= entry.keys():
            raise _invalid(source, where, "an object with keys name, dtype and shape", repr(entry))

        name = entry["name"]
        if not isinstance(name, str) or not name or name in seen:
            raise _invalid(source, f"{where}.name", "a unique non-empty string", repr(name))
        seen.add(name)

        try:
            dtype = np.dtype(entry["dtype"])
        except TypeError as error:
            raise _invalid(source, f"{where}.dtype", "a numpy dtype name such as 'int64'", repr(entry["dtype"])) from error
        if dtype.kind not in "biuf":
            raise _invalid(source, f"{where}.dtype", "a numeric or bool dtype", repr(entry["dtype"]))

        shape = entry["shape"]
        valid_shape = isinstance(shape, list) and all(
            (isinstance(dim, str) and dim) or (_is_int(dim) and dim >= 0) for dim in shape
        )
        if not valid_shape:
            raise _invalid(source, f"{where}.shape", "a list of axis names or non-negative ints", repr(shape))

        specs.append(TensorSpec(name=name, dtype=dtype, shape=tuple(shape)))
    return tuple(specs)


def _parse_optional_positive_int(value: Any, key: str, source: str) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or value <= 0:
        raise _invalid(source, key, "a positive integer or null", repr(value))
    return value


def _parse_padding_id(value: Any, vocab_size: int | None, source: str) -> int:
    if not _is_int(value) or value < 0:
        raise _invalid(source, "padding_id", "a non-negative integer", repr(value))
    if vocab_size is not None and value >= vocab_size:
        raise _invalid(source, "padding_id", f"an id below vocab_size {vocab_size}", repr(value))
    return value


def _parse_id_inputs(value: Any, inputs: tuple[TensorSpec, ...], source: str) -> dict[str, str | None]:
    if not isinstance(value, dict):
        raise _invalid(source, "id_inputs", "an object mapping id input names to a lengths input name or null", repr(value))

    by_name = {spec.name: spec for spec in inputs}
    id_inputs: dict[str, str | None] = {}
    for id_name, lengths_name in value.items():
        id_spec = by_name.get(id_name)
        if id_spec is None or id_spec.dtype.kind not in "iu" or not id_spec.shape:
            raise _invalid(source, f"id_inputs key {id_name!r}", "the name of an integer input with rank >= 1", repr(id_name))
        if lengths_name is not None:
            lengths_spec = by_name.get(lengths_name) if isinstance(lengths_name, str) else None
            if lengths_spec is None or lengths_spec.dtype.kind not in "iu":
                raise _invalid(source, f"id_inputs[{id_name!r}]", "null or the name of an integer input", repr(lengths_name))
            if len(lengths_spec.shape) != len(id_spec.shape) - 1:
                raise _invalid(
                    source,
                    f"id_inputs[{id_name!r}]",
                    f"a lengths input of rank {len(id_spec.shape) - 1} (one less than {id_name!r})",
                    f"{lengths_name!r} with rank {len(lengths_spec.shape)}",
                )
        id_inputs[id_name] = lengths_name
    return id_inputs


def _validate_relative_path(path: Any, key: str, source: str) -> str:
    if not isinstance(path, str) or not path:
        raise _invalid(source, key, "a non-empty relative path", repr(path))
    pure = PurePosixPath(path)
    # A path that leaves the artifact directory would let a manifest point at any file on disk.
    if pure.is_absolute() or ".." in pure.parts or "\\" in path or path == MANIFEST_NAME:
        raise _invalid(source, key, "a relative path inside the artifact directory (no '..', not manifest.json)", repr(path))
    return path


def _parse_files(value: Any, source: str) -> dict[str, FileEntry]:
    if not isinstance(value, dict):
        raise _invalid(source, "files", "an object mapping relative paths to {sha256, bytes}", repr(value))

    files: dict[str, FileEntry] = {}
    for path, entry in value.items():
        _validate_relative_path(path, f"files key {path!r}", source)
        if not isinstance(entry, dict):
            raise _invalid(source, f"files[{path!r}]", "an object with key sha256", repr(entry))
        sha256 = entry.get("sha256")
        if not isinstance(sha256, str) or not _SHA256_PATTERN.match(sha256.lower()):
            raise _invalid(source, f"files[{path!r}].sha256", "64 hex digits", repr(sha256))
        size_bytes = entry.get("bytes")
        if size_bytes is not None and (not _is_int(size_bytes) or size_bytes < 0):
            raise _invalid(source, f"files[{path!r}].bytes", "a non-negative integer", repr(size_bytes))
        files[path] = FileEntry(sha256=sha256.lower(), size_bytes=size_bytes)
    return files


def _parse_variants(value: Any, files: Mapping[str, FileEntry], source: str) -> dict[str, VariantSpec]:
    if not isinstance(value, dict) or not value:
        raise _invalid(source, "variants", "a non-empty object mapping variant names to variant entries", repr(value))

    variants: dict[str, VariantSpec] = {}
    for name, entry in value.items():
        where = f"variants[{name!r}]"
        if not isinstance(entry, dict):
            raise _invalid(source, where, "an object with keys model_file, files and passed", repr(entry))

        model_file = _validate_relative_path(entry.get("model_file"), f"{where}.model_file", source)
        variant_files = entry.get("files", [model_file])
        if not isinstance(variant_files, list):
            raise _invalid(source, f"{where}.files", "a list of relative paths", repr(variant_files))
        for path in variant_files:
            _validate_relative_path(path, f"{where}.files entry", source)
        if model_file not in variant_files:
            variant_files = [model_file, *variant_files]
        # attn-export writes large weights to `<model_file>.data` beside the model and lists
        # that file only in the top-level files, but the variant cannot load without it.
        external_data_file = f"{model_file}.data"
        if external_data_file in files and external_data_file not in variant_files:
            variant_files = [*variant_files, external_data_file]

        # Every file a variant loads must have a checksum, or verification would miss it.
        unlisted = [path for path in variant_files if path not in files]
        if unlisted:
            raise _invalid(source, f"{where}.files", "paths that are also listed in the top-level files", repr(unlisted))

        passed = entry.get("passed")
        if not isinstance(passed, bool):
            raise _invalid(source, f"{where}.passed", "true or false", repr(passed))

        gate = entry.get("gate", {})
        description = entry.get("description", "")
        variants[name] = VariantSpec(
            name=name,
            model_file=model_file,
            files=tuple(variant_files),
            passed=passed,
            description=description if isinstance(description, str) else str(description),
            gate=MappingProxyType(gate) if isinstance(gate, dict) else MappingProxyType({}),
        )
    return variants
