"""Sources of an artifact's reference model and held-out requests.

The manifest records both, so `verify`, `optimize`, `quantize` and `bench` can rebuild the
PyTorch original and the same real requests long after the export.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from attn_models import TargetAttentionRanker, load_checkpoint
from attn_models.data import RankingRequests, SequenceDataset, heldout_requests, load_movielens, make_synthetic

from .errors import ModelLoadError, UsageError
from .spec import ExportSpec, ranker_export_spec

__all__ = [
    "DataSource",
    "REFERENCE_CHECKPOINT",
    "load_factory",
    "load_reference",
    "requests_for_artifact",
    "spec_for_ranker",
]

logger = logging.getLogger(__name__)

# The PyTorch original is kept inside the artifact so `verify` can rerun parity anywhere.
REFERENCE_CHECKPOINT = "reference/checkpoint.pt"


@dataclass
class DataSource:
    """A data set by kind: the embedded synthetic generator or a MovieLens directory."""

    kind: str = "synthetic"
    path: str | None = None
    seed: int = 0

    def load(self) -> SequenceDataset:
        if self.kind == "synthetic":
            return make_synthetic(seed=self.seed)
        if self.kind == "movielens":
            if not self.path:
                raise UsageError("A MovieLens data source needs a directory path (--data PATH).")
            try:
                return load_movielens(self.path)
            except (OSError, ValueError) as exc:
                raise UsageError(f"Cannot read MovieLens data from {self.path}: {exc}") from exc
        raise UsageError(f"Unknown data source kind {self.kind!r}; use 'synthetic' or 'movielens'.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "DataSource":
        return cls(**data) if data else cls()

    @classmethod
    def from_option(cls, path: Path | None, seed: int = 0) -> "DataSource":
        if path is None:
            return cls(kind="synthetic", seed=seed)
        if not (Path(path) / "ratings.csv").is_file():
            raise UsageError(
                f"--data {path}: no ratings.csv there. Point --data at an ml-latest-small directory "
                "(for example $ATTN_MOVIELENS_DIR), or omit it to use the embedded synthetic data."
            )
        return cls(kind="movielens", path=str(Path(path).resolve()), seed=seed)


def spec_for_ranker(model: TargetAttentionRanker) -> ExportSpec:
    return ranker_export_spec(model.config.vocab_size, model.config.max_seq_len)


def load_factory(target: str) -> tuple[torch.nn.Module, ExportSpec]:
    """Import `package.module:factory` and call it.

    The factory returns `(module, ExportSpec)`, or a module that has an `export_spec()` method.
    """
    if ":" not in target:
        raise UsageError(f"Expected 'package.module:factory', got {target!r}.")
    module_name, attr = target.split(":", 1)
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelLoadError(f"Cannot import {target!r}: {exc}. Is the package on PYTHONPATH?") from exc
    try:
        result = factory()
    except Exception as exc:  # user code: any failure is a load failure
        raise ModelLoadError(f"Factory {target!r} raised {type(exc).__name__}: {exc}") from exc
    if isinstance(result, tuple) and len(result) == 2:
        module, spec = result
    elif isinstance(result, torch.nn.Module) and hasattr(result, "export_spec"):
        module, spec = result, result.export_spec()
    else:
        raise ModelLoadError(
            f"Factory {target!r} returned {type(result).__name__}; expected (torch.nn.Module, ExportSpec) "
            "or a module with an export_spec() method."
        )
    if not isinstance(module, torch.nn.Module) or not isinstance(spec, ExportSpec):
        raise ModelLoadError(f"Factory {target!r} must return a torch.nn.Module and an attn_export.ExportSpec.")
    return module.eval(), spec


def load_reference(artifact_dir: Path, manifest: dict[str, Any]) -> tuple[torch.nn.Module, ExportSpec]:
    """Rebuild the PyTorch original that an artifact was exported from."""
    source = manifest.get("source", {})
    if source.get("kind") == "builtin":
        model = load_checkpoint(artifact_dir / source["checkpoint"])
        return model, spec_for_ranker(model)
    if source.get("kind") == "factory":
        return load_factory(source["factory"])
    raise ModelLoadError(f"Artifact {artifact_dir} does not record its PyTorch source; re-export it.")


def requests_for_artifact(
    manifest: dict[str, Any],
    split: str = "test",
    max_users: int | None = 256,
    num_negatives: int = 100,
    max_seq_len: int | None = 50,
    seed: int = 0,
    dataset: SequenceDataset | None = None,
) -> RankingRequests | None:
    """Held-out requests from the data the artifact was built on; None for custom models.

    `dataset` skips reloading the data when the caller has already loaded it.
    """
    data = manifest.get("data")
    if not data or manifest.get("model", {}).get("kind") != "target_attention_ranker":
        return None
    if dataset is None:
        dataset = DataSource.from_dict(data).load()
    limit = manifest.get("max_seq_len")
    if limit is not None and max_seq_len is not None:
        max_seq_len = min(max_seq_len, limit)
    return heldout_requests(dataset, split=split, num_negatives=num_negatives, max_users=max_users,
                            max_seq_len=max_seq_len, seed=seed)
