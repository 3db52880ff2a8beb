"""Shared fixtures: real exported artifacts built once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def movielens_dir() -> Path | None:
    value = os.environ.get("ATTN_MOVIELENS_DIR")
    return Path(value) if value else None


@pytest.fixture(scope="session")
def movielens_path() -> Path:
    path = movielens_dir()
    if path is None:
        pytest.skip("ATTN_MOVIELENS_DIR is not set")
    if not (path / "ratings.csv").is_file():
        pytest.fail(f"ATTN_MOVIELENS_DIR={path} has no ratings.csv")
    return path


@pytest.fixture(scope="session")
def small_artifact(tmp_path_factory) -> Path:
    """An fp32 artifact of a small multihead ranker, exported with parity on synthetic requests."""
    import torch

    from attn_models import RankerConfig, TargetAttentionRanker
    from attn_export.pipeline import export_ranker
    from attn_export.sources import DataSource

    torch.manual_seed(0)
    model = TargetAttentionRanker(RankerConfig(vocab_size=2001, embed_dim=16)).eval()
    target = tmp_path_factory.mktemp("artifacts") / "small"
    export_ranker(model, target, DataSource("synthetic"), max_requests=64)
    return target
