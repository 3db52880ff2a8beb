"""Open an artifact directory: verify file checksums and select a model variant.

numpy and onnxruntime only; services install this without torch.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from attn_runtime.errors import ArtifactError
from attn_runtime.manifest import Manifest, VariantSpec, load_manifest

__all__ = ["Artifact", "FALLBACK_VARIANT", "sha256_of_file", "verify_files"]

logger = logging.getLogger(__name__)

# The plain export that every artifact is expected to carry. It is used when the
# manifest's default variant failed its parity gate.
FALLBACK_VARIANT = "fp32"

_HASH_CHUNK_BYTES = 1 << 20
_RESTORE = "Re-export the artifact or restore the file."


def sha256_of_file(path: Path) -> str:
    """Return the lowercase hex sha256 of the file at `path`, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _resolve_inside(directory: Path, relative_path: str) -> Path:
    """Join `relative_path` to `directory` and reject results outside it (symlinks included)."""
    root = directory.resolve()
    resolved = (root / relative_path).resolve()
    if resolved != root and root not in resolved.parents:
        raise ArtifactError(
            f"Artifact file {relative_path!r} resolves to {str(resolved)!r}, outside the artifact "
            f"directory {str(root)!r}. {_RESTORE}"
        )
    return resolved


def verify_files(directory: Path, manifest: Manifest) -> None:
    """Check that every file listed in the manifest's `files` exists and has its sha256.

    Raises:
        ArtifactError: a file is missing, or its sha256 differs from the manifest. The
            message names the file and both hashes.
    """
    total_bytes = 0
    for relative_path, entry in manifest.files.items():
        path = _resolve_inside(directory, relative_path)
        if not path.is_file():
            raise ArtifactError(
                f"Artifact file {relative_path!r} is missing from {str(directory)!r} "
                f"(expected sha256 {entry.sha256}). {_RESTORE}"
            )

        actual = sha256_of_file(path)
        if actual != entry.sha256:
            raise ArtifactError(
                f"Checksum mismatch for artifact file {relative_path!r}: expected sha256 "
                f"{entry.sha256}, actual sha256 {actual}. The file was changed or corrupted "
                f"after export. {_RESTORE}"
            )
        total_bytes += path.stat().st_size

    logger.info(
        "Verified sha256 of %d files (%.1f MiB) in %s",
        len(manifest.files),
        total_bytes / (1 << 20),
        directory,
    )


@dataclass(frozen=True)
class Artifact:
    """An artifact directory with its validated manifest."""

    path: Path
    manifest: Manifest

    @classmethod
    def load(cls, path: str | Path, *, verify_checksums: bool = True) -> Artifact:
        """Load the manifest in `path` and, unless `verify_checksums=False`, verify every file.

        Skipping verification saves reading every file once at start-up, but a corrupted
        or swapped model file then goes unnoticed until it fails or scores wrongly.

        Raises:
            ArtifactError: see `load_manifest` and `verify_files`.
        """
        directory = Path(path)
        manifest = load_manifest(directory)
        if verify_checksums:
            verify_files(directory, manifest)
        else:
            logger.warning("Checksum verification of artifact %s was skipped on request", directory)
        return cls(path=directory, manifest=manifest)

    def select_variant(self, name: str | None = None, *, allow_failed: bool = False) -> VariantSpec:
        """Pick the variant to serve.

        With `name=None`, this returns the manifest's default variant if it passed its
        parity gate, else "fp32" if that passed. A named variant must exist, and it must
        have passed unless `allow_failed=True`.

        Raises:
            ArtifactError: the name is unknown (the message lists the available variants),
                the variant failed its gate, or no variant is usable.
        """
        variants = self.manifest.variants
        if name is None:
            return self._select_default()

        variant = variants.get(name)
        if variant is None:
            raise ArtifactError(
                f"Variant {name!r} is not in artifact {str(self.path)!r}. "
                f"Available variants: {self._describe_variants()}. Pass one of these names, "
                "or variant=None for the default."
            )
        if not variant.passed:
            if not allow_failed:
                raise ArtifactError(
                    f"Variant {name!r} in artifact {str(self.path)!r} failed its parity gate "
                    "at export, so its scores may differ from the PyTorch model. Pick a variant "
                    f"that passed ({self._passed_names()}), or pass allow_failed=True to load it anyway."
                )
            logger.warning("Loading variant %r of %s although it failed its parity gate", name, self.path)
        return variant

    def model_path(self, variant: VariantSpec) -> Path:
        """Return the absolute path of the variant's ONNX file.

        Raises:
            ArtifactError: the file is missing. This is checked here as well because
                checksum verification may have been skipped.
        """
        path = _resolve_inside(self.path, variant.model_file)
        if not path.is_file():
            raise ArtifactError(
                f"Model file {variant.model_file!r} of variant {variant.name!r} is missing from "
                f"{str(self.path)!r}. {_RESTORE}"
            )
        return path

    def _select_default(self) -> VariantSpec:
        variants = self.manifest.variants
        default = variants[self.manifest.default_variant]
        if default.passed:
            return default

        fallback = variants.get(FALLBACK_VARIANT)
        if fallback is not None and fallback.passed:
            logger.warning(
                "Default variant %r of %s failed its parity gate, so %r is served instead",
                default.name,
                self.path,
                FALLBACK_VARIANT,
            )
            return fallback

        raise ArtifactError(
            f"Artifact {str(self.path)!r} has no usable default: the default variant "
            f"{default.name!r} failed its parity gate and {FALLBACK_VARIANT!r} is missing or failed too. "
            f"Available variants: {self._describe_variants()}. Re-export the artifact, name a "
            "passing variant, or pass variant=<name> with allow_failed=True to load a failed one."
        )

    def _describe_variants(self) -> str:
        return ", ".join(
            f"{name} ({'passed' if spec.passed else 'failed'})"
            for name, spec in sorted(self.manifest.variants.items())
        )

    def _passed_names(self) -> str:
        names = sorted(name for name, spec in self.manifest.variants.items() if spec.passed)
        return ", ".join(names) if names else "none passed"
