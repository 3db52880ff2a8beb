"""Open an artifact directory: verify file checksums and select a model variant.

numpy and onnxruntime only; services install this without torch.

Only the files of the variant being served must match the manifest. Any other listed
file that is missing or changed (for example the model of an unused variant deleted to
slim a deployment) is logged as a warning when a variant is selected.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from attn_runtime.errors import ArtifactError
from attn_runtime.manifest import Manifest, VariantSpec, load_manifest

__all__ = ["Artifact", "FALLBACK_VARIANT", "FileProblem", "find_file_problems", "sha256_of_file"]

logger = logging.getLogger(__name__)

# The plain export that every artifact is expected to carry. It is served when the
# manifest's default variant failed its gate or its files do not verify.
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


@dataclass(frozen=True)
class FileProblem:
    """A file listed in the manifest that is missing or whose sha256 differs.

    `actual_sha256` is None when the file is missing.
    """

    path: str
    expected_sha256: str
    actual_sha256: str | None

    def describe(self) -> str:
        """Return a lowercase clause naming the file and both hashes, for use inside a sentence."""
        if self.actual_sha256 is None:
            return f"artifact file {self.path!r} is missing (expected sha256 {self.expected_sha256})"
        return (
            f"artifact file {self.path!r} was changed or corrupted after export (checksum mismatch: "
            f"expected sha256 {self.expected_sha256}, actual sha256 {self.actual_sha256})"
        )


def find_file_problems(directory: Path, manifest: Manifest) -> dict[str, FileProblem]:
    """Hash every file listed in the manifest's `files` and return the ones that do not match.

    Returns a mapping from relative path to its problem. An empty mapping means every
    listed file exists and has its recorded sha256.

    Raises:
        ArtifactError: a listed path resolves outside the artifact directory.
    """
    problems: dict[str, FileProblem] = {}
    total_bytes = 0
    for relative_path, entry in manifest.files.items():
        path = _resolve_inside(directory, relative_path)
        if not path.is_file():
            problems[relative_path] = FileProblem(relative_path, entry.sha256, None)
            continue

        actual = sha256_of_file(path)
        if actual != entry.sha256:
            problems[relative_path] = FileProblem(relative_path, entry.sha256, actual)
        total_bytes += path.stat().st_size

    logger.info(
        "Checked sha256 of %d files (%.1f MiB) in %s: %d missing or changed",
        len(manifest.files),
        total_bytes / (1 << 20),
        directory,
        len(problems),
    )
    return problems


@dataclass(frozen=True)
class Artifact:
    """An artifact directory with its validated manifest and the result of its file check.

    `file_problems` maps each listed file that is missing or changed to its problem. It
    is empty when every file matched, and also when `checksums_verified` is False.
    """

    path: Path
    manifest: Manifest
    file_problems: Mapping[str, FileProblem] = field(default_factory=lambda: MappingProxyType({}))
    checksums_verified: bool = True

    @classmethod
    def load(cls, path: str | Path, *, verify_checksums: bool = True) -> Artifact:
        """Load the manifest in `path` and, unless `verify_checksums=False`, hash every listed file.

        A missing or changed file does not fail the load. `select_variant` rejects a
        variant whose own files have a problem and logs a warning for the other files.
        Skipping verification saves reading every file once at start-up, but a corrupted
        or swapped model file then goes unnoticed until it fails or scores wrongly.

        Raises:
            ArtifactError: see `load_manifest` and `find_file_problems`.
        """
        directory = Path(path)
        manifest = load_manifest(directory)
        if not verify_checksums:
            logger.warning("Checksum verification of artifact %s was skipped on request", directory)
            return cls(path=directory, manifest=manifest, checksums_verified=False)

        problems = find_file_problems(directory, manifest)
        return cls(path=directory, manifest=manifest, file_problems=MappingProxyType(problems))

    def select_variant(self, name: str | None = None, *, allow_failed: bool = False) -> VariantSpec:
        """Pick the variant to serve and log a warning for each missing or changed file it does not use.

        With `name=None`, this returns the manifest's default variant if it passed its
        parity gate and its files verify, else "fp32" if that passed and its files verify.
        A named variant must exist, its files must verify, and it must have passed unless
        `allow_failed=True`.

        Raises:
            ArtifactError: the name is unknown (the message lists the available variants),
                the variant failed its gate, one of its files is missing or changed (the
                message names the file and both hashes), or no variant is usable.
        """
        if name is None:
            variant = self._select_default()
        else:
            variant = self._select_named(name, allow_failed=allow_failed)

        # A fallback from the default has already logged the default's file problems.
        default = self.manifest.variants[self.manifest.default_variant]
        reported = set(default.files) if name is None and variant is not default else set()
        self._warn_unused_problems(variant, already_reported=reported)
        return variant

    def variant_problems(self, variant: VariantSpec) -> list[FileProblem]:
        """Return the problems of the files that `variant` needs, in the order of its `files`."""
        return [self.file_problems[path] for path in variant.files if path in self.file_problems]

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

    def _select_named(self, name: str, *, allow_failed: bool) -> VariantSpec:
        variant = self.manifest.variants.get(name)
        if variant is None:
            raise ArtifactError(
                f"Variant {name!r} is not in artifact {str(self.path)!r}. "
                f"Available variants: {self._describe_variants()}. Pass one of these names, "
                "or variant=None for the default."
            )

        if not variant.passed and not allow_failed:
            raise ArtifactError(
                f"Variant {name!r} in artifact {str(self.path)!r} failed its gate "
                "at export, so its scores may differ from the PyTorch model. Pick a variant "
                f"that is usable ({self._usable_names()}), or pass allow_failed=True to load it anyway."
            )

        problems = self.variant_problems(variant)
        if problems:
            raise ArtifactError(
                f"Variant {name!r} in artifact {str(self.path)!r} cannot be served because "
                f"{_join_problems(problems)}. {_RESTORE} Variants whose files verify and that passed their gate: "
                f"{self._usable_names()}."
            )

        if not variant.passed:
            logger.warning("Loading variant %r of %s although it failed its gate", name, self.path)
        return variant

    def _select_default(self) -> VariantSpec:
        variants = self.manifest.variants
        default = variants[self.manifest.default_variant]
        default_reason = self._unusable_reason(default)
        if default_reason is None:
            return default

        fallback = variants.get(FALLBACK_VARIANT)
        if fallback is None:
            fallback_reason = f"the artifact has no {FALLBACK_VARIANT!r} variant"
        elif fallback is default:
            fallback_reason = f"{FALLBACK_VARIANT!r} is the default itself"
        else:
            reason = self._unusable_reason(fallback)
            if reason is None:
                logger.warning(
                    "Default variant %r of %s cannot be served because %s, so %r is served instead",
                    default.name,
                    self.path,
                    default_reason,
                    FALLBACK_VARIANT,
                )
                return fallback
            fallback_reason = f"{FALLBACK_VARIANT!r} cannot be served either because {reason}"

        raise ArtifactError(
            f"Artifact {str(self.path)!r} has no usable default: the default variant "
            f"{default.name!r} cannot be served because {default_reason}, and {fallback_reason}. "
            f"Available variants: {self._describe_variants()}. Re-export the artifact or restore "
            "its files, name a usable variant, or pass variant=<name> with allow_failed=True to "
            "load one that failed its gate."
        )

    def _unusable_reason(self, variant: VariantSpec) -> str | None:
        """Return why `variant` cannot be served as a default, or None if it can."""
        reasons = []
        if not variant.passed:
            reasons.append("it failed its gate")
        problems = self.variant_problems(variant)
        if problems:
            reasons.append(_join_problems(problems))
        return "; ".join(reasons) if reasons else None

    def _warn_unused_problems(self, served: VariantSpec, *, already_reported: set[str]) -> None:
        for path, problem in self.file_problems.items():
            if path in served.files or path in already_reported:
                continue
            users = sorted(name for name, spec in self.manifest.variants.items() if path in spec.files)
            if users:
                consequence = (
                    f"Variant(s) {', '.join(users)} cannot be served until the file is restored "
                    "or the artifact is re-exported."
                )
            else:
                consequence = "No variant loads it, so scoring is not affected."
            logger.warning(
                "In artifact %s, %s. Serving variant %r, which does not use this file. %s",
                self.path,
                problem.describe(),
                served.name,
                consequence,
            )

    def _describe_variants(self) -> str:
        descriptions = []
        for name, spec in sorted(self.manifest.variants.items()):
            state = "passed" if spec.passed else "failed"
            if self.variant_problems(spec):
                state += ", files missing or changed"
            descriptions.append(f"{name} ({state})")
        return ", ".join(descriptions)

    def _usable_names(self) -> str:
        names = sorted(
            name
            for name, spec in self.manifest.variants.items()
            if spec.passed and not self.variant_problems(spec)
        )
        return ", ".join(names) if names else "none"


def _join_problems(problems: list[FileProblem]) -> str:
    return "; ".join(f"its {problem.describe()}" for problem in problems)
