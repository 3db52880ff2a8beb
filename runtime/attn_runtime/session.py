"""Build onnxruntime CPU inference sessions with serving-friendly defaults.

numpy and onnxruntime only; services install this without torch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from attn_runtime.errors import ArtifactError

__all__ = ["SessionConfig", "OptimizationLevel", "PREOPTIMIZED_VARIANTS", "ORT_ERRORS", "build_session"]

logger = logging.getLogger(__name__)

OptimizationLevel = Literal["auto", "disable", "basic", "extended", "all"]

# Variants whose ONNX file attn-export already saved after onnxruntime's graph
# optimizations. For these, "auto" runs only the cheap basic level at load time.
PREOPTIMIZED_VARIANTS = frozenset({"optimized"})

_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_MODES = {
    "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
    "parallel": ort.ExecutionMode.ORT_PARALLEL,
}

# onnxruntime's Python errors derive from Exception directly, not from RuntimeError.
ORT_ERRORS: tuple[type[Exception], ...] = tuple(
    getattr(_ort_state, name)
    for name in (
        "Fail",
        "InvalidArgument",
        "NoSuchFile",
        "NoModel",
        "EngineError",
        "RuntimeException",
        "InvalidProtobuf",
        "ModelLoaded",
        "NotImplemented",
        "InvalidGraph",
        "EPFail",
    )
    if hasattr(_ort_state, name)
) + (RuntimeError,)


@dataclass(frozen=True)
class SessionConfig:
    """onnxruntime session settings for one scorer.

    intra_op_threads: threads inside one operator. The default 1 suits a service that
        runs one scorer per core and gets its parallelism from concurrent requests or
        processes. Raise it for a single process that serves large batches. 0 lets
        onnxruntime use one thread per physical core.
    inter_op_threads: threads across independent operators. Used only with
        execution_mode="parallel".
    allow_spinning: when True, idle intra-op threads busy-wait for work. That lowers
        latency a little but burns CPU between requests, so the service default is off
        (session config entries "session.intra_op.allow_spinning" and
        "session.inter_op.allow_spinning" set to "0").
    graph_optimization_level: "auto" applies all onnxruntime graph optimizations to
        variants exported without them (fp32, int8, ...). For variants that attn-export
        already saved optimized (see PREOPTIMIZED_VARIANTS) it applies only "basic",
        because the extended fusions were applied at export and repeating them
        only lengthens session start-up. "disable", "basic", "extended" and "all"
        force one level for every variant.
    execution_mode: "sequential" runs one operator at a time. The ranking graphs are
        chains with little branching, so "parallel" rarely helps.
    """

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    allow_spinning: bool = False
    graph_optimization_level: OptimizationLevel = "auto"
    execution_mode: Literal["sequential", "parallel"] = "sequential"

    def __post_init__(self) -> None:
        for name in ("intra_op_threads", "inter_op_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"SessionConfig.{name} must be an int >= 0 (0 lets onnxruntime choose), got {value!r}."
                )
        if self.graph_optimization_level != "auto" and self.graph_optimization_level not in _LEVELS:
            raise ValueError(
                "SessionConfig.graph_optimization_level must be one of "
                f"{['auto', *_LEVELS]}, got {self.graph_optimization_level!r}."
            )
        if self.execution_mode not in _MODES:
            raise ValueError(
                f"SessionConfig.execution_mode must be one of {list(_MODES)}, got {self.execution_mode!r}."
            )

    def resolve_optimization_level(self, variant_name: str) -> str:
        """Return the concrete level name ("disable" ... "all") used for `variant_name`."""
        if self.graph_optimization_level != "auto":
            return self.graph_optimization_level
        return "basic" if variant_name in PREOPTIMIZED_VARIANTS else "all"

    def to_session_options(self, variant_name: str) -> ort.SessionOptions:
        """Build onnxruntime SessionOptions for the given variant name."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        options.execution_mode = _MODES[self.execution_mode]
        options.graph_optimization_level = _LEVELS[self.resolve_optimization_level(variant_name)]
        spinning = "1" if self.allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        options.add_session_config_entry("session.inter_op.allow_spinning", spinning)
        return options


def build_session(model_path: Path, config: SessionConfig, *, variant_name: str) -> ort.InferenceSession:
    """Create a CPUExecutionProvider session for the ONNX file at `model_path`.

    External-data files are resolved by onnxruntime relative to the model file's folder.

    Raises:
        ArtifactError: onnxruntime could not load the model. The message names the file.
    """
    options = config.to_session_options(variant_name)
    try:
        session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    except ORT_ERRORS as error:
        raise ArtifactError(
            f"onnxruntime {ort.__version__} could not load model file {str(model_path)!r} "
            f"(variant {variant_name!r}): {error}. Re-export the artifact, or install the "
            "onnxruntime version listed under producer in manifest.json."
        ) from error

    logger.info(
        "Loaded variant %r from %s (intra_op_threads=%d, graph optimization %s)",
        variant_name,
        model_path,
        config.intra_op_threads,
        config.resolve_optimization_level(variant_name),
    )
    return session
