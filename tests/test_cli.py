"""CLI tests through typer's CliRunner: exit codes per stage and the key phrases users read."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from attn_models import RankerConfig, TargetAttentionRanker, save_checkpoint
from attn_export.cli import app

runner = CliRunner()


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(1)
    model = TargetAttentionRanker(RankerConfig(vocab_size=2001, embed_dim=16, attention="projected"))
    return save_checkpoint(tmp_path / "ckpt.pt", model)


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("build", "export", "verify", "inspect", "train"):
        assert command in result.output


def test_export_help_states_units():
    result = runner.invoke(app, ["export", "--help"])
    assert result.exit_code == 0
    assert "package.module:factory" in result.output


def test_export_checkpoint_passes_parity(checkpoint, tmp_path):
    result = runner.invoke(app, ["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "art")])
    assert result.exit_code == 0, result.output
    assert "parity PASS" in result.output
    assert (tmp_path / "art" / "manifest.json").is_file()


def test_export_json_output(checkpoint, tmp_path):
    result = runner.invoke(app, ["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "art"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["parity"]["passed"] is True


def test_export_existing_without_force_exits_6(small_artifact, checkpoint):
    result = runner.invoke(app, ["export", "--checkpoint", str(checkpoint), "--out", str(small_artifact)])
    assert result.exit_code == 6
    assert "--force" in result.output


def test_export_needs_exactly_one_source(tmp_path):
    result = runner.invoke(app, ["export", "--out", str(tmp_path / "art")])
    assert result.exit_code == 2
    assert "exactly one of --checkpoint" in result.output


def test_export_missing_checkpoint_exits_3(tmp_path):
    result = runner.invoke(app, ["export", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "a")])
    assert result.exit_code == 3
    assert "Checkpoint not found" in result.output


def test_export_frozen_factory_exits_4(tmp_path):
    result = runner.invoke(app, ["export", "--factory", "tests.factories:frozen", "--out", str(tmp_path / "a")])
    assert result.exit_code == 4
    assert "num_candidates' is frozen" in result.output
    assert not (tmp_path / "a").exists()


def test_export_custom_factory_with_own_argument_names(tmp_path):
    result = runner.invoke(app, ["export", "--factory", "tests.factories:mean_pool", "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "parity PASS" in result.output


def test_export_bad_factory_exits_3(tmp_path):
    result = runner.invoke(app, ["export", "--factory", "tests.factories:not_a_model", "--out", str(tmp_path / "a")])
    assert result.exit_code == 3
    assert "expected (torch.nn.Module, ExportSpec)" in result.output


def test_inspect_shows_contract(small_artifact):
    result = runner.invoke(app, ["inspect", str(small_artifact)])
    assert result.exit_code == 0, result.output
    assert "[batch, seq_len]" in result.output
    assert "fp32" in result.output


def test_inspect_json_is_manifest(small_artifact):
    result = runner.invoke(app, ["inspect", str(small_artifact), "--json"])
    assert json.loads(result.stdout)["opset"] == 18


def test_inspect_non_artifact_exits_6(tmp_path):
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 6
    assert "not an attn-export artifact" in result.output


def test_verify_passes(small_artifact, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_artifact, copy)
    result = runner.invoke(app, ["verify", str(copy), "--max-requests", "16"])
    assert result.exit_code == 0, result.output
    assert "parity PASS" in result.output


def test_verify_wrong_reference_exits_5(small_artifact, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_artifact, copy)
    torch.manual_seed(99)
    other = TargetAttentionRanker(RankerConfig(vocab_size=2001, embed_dim=16))
    save_checkpoint(copy / "reference" / "checkpoint.pt", other)
    # Re-record checksums so only parity, not the checksum check, can fail.
    from attn_export.artifact import read_manifest, write_manifest

    write_manifest(copy, read_manifest(copy))
    result = runner.invoke(app, ["verify", str(copy), "--max-requests", "16"])
    assert result.exit_code == 5
    assert "Parity of variant 'fp32' failed" in result.output


def test_verify_tampered_file_exits_6(small_artifact, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_artifact, copy)
    with open(copy / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    result = runner.invoke(app, ["verify", str(copy)])
    assert result.exit_code == 6
    assert "model.onnx: sha256" in result.output


def test_train_reports_auc_against_popularity(tmp_path):
    result = runner.invoke(app, ["train", "--epochs", "1", "--out", str(tmp_path / "c.pt"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert 0.5 < summary["model_auc"] <= 1.0
    assert 0.0 < summary["popularity_auc"] <= 1.0
    assert (tmp_path / "c.pt").is_file()


@pytest.mark.movielens
@pytest.mark.slow
def test_build_main_job_on_movielens(movielens_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["build", "--data", str(movielens_path), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert "parity PASS" in result.output
    assert (tmp_path / "artifacts" / "movielens" / "manifest.json").is_file()


def test_export_corrupt_checkpoint_exits_3(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("garbage")
    result = runner.invoke(app, ["export", "--checkpoint", str(bad), "--out", str(tmp_path / "a")])
    assert result.exit_code == 3
    assert "Cannot load checkpoint" in result.output
    assert "weights_only=False" not in result.output


def test_export_model_failing_on_edge_case_exits_5(tmp_path):
    result = runner.invoke(app, ["export", "--factory", "tests.factories:fixed_width", "--out", str(tmp_path / "a")])
    assert result.exit_code == 5
    assert "PyTorch failed on parity case" in result.output
    assert not (tmp_path / "a").exists()


def test_build_refuses_non_artifact_directory(tmp_path):
    target = tmp_path / "notes"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["build", "--out", str(target), "--no-optimize", "--no-quantize"])
    assert result.exit_code == 6
    assert "not an attn-export artifact" in result.output
    assert (target / "keep.txt").read_text() == "mine"


def test_verify_unknown_variant_exits_2(small_artifact):
    result = runner.invoke(app, ["verify", str(small_artifact), "--variant", "nope"])
    assert result.exit_code == 2
    assert "available" in result.output


def test_inspect_tampered_file_exits_6(small_artifact, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_artifact, copy)
    (copy / "parity.json").write_text("{}")
    result = runner.invoke(app, ["inspect", str(copy)])
    assert result.exit_code == 6
    assert "[batch, seq_len]" in result.output
    assert "parity.json: sha256" in result.output


def test_train_malformed_ratings_exits_2(tmp_path):
    data = tmp_path / "ml"
    data.mkdir()
    (data / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,2,abc,5\n")
    result = runner.invoke(app, ["train", "--data", str(data), "--epochs", "1"])
    assert result.exit_code == 2
    assert "Cannot read MovieLens data" in result.output
    assert "Traceback" not in result.output
