"""Torch-free serving runtime for attn-export ONNX artifacts.

numpy and onnxruntime only; services install this without torch.

    from attn_runtime import Scorer
    scorer = Scorer.from_artifact("artifacts/default")
    scores = scorer.score(histories=[[3, 5, 9]], candidates=[[1, 2, 4]])
"""

from __future__ import annotations

import logging

from attn_runtime.artifact import Artifact
from attn_runtime.errors import ArtifactError, InputError, ScoringError
from attn_runtime.manifest import Manifest, load_manifest
from attn_runtime.ranking import top_k
from attn_runtime.scorer import Scorer
from attn_runtime.session import SessionConfig

__all__ = [
    "Artifact",
    "ArtifactError",
    "InputError",
    "Manifest",
    "Scorer",
    "ScoringError",
    "SessionConfig",
    "load_manifest",
    "top_k",
    "__version__",
]

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
