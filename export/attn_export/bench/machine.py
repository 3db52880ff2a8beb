"""Describe the machine a benchmark ran on: CPU model, cores, SIMD flags, package versions."""

from __future__ import annotations

import logging
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["describe_machine", "load_average", "package_versions", "SIMD_FLAGS"]

logger = logging.getLogger(__name__)

# /proc/cpuinfo flags that decide which GEMM kernels onnxruntime and PyTorch can use.
SIMD_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni",
    "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_int8", "amx_bf16", "asimd", "sve",
)

_PACKAGES = (
    ("attn_export", "attn-export"),
    ("attn_runtime", "attn-export-runtime"),
    ("torch", "torch"),
    ("onnxruntime", "onnxruntime"),
    ("onnx", "onnx"),
    ("numpy", "numpy"),
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a benchmark depends on, read without importing them."""
    versions = {"python": platform.python_version()}
    for name, dist in _PACKAGES:
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def load_average() -> float | None:
    """Return the 1-minute load average, or None where the OS does not report one."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _read_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> list[dict[str, str]]:
    try:
        text = path.read_text()
    except OSError as exc:
        logger.info("Cannot read %s (%s); CPU model and flags are reported as unknown.", path, exc)
        return []
    processors = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            entry[key.strip()] = value.strip()
        processors.append(entry)
    return processors


def describe_machine() -> dict[str, Any]:
    """Return CPU model, core counts, SIMD flags, OS, package versions and the current load average.

    Reads /proc/cpuinfo on Linux; elsewhere the CPU fields fall back to `platform` values and
    flags are empty.
    """
    processors = _read_cpuinfo()
    first = processors[0] if processors else {}
    flags = set(first.get("flags", first.get("Features", "")).split())
    physical = {(p.get("physical id", "0"), p.get("core id", str(i))) for i, p in enumerate(processors)}
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "cpu_model": first.get("model name") or platform.processor() or "unknown",
        "logical_cores": os.cpu_count(),
        "physical_cores": len(physical) if processors else None,
        "usable_cores": usable,
        "cpu_flags": [flag for flag in SIMD_FLAGS if flag in flags],
        "os": platform.platform(),
        "machine": platform.machine(),
        "versions": package_versions(),
        "load_average_start": load_average(),
    }
