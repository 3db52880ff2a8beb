"""Manifest loading, checksum verification and variant selection."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from attn_runtime import Artifact, ArtifactError, Scorer, load_manifest
from attn_runtime.artifact import sha256_of_file

from runtime_builders import (
    BuiltArtifact,
    VariantPlan,
    build_ranking_artifact,
    build_ranking_model,
    make_table,
    reference_scores,
    write_artifact,
)


def test_missing_directory_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as caught:
        load_manifest(tmp_path / "does-not-exist")
    assert "does-not-exist" in str(caught.value)
    assert "not found" in str(caught.value)


def test_missing_manifest_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as caught:
        load_manifest(tmp_path)
    assert "manifest.json is missing" in str(caught.value)
    assert "re-export" in str(caught.value)


def test_invalid_json_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError) as caught:
        load_manifest(tmp_path)
    assert "not valid JSON" in str(caught.value)


def test_unknown_format_version_is_rejected(fresh_artifact: BuiltArtifact) -> None:
    fresh_artifact.rewrite_manifest(format_version=2)
    with pytest.raises(ArtifactError) as caught:
        load_manifest(fresh_artifact.path)
    message = str(caught.value)
    assert "format_version 2" in message
    assert "[1]" in message


@pytest.mark.parametrize("key", ["inputs", "variants", "files", "default_variant", "vocab_size"])
def test_missing_key_is_rejected(fresh_artifact: BuiltArtifact, key: str) -> None:
    del fresh_artifact.manifest[key]
    fresh_artifact.rewrite_manifest()
    with pytest.raises(ArtifactError) as caught:
        load_manifest(fresh_artifact.path)
    assert repr(key) in str(caught.value)


def test_default_variant_must_exist(fresh_artifact: BuiltArtifact) -> None:
    fresh_artifact.rewrite_manifest(default_variant="fp64")
    with pytest.raises(ArtifactError) as caught:
        load_manifest(fresh_artifact.path)
    assert "default_variant" in str(caught.value)
    assert "'fp64'" in str(caught.value)


def test_null_vocab_and_max_seq_len_load(fresh_artifact: BuiltArtifact) -> None:
    fresh_artifact.rewrite_manifest(vocab_size=None, max_seq_len=None)
    manifest = load_manifest(fresh_artifact.path)
    assert manifest.vocab_size is None
    assert manifest.max_seq_len is None


def test_path_outside_artifact_is_rejected(fresh_artifact: BuiltArtifact) -> None:
    files = dict(fresh_artifact.manifest["files"])
    files["../outside.txt"] = {"sha256": "0" * 64, "bytes": 1}
    fresh_artifact.rewrite_manifest(files=files)
    with pytest.raises(ArtifactError) as caught:
        load_manifest(fresh_artifact.path)
    assert "../outside.txt" in str(caught.value)


def _corrupt(path: Path) -> None:
    """Append a zero byte, which changes the file's sha256."""
    with path.open("ab") as handle:
        handle.write(b"\0")


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


def test_checksum_mismatch_names_file_and_hashes(fresh_artifact: BuiltArtifact) -> None:
    model_path = fresh_artifact.path / "optimized.onnx"
    expected = fresh_artifact.manifest["files"]["optimized.onnx"]["sha256"]
    _corrupt(model_path)
    actual = sha256_of_file(model_path)

    artifact = Artifact.load(fresh_artifact.path)
    assert set(artifact.file_problems) == {"optimized.onnx"}
    with pytest.raises(ArtifactError) as caught:
        artifact.select_variant("optimized")
    message = str(caught.value)
    assert "Variant 'optimized'" in message
    assert "'optimized.onnx'" in message
    assert expected in message
    assert actual in message
    assert "re-export the artifact or restore the file" in message.lower()
    assert "fp32" in message


def test_corrupt_served_file_is_rejected(fresh_artifact: BuiltArtifact) -> None:
    _corrupt(fresh_artifact.path / "fp32.onnx")
    with pytest.raises(ArtifactError) as caught:
        Scorer.from_artifact(fresh_artifact.path, variant="fp32")
    message = str(caught.value)
    assert "'fp32.onnx' was changed or corrupted" in message
    assert "cannot be served" in message


def test_corrupt_failed_variant_rejected_with_allow_failed(fresh_artifact: BuiltArtifact) -> None:
    _corrupt(fresh_artifact.path / "int8.onnx")
    artifact = Artifact.load(fresh_artifact.path)
    with pytest.raises(ArtifactError) as caught:
        artifact.select_variant("int8", allow_failed=True)
    assert "'int8.onnx' was changed or corrupted" in str(caught.value)


