"""Checkpoints: a config plus a state dict in one file, loaded without unpickling objects."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from .config import RankerConfig
from .ranker import TargetAttentionRanker

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "read_checkpoint"]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "attn-models-checkpoint/1"


def save_checkpoint(path: str | Path, model: TargetAttentionRanker, extra: dict[str, Any] | None = None) -> Path:
    """Write config and weights to `path` atomically (temporary file, then rename).

    `extra` is JSON-like metadata, for example training metrics. It must contain only plain
    Python values so that `torch.load(weights_only=True)` can read it back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "kind": "target_attention_ranker",
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    logger.info("Saved checkpoint %s", path)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint payload with `weights_only=True` and check its format tag."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}. Train one with `attn-export train`.")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"{path} is not an attn-models checkpoint: expected format {CHECKPOINT_FORMAT!r}, "
            f"found {found!r}. Save checkpoints with attn_models.save_checkpoint."
        )
    return payload


def load_checkpoint(path: str | Path) -> TargetAttentionRanker:
    """Rebuild a `TargetAttentionRanker` in eval mode from a checkpoint file."""
    payload = read_checkpoint(path)
    model = TargetAttentionRanker(RankerConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model.eval()
