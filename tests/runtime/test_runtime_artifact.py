"""Manifest loading, checksum verification and variant selection."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from attn_runtime import Artifact, ArtifactError, Scorer, load_manifest
from attn_runtime.artifact import sha256_of_file

from runtime_builders import BuiltArtifact, build_ranking_artifact


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


def test_checksum_mismatch_names_file_and_hashes(fresh_artifact: BuiltArtifact) -> None:
    model_path = fresh_artifact.path / "optimized.onnx"
    expected = fresh_artifact.manifest["files"]["optimized.onnx"]["sha256"]
    with model_path.open("ab") as handle:
        handle.write(b"\0")
    actual = sha256_of_file(model_path)

    with pytest.raises(ArtifactError) as caught:
        Artifact.load(fresh_artifact.path)
    message = str(caught.value)
    assert "'optimized.onnx'" in message
    assert expected in message
    assert actual in message
    assert "re-export the artifact or restore the file" in message.lower()


def test_checksum_mismatch_in_subfolder_file(tmp_path: Path) -> None:
    built = build_ranking_artifact(tmp_path / "artifact", external_data_variants=("fp32",))
    data_path = built.path / "weights" / "fp32.onnx.data"
    data_path.write_bytes(data_path.read_bytes()[::-1])
    with pytest.raises(ArtifactError) as caught:
        Artifact.load(built.path)
    assert "'weights/fp32.onnx.data'" in str(caught.value)


def test_missing_file_is_rejected(fresh_artifact: BuiltArtifact) -> None:
    (fresh_artifact.path / "parity.json").unlink()
    with pytest.raises(ArtifactError) as caught:
        Artifact.load(fresh_artifact.path)
    message = str(caught.value)
    assert "'parity.json' is missing" in message
    assert fresh_artifact.manifest["files"]["parity.json"]["sha256"] in message
    assert "restore the file" in message


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
    assert "failed its parity gate" in str(caught.value)
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