def test_checksum_mismatch_in_subfolder_file(tmp_path: Path) -> None:
    built = build_ranking_artifact(tmp_path / "artifact", external_data_variants=("fp32",))
    data_path = built.path / "weights" / "fp32.onnx.data"
    data_path.write_bytes(data_path.read_bytes()[::-1])
    with pytest.raises(ArtifactError) as caught:
        Scorer.from_artifact(built.path, variant="fp32")
    assert "'weights/fp32.onnx.data'" in str(caught.value)


def test_external_data_beside_model_is_verified(tmp_path: Path) -> None:
    table = make_table()
    model = build_ranking_model(table)
    plans = {"fp32": VariantPlan(model=model, external_data=True, data_beside_model=True)}
    written = write_artifact(tmp_path, plans, default_variant="fp32")
    assert written["variants"]["fp32"]["files"] == ["fp32.onnx"]
    assert "fp32.onnx.data" in written["files"]
    assert load_manifest(tmp_path).variants["fp32"].files == ("fp32.onnx", "fp32.onnx.data")

    history_ids = np.array([[3, 5, 0]], dtype=np.int64)
    history_lengths = np.array([2], dtype=np.int64)
    candidate_ids = np.array([[1, 2]], dtype=np.int64)
    scores = Scorer.from_artifact(tmp_path).score(history_ids, history_lengths, candidate_ids)
    expected = reference_scores(table, history_ids, history_lengths, candidate_ids)
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=0)

    _corrupt(tmp_path / "fp32.onnx.data")
    with pytest.raises(ArtifactError) as caught:
        Scorer.from_artifact(tmp_path)
    assert "'fp32.onnx.data' was changed or corrupted" in str(caught.value)


def test_missing_file_is_rejected(fresh_artifact: BuiltArtifact) -> None:
    (fresh_artifact.path / "fp32.onnx").unlink()
    with pytest.raises(ArtifactError) as caught:
        Scorer.from_artifact(fresh_artifact.path, variant="fp32")
    message = str(caught.value)
    assert "'fp32.onnx' is missing" in message
    assert fresh_artifact.manifest["files"]["fp32.onnx"]["sha256"] in message
    assert "restore the file" in message


def test_unused_variant_file_deleted_warns(
    fresh_artifact: BuiltArtifact, caplog: pytest.LogCaptureFixture
) -> None:
    (fresh_artifact.path / "int8.onnx").unlink()
    with caplog.at_level(logging.WARNING, logger="attn_runtime.artifact"):
        scorer = Scorer.from_artifact(fresh_artifact.path, variant="fp32")
    assert scorer.variant == "fp32"

    warnings = _warnings(caplog)
    assert len(warnings) == 1
    assert "'int8.onnx' is missing" in warnings[0]
    assert "Serving variant 'fp32'" in warnings[0]
    assert "Variant(s) int8 cannot be served" in warnings[0]

    history_ids = np.array([[3, 5, 9]], dtype=np.int64)
    history_lengths = np.array([3], dtype=np.int64)
    candidate_ids = np.array([[1, 2, 4]], dtype=np.int64)
    scores = scorer.score(history_ids, history_lengths, candidate_ids)
    expected = reference_scores(fresh_artifact.table, history_ids, history_lengths, candidate_ids)
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=0)


def test_unused_file_changed_warns(fresh_artifact: BuiltArtifact, caplog: pytest.LogCaptureFixture) -> None:
    (fresh_artifact.path / "parity.json").write_text("changed")
    with caplog.at_level(logging.WARNING, logger="attn_runtime.artifact"):
        scorer = Scorer.from_artifact(fresh_artifact.path)
    assert scorer.variant == "optimized"

    warnings = _warnings(caplog)
    assert len(warnings) == 1
    assert "'parity.json' was changed or corrupted" in warnings[0]
    assert "No variant loads it" in warnings[0]


def test_default_file_corrupt_falls_back_to_fp32(
    fresh_artifact: BuiltArtifact, caplog: pytest.LogCaptureFixture
) -> None:
    _corrupt(fresh_artifact.path / "optimized.onnx")
    with caplog.at_level(logging.WARNING, logger="attn_runtime.artifact"):
        scorer = Scorer.from_artifact(fresh_artifact.path)
    assert scorer.variant == "fp32"

    warnings = _warnings(caplog)
    assert len(warnings) == 1
    assert warnings[0].startswith("Default variant 'optimized'")
    assert "'optimized.onnx' was changed or corrupted" in warnings[0]
    assert "'fp32' is served instead" in warnings[0]


