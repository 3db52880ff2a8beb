"""Fixtures with small but real artifacts for the runtime tests (see runtime_builders)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime_builders import (
    BuiltArtifact,
    VariantPlan,
    build_custom_model,
    build_ranking_artifact,
    write_artifact,
)


@pytest.fixture(scope="session")
def ranking_artifact(tmp_path_factory: pytest.TempPathFactory) -> BuiltArtifact:
    """A read-only ranking artifact shared by tests: fp32 (external data), optimized, int8 (failed)."""
    directory = tmp_path_factory.mktemp("ranking_artifact")
    return build_ranking_artifact(
        directory,
        variant_passed={"fp32": True, "optimized": True, "int8": False},
        external_data_variants=("fp32",),
    )


@pytest.fixture()
def fresh_artifact(tmp_path: Path) -> BuiltArtifact:
    """A ranking artifact private to one test, which may modify or corrupt it."""
    return build_ranking_artifact(tmp_path / "artifact", variant_passed={"fp32": True, "optimized": True, "int8": False})


@pytest.fixture(scope="session")
def custom_artifact(tmp_path_factory: pytest.TempPathFactory) -> BuiltArtifact:
    """An artifact for a non-contract model (inputs item_ids and weights, output total)."""
    directory = tmp_path_factory.mktemp("custom_artifact")
    model, bias = build_custom_model()
    manifest = write_artifact(
        directory,
        {"fp32": VariantPlan(model=model)},
        default_variant="fp32",
        inputs=[
            {"name": "item_ids", "dtype": "int64", "shape": ["batch", "items"]},
            {"name": "weights", "dtype": "float32", "shape": ["batch", "items"]},
        ],
        outputs=[{"name": "total", "dtype": "float32", "shape": ["batch"]}],
        id_inputs={"item_ids": None},
        vocab_size=None,
    )
    return BuiltArtifact(path=directory, manifest=manifest, bias=bias)


@pytest.fixture(scope="session")
def ranking_scorer(ranking_artifact: BuiltArtifact):
    """A Scorer on the shared artifact's default variant, with padding-id warnings off."""
    from attn_runtime import Scorer

    return Scorer.from_artifact(ranking_artifact.path, padding_id_policy="ignore")
