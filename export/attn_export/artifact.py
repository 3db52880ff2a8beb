"""Artifact directories: manifest, checksums and atomic replacement.

An artifact is built in a staging directory beside the target, on the same filesystem so the
final rename is atomic, and only then moved into place. On Linux an existing artifact is
swapped with it in one renameat2 call. A run killed before the swap leaves the old artifact untouched.
Its staging directory, `.NAME.staging-PID-*`, is deleted by the next run once PID is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from .errors import ArtifactError

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "sha256_file",
    "read_manifest",
    "check_checksums",
    "write_manifest",
    "staged_artifact",
    "update_artifact",
    "add_variant",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_table(directory: Path) -> dict[str, dict[str, Any]]:
    table = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative == MANIFEST_NAME:
            continue
        table[relative] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return table


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """Read `manifest.json` of an artifact; ArtifactError when it is missing or invalid."""
    directory = Path(directory)
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(
            f"No {MANIFEST_NAME} in {directory}: not an attn-export artifact. "
            "Create one with `attn-export build` or `attn-export export`."
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); re-export the artifact.") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format_version {manifest.get('format_version')!r} is not supported "
            f"(expected {FORMAT_VERSION}); re-export with this attn-export version."
        )
    return manifest


def check_checksums(directory: Path, manifest: dict[str, Any]) -> None:
    """Raise ArtifactError listing every file that is missing or differs from its sha256."""
    problems = []
    for name, entry in manifest.get("files", {}).items():
        path = Path(directory) / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif (actual := sha256_file(path)) != entry["sha256"]:
            problems.append(f"{name}: sha256 {actual[:12]}... expected {entry['sha256'][:12]}...")
    if problems:
        raise ArtifactError(
            f"Artifact {directory} does not match its manifest:\n  - " + "\n  - ".join(problems)
            + "\nRe-export the artifact or restore the listed files."
        )


def write_manifest(directory: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Refresh checksums, write manifest.json, and mirror it into each ONNX file's metadata_props.

    The mirror goes in first because it changes the ONNX files whose checksums the manifest holds.
    """
    manifest["files"] = {}
    _mirror_into_onnx(directory, manifest)
    manifest["files"] = _file_table(directory)
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


def _mirror_into_onnx(directory: Path, manifest: dict[str, Any]) -> None:
    import onnx

    summary = {k: v for k, v in manifest.items() if k not in ("files", "variants")}
    for name, variant in manifest.get("variants", {}).items():
        model_path = directory / variant["model_file"]
        proto = onnx.load(str(model_path), load_external_data=False)
        props = {p.key: p.value for p in proto.metadata_props}
        props["attn_export.manifest"] = json.dumps(summary, sort_keys=True)
        props["attn_export.variant"] = name
        del proto.metadata_props[:]
        for key, value in sorted(props.items()):
            proto.metadata_props.add(key=key, value=value)
        onnx.save_model(proto, str(model_path))


def _make_staging(target: Path) -> Path:
    _remove_stale_staging(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-{os.getpid()}-", dir=target.parent))
    os.chmod(staging, 0o755)  # mkdtemp creates 0700; an artifact is read by other users
    return staging


def _remove_stale_staging(target: Path) -> None:
    """Delete staging directories left by killed runs whose process no longer exists."""
    for leftover in target.parent.glob(f".{target.name}.staging-*"):
        pid_text = leftover.name.rsplit(".staging-", 1)[1].split("-", 1)[0]
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            logger.info("Removing %s left by an interrupted run", leftover)
            shutil.rmtree(leftover, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_RENAME_EXCHANGE = 2  # renameat2 flag from <linux/fs.h>
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step with Linux renameat2; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    return result == 0


def _swap_into_place(staging: Path, target: Path, force: bool) -> None:
    """Move `staging` to `target`.

    Replacing an existing artifact uses renameat2(RENAME_EXCHANGE), so readers see either the old
    or the new directory, never none. Where that call is unavailable (not Linux, or a filesystem
    without it) two renames are used, and a kill between them leaves the old artifact at
    `.NAME.old-PID` next to the target.
    """
    if not target.exists():
        os.rename(staging, target)
        return
    if not force:
        raise ArtifactError(f"{target} already exists; pass --force to replace it.")
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # `staging` now contains the old artifact
        return
    backup = target.parent / f".{target.name}.old-{os.getpid()}"
    if backup.exists():
        shutil.rmtree(backup)
    os.rename(target, backup)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def staged_artifact(target: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a fresh staging directory; on success move it to `target`, on error delete it.

    Checks `force` up front so a long export does not run only to fail at the end.
    """
    target = Path(target).resolve()
    if target.exists() and not force:
        raise ArtifactError(f"{target} already exists; pass --force to replace it.")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _make_staging(target)
    try:
        yield staging
        _swap_into_place(staging, target, force=True if target.exists() else force)
        logger.info("Wrote artifact %s", target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def update_artifact(target: str | Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Yield (staging_dir, manifest) holding a copy of an existing artifact to add variants to.

    Files are hard-linked when possible, so copying a large artifact is cheap; callers must write
    new files rather than modify linked ones in place. On success the manifest is rewritten with
    fresh checksums and the staging directory replaces the artifact atomically.
    """
    target = Path(target).resolve()
    manifest = read_manifest(target)
    staging = _make_staging(target)
    try:
        shutil.copytree(target, staging, dirs_exist_ok=True, copy_function=_link_or_copy)
        yield staging, manifest
        write_manifest(staging, manifest)
        _swap_into_place(staging, target, force=True)
        logger.info("Updated artifact %s", target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _link_or_copy(src: str, dst: str) -> None:
    # ONNX files are rewritten in place by the metadata mirror, so they must be real copies.
    if src.endswith(".onnx") or src.endswith(MANIFEST_NAME):
        shutil.copy2(src, dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def add_variant(
    manifest: dict[str, Any],
    name: str,
    model_file: str,
    passed: bool,
    description: str,
    gate: dict[str, Any] | None = None,
    extra_files: list[str] | None = None,
    make_default: bool = False,
) -> None:
    """Record a variant in the manifest (files are checksummed when the manifest is written)."""
    manifest.setdefault("variants", {})[name] = {
        "model_file": model_file,
        "files": [model_file, *(extra_files or [])],
        "passed": bool(passed),
        "description": description,
        "gate": gate or {},
        "created_utc": utc_now(),
    }
    if make_default:
        if not passed:
            raise ArtifactError(f"Variant {name!r} did not pass its gate and cannot be the default.")
        manifest["default_variant"] = name


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
