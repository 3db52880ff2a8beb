"""Export tests: every model variant through torch.onnx and onnxruntime, axis checks, atomicity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from attn_models import RankerConfig, TargetAttentionRanker
from attn_export.artifact import read_manifest, sha256_file
from attn_export.errors import ArtifactError, FrozenAxisError
from attn_export.exporter import export_onnx
from attn_export.pipeline import export_ranker, verify_artifact
from attn_export.sources import DataSource
from attn_export.spec import ranker_export_spec

from .factories import FrozenCandidates

VARIANTS = {
    "dot": dict(attention="dot", positional="none", head="dot"),
    "projected": dict(attention="projected", positional="none"),
    "multihead": dict(attention="multihead", num_heads=4),
    "learned_positions": dict(attention="multihead", positional="learned", max_seq_len=64),
    "sinusoidal": dict(attention="projected", positional="sinusoidal"),
    "self_attention": dict(attention="multihead", self_attention_blocks=1),
    "din": dict(attention="din"),
    "din_softmax_dot_head": dict(attention="din", din_softmax=True, head="dot"),
}


def _dims(value: onnx.ValueInfoProto) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_exports_with_dynamic_axes_and_parity(name, tmp_path):
    torch.manual_seed(0)
    model = TargetAttentionRanker(RankerConfig(vocab_size=300, embed_dim=16, **VARIANTS[name])).eval()
    result = export_ranker(model, tmp_path / name, data=None)

    proto = onnx.load(str(tmp_path / name / "model.onnx"))
    dims = {v.name: _dims(v) for v in (*proto.graph.input, *proto.graph.output)}
    assert dims["history_ids"] == ["batch", "seq_len"]
    assert dims["history_lengths"] == ["batch"]
    assert dims["candidate_ids"] == ["batch", "num_candidates"]
    assert dims["scores"] == ["batch", "num_candidates"]
    assert result.report.passed, result.report.failures
    assert result.report.max_abs_diff <= 1e-4
    property_names = {p.name for p in result.report.properties}
    assert {"extra_padding_changes_nothing", "padded_slot_ids_change_nothing",
            "candidate_permutation_permutes_scores", "rows_independent"} <= property_names


def test_empty_history_in_graph_equals_eager(small_artifact):
    from attn_models import load_checkpoint

    model = load_checkpoint(small_artifact / "reference" / "checkpoint.pt")
    session = ort.InferenceSession(str(small_artifact / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = {
        "history_ids": np.zeros((2, 6), dtype=np.int64),
        "history_lengths": np.zeros(2, dtype=np.int64),
        "candidate_ids": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int64),
    }
    onnx_scores = session.run(["scores"], feeds)[0]
    eager = model(*(torch.from_numpy(feeds[k]) for k in ("history_ids", "history_lengths", "candidate_ids")))
    assert np.isfinite(onnx_scores).all()
    np.testing.assert_allclose(onnx_scores, eager.detach().numpy(), atol=1e-5, rtol=0)


def test_edge_grid_covers_required_cases(small_artifact):
    parity = json.loads((small_artifact / "parity.json").read_text())
    cases = {record["case"] for record in parity["outputs"]}
    assert {"heldout", "empty_history", "seq_len_1", "num_candidates_1", "max_seq_len",
            "mixed_lengths", "batch_1", "batch_64"} <= cases
    assert parity["passed"]
    heldout = next(r for r in parity["rankings"] if r["case"] == "heldout")
    assert heldout["reference_auc"] is not None
    assert abs(heldout["auc_drop"]) < 1e-4


def test_frozen_axis_export_fails_naming_axis(tmp_path):
    with pytest.raises(FrozenAxisError, match="num_candidates' is frozen to 5"):
        export_onnx(FrozenCandidates(), ranker_export_spec(50, None), tmp_path / "m.onnx")


def test_manifest_records_contract_and_checksums(small_artifact):
    manifest = read_manifest(small_artifact)
    assert manifest["opset"] == 18
    assert manifest["padding_id"] == 0
    assert manifest["vocab_size"] == 2001
    assert manifest["dynamic_axes"] == ["batch", "seq_len", "num_candidates"]
    assert [i["name"] for i in manifest["inputs"]] == ["history_ids", "history_lengths", "candidate_ids"]
    assert set(manifest["producer"]) == {"attn_export", "torch", "onnx", "onnxscript", "onnxruntime"}
    assert manifest["variants"]["fp32"]["passed"] is True
    for name, entry in manifest["files"].items():
        assert sha256_file(small_artifact / name) == entry["sha256"], name
    metadata = {p.key: p.value for p in onnx.load(str(small_artifact / "model.onnx")).metadata_props}
    assert json.loads(metadata["attn_export.manifest"])["opset"] == 18


def test_existing_artifact_needs_force(small_artifact):
    model = TargetAttentionRanker(RankerConfig(vocab_size=2001, embed_dim=16))
    with pytest.raises(ArtifactError, match="--force"):
        export_ranker(model, small_artifact, data=None)


def test_verify_artifact_passes(small_artifact):
    report = verify_artifact(small_artifact, max_requests=32)
    assert report.passed, report.failures


def _export_script(target: Path, embed_dim: int) -> str:
    return (
        "import torch\n"
        "from attn_models import RankerConfig, TargetAttentionRanker\n"
        "from attn_export.pipeline import export_ranker\n"
        "from attn_export.sources import DataSource\n"
        f"model = TargetAttentionRanker(RankerConfig(vocab_size=2001, embed_dim={embed_dim}))\n"
        f"export_ranker(model, {str(target)!r}, DataSource('synthetic'), force=True)\n"
    )


def test_killed_export_leaves_previous_artifact_loadable(tmp_path):
    target = tmp_path / "art"
    subprocess.run([sys.executable, "-c", _export_script(target, 8)], check=True, timeout=300)
    before = read_manifest(target)

    process = subprocess.Popen([sys.executable, "-c", _export_script(target, 24)])
    # Kill the replacement export once it has started writing its staging directory.
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".art.staging-*/model.onnx")) and time.monotonic() < deadline:
        assert process.poll() is None, "export finished before it could be interrupted"
        time.sleep(0.05)
    assert process.poll() is None, "export finished before it could be interrupted"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)

    after = read_manifest(target)
    assert after["files"] == before["files"]
    assert list(tmp_path.glob(".art.staging-*")), "the killed run's staging directory should remain"
    for name, entry in after["files"].items():
        assert sha256_file(target / name) == entry["sha256"]
    session = ort.InferenceSession(str(target / "model.onnx"), providers=["CPUExecutionProvider"])
    scores = session.run(None, {"history_ids": np.array([[3, 4]], dtype=np.int64),
                                "history_lengths": np.array([2], dtype=np.int64),
                                "candidate_ids": np.array([[5]], dtype=np.int64)})[0]
    assert np.isfinite(scores).all()


def test_large_weights_go_to_external_data(tmp_path, monkeypatch):
    from attn_export import exporter
    from attn_runtime import Scorer

    monkeypatch.setattr(exporter, "EXTERNAL_DATA_THRESHOLD_BYTES", 1024)
    torch.manual_seed(0)
    model = TargetAttentionRanker(RankerConfig(vocab_size=500, embed_dim=16)).eval()
    result = export_ranker(model, tmp_path / "art", data=None)

    assert "model.onnx.data" in result.manifest["files"]
    table_bytes = 500 * 16 * 4
    assert (tmp_path / "art" / "model.onnx.data").stat().st_size >= table_bytes
    scorer = Scorer.from_artifact(tmp_path / "art", variant="fp32")
    scores = scorer.score(np.array([[4, 7, 0]]), np.array([2]), np.array([[1, 2, 3]]))
    expected = model(torch.tensor([[4, 7, 0]]), torch.tensor([2]), torch.tensor([[1, 2, 3]])).detach().numpy()
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=0)


def test_next_export_removes_stale_staging(tmp_path):
    stale = tmp_path / ".art.staging-999999999-abc"
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"partial")
    model = TargetAttentionRanker(RankerConfig(vocab_size=100, embed_dim=8)).eval()
    export_ranker(model, tmp_path / "art", data=None)
    assert not stale.exists()
    assert (tmp_path / "art" / "manifest.json").is_file()


def test_replacing_artifact_swaps_whole_directory(tmp_path):
    first = TargetAttentionRanker(RankerConfig(vocab_size=100, embed_dim=8)).eval()
    export_ranker(first, tmp_path / "art", data=None)
    (tmp_path / "art" / "stray.txt").write_text("from the old artifact")
    second = TargetAttentionRanker(RankerConfig(vocab_size=100, embed_dim=12)).eval()
    export_ranker(second, tmp_path / "art", data=None, force=True)
    assert not (tmp_path / "art" / "stray.txt").exists()
    assert read_manifest(tmp_path / "art")["model"]["config"]["embed_dim"] == 12
    assert [p.name for p in tmp_path.iterdir()] == ["art"]