def test_default_and_fp32_corrupt_rejected(fresh_artifact: BuiltArtifact) -> None:
    _corrupt(fresh_artifact.path / "optimized.onnx")
    (fresh_artifact.path / "fp32.onnx").unlink()
    with pytest.raises(ArtifactError) as caught:
        Scorer.from_artifact(fresh_artifact.path)
    message = str(caught.value)
    assert "no usable default" in message
    assert "'optimized.onnx' was changed or corrupted" in message
    assert "'fp32.onnx' is missing" in message
    assert "optimized (passed, files missing or changed)" in message


def test_checksum_skip_loads_modified_file(fresh_artifact: BuiltArtifact, caplog: pytest.LogCaptureFixture) -> None:
    (fresh_artifact.path / "parity.json").write_text("changed")
    with caplog.at_level(logging.WARNING, logger="attn_runtime.artifact"):
        artifact = Artifact.load(fresh_artifact.path, verify_checksums=False)
    assert artifact.manifest.default_variant == "optimized"
    assert "skipped" in caplog.text


def test_missing_model_file_without_checksums(fresh_artifact: BuiltArtifact) -> None:
    (fresh_artifact.path / "optimized.onnx").unlink()
    artifact = Artifact.load(fresh_artifact.path, verify_checksums=False)
    variant = artifact.select_variant()
    with pytest.raises(ArtifactError) as caught:
        artifact.model_path(variant)
    assert "'optimized.onnx'" in str(caught.value)
    assert "missing" in str(caught.value)


def test_variant_default_when_passed(ranking_artifact: BuiltArtifact) -> None:
    artifact = Artifact.load(ranking_artifact.path)
    assert artifact.select_variant().name == "optimized"


def test_variant_falls_back_to_fp32(tmp_path: Path) -> None:
    built = build_ranking_artifact(tmp_path / "a", variant_passed={"fp32": True, "optimized": False})
    artifact = Artifact.load(built.path)
    assert artifact.select_variant().name == "fp32"


def test_variant_none_usable_is_rejected(tmp_path: Path) -> None:
    built = build_ranking_artifact(tmp_path / "a", variant_passed={"fp32": False, "optimized": False})
    artifact = Artifact.load(built.path)
    with pytest.raises(ArtifactError) as caught:
        artifact.select_variant()
    message = str(caught.value)
    assert "no usable default" in message
    assert "allow_failed=True" in message


def test_variant_unknown_lists_available(ranking_artifact: BuiltArtifact) -> None:
    artifact = Artifact.load(ranking_artifact.path)
    with pytest.raises(ArtifactError) as caught:
        artifact.select_variant("fp16_tables")
    message = str(caught.value)
    assert "'fp16_tables'" in message
    assert "fp32 (passed)" in message
    assert "int8 (failed)" in message
    assert "optimized (passed)" in message


def test_variant_failed_needs_allow_failed(ranking_artifact: BuiltArtifact) -> None:
    artifact = Artifact.load(ranking_artifact.path)
    with pytest.raises(ArtifactError) as caught:
        artifact.select_variant("int8")
    assert "failed its gate" in str(caught.value)
    assert "allow_failed=True" in str(caught.value)
    assert artifact.select_variant("int8", allow_failed=True).name == "int8"


def test_variant_named_passed_is_selected(ranking_artifact: BuiltArtifact) -> None:
    artifact = Artifact.load(ranking_artifact.path)
    assert artifact.select_variant("fp32").model_file == "fp32.onnx"


def test_scorer_rejects_manifest_model_mismatch(fresh_artifact: BuiltArtifact) -> None:
    inputs = json.loads(json.dumps(fresh_artifact.manifest["inputs"]))
    inputs[2]["name"] = "item_ids"
    fresh_artifact.rewrite_manifest(
        inputs=inputs, id_inputs={"history_ids": "history_lengths", "item_ids": None}
    )
    with pytest.raises(ArtifactError) as caught:
        Scorer.from_artifact(fresh_artifact.path)
    message = str(caught.value)
    assert "candidate_ids" in message
    assert "item_ids" in message
    assert "re-export" in message


def test_scorer_rejects_unloadable_model(fresh_artifact: BuiltArtifact) -> None:
    (fresh_artifact.path / "optimized.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(ArtifactError) as caught:
        Scorer.from_artifact(fresh_artifact.path, verify_checksums=False)
    assert "could not load model file" in str(caught.value)
    assert "optimized.onnx" in str(caught.value)
