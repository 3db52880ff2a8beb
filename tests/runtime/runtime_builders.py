"""Builders that write small but real artifacts for the runtime tests.

The models are real ONNX graphs built with onnx.helper and run by onnxruntime. They
follow the ranking contract: a user's interest vector is the sum of the embeddings of
the real history items (slots below history_lengths), and each candidate's score is
the dot product of its embedding with that vector. `reference_scores` computes the
same in numpy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 18
VOCAB_SIZE = 50
EMBEDDING_DIM = 8


def make_table(vocab_size: int = VOCAB_SIZE, dim: int = EMBEDDING_DIM, seed: int = 0) -> np.ndarray:
    """Return a random float32 embedding table [vocab_size, dim] with values in [-1, 1)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(vocab_size, dim)).astype(np.float32)


def build_ranking_model(table: np.ndarray) -> onnx.ModelProto:
    """Build the contract ranking graph around the embedding table [vocab, dim]."""
    int64 = TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info("history_ids", int64, ["batch", "seq_len"]),
        helper.make_tensor_value_info("history_lengths", int64, ["batch"]),
        helper.make_tensor_value_info("candidate_ids", int64, ["batch", "num_candidates"]),
    ]
    outputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "num_candidates"])]
    initializers = [
        numpy_helper.from_array(table, "embedding"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
        numpy_helper.from_array(np.array(1, dtype=np.int64), "one"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis_2"),
    ]
    nodes = [
        helper.make_node("Gather", ["embedding", "history_ids"], ["history_vectors"], axis=0),  # [b, s, d]
        helper.make_node("Shape", ["history_ids"], ["history_shape"]),
        helper.make_node("Gather", ["history_shape", "one"], ["seq_len"], axis=0),
        helper.make_node("Range", ["zero", "seq_len", "one"], ["positions"]),  # [s]
        helper.make_node("Unsqueeze", ["history_lengths", "axis_1"], ["lengths_column"]),  # [b, 1]
        helper.make_node("Less", ["positions", "lengths_column"], ["real_slots"]),  # [b, s]
        helper.make_node("Cast", ["real_slots"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "axis_2"], ["mask_3d"]),  # [b, s, 1]
        helper.make_node("Mul", ["history_vectors", "mask_3d"], ["masked_vectors"]),
        helper.make_node("ReduceSum", ["masked_vectors", "axis_1"], ["interest"], keepdims=0),  # [b, d]
        helper.make_node("Gather", ["embedding", "candidate_ids"], ["candidate_vectors"], axis=0),  # [b, n, d]
        helper.make_node("Unsqueeze", ["interest", "axis_1"], ["interest_3d"]),  # [b, 1, d]
        helper.make_node("Mul", ["candidate_vectors", "interest_3d"], ["products"]),
        helper.make_node("ReduceSum", ["products", "axis_2"], ["scores"], keepdims=0),  # [b, n]
    ]
    graph = helper.make_graph(nodes, "test_ranker", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="attn-runtime-tests")
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def build_custom_model(vocab_size: int = VOCAB_SIZE, seed: int = 1) -> tuple[onnx.ModelProto, np.ndarray]:
    """Build a non-contract model: out[b] = sum_n bias[item_ids[b, n]] * weights[b, n].

    Returns the model and its bias table [vocab_size].
    """
    bias = np.random.default_rng(seed).normal(size=vocab_size).astype(np.float32)
    inputs = [
        helper.make_tensor_value_info("item_ids", TensorProto.INT64, ["batch", "items"]),
        helper.make_tensor_value_info("weights", TensorProto.FLOAT, ["batch", "items"]),
    ]
    outputs = [helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch"])]
    initializers = [
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_1"),
    ]
    nodes = [
        helper.make_node("Gather", ["bias", "item_ids"], ["item_bias"], axis=0),  # [b, items]
        helper.make_node("Mul", ["item_bias", "weights"], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "axis_1"], ["total"], keepdims=0),  # [b]
    ]
    graph = helper.make_graph(nodes, "custom", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model, bias


def reference_scores(table: np.ndarray, history_ids: np.ndarray, history_lengths: np.ndarray, candidate_ids: np.ndarray) -> np.ndarray:
    """Compute the contract scores in numpy, float32 [batch, num_candidates]."""
    seq_len = history_ids.shape[1]
    mask = np.arange(seq_len)[np.newaxis, :] < history_lengths[:, np.newaxis]  # [b, s]
    interest = (table[history_ids] * mask[..., np.newaxis]).sum(axis=1)  # [b, d]
    return (table[candidate_ids] * interest[:, np.newaxis, :]).sum(axis=-1).astype(np.float32)  # [b, n]


def sha256_hex(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class VariantPlan:
    """Plan for one variant: its model, its gate result and where its weights are stored.

    With `external_data`, the weights go to `weights/<name>.onnx.data`, listed in the
    variant's files. Adding `data_beside_model` writes them to `<name>.onnx.data` next to
    the model and lists that file only in the top-level files, as attn-export does.
    """

    model: onnx.ModelProto
    passed: bool = True
    external_data: bool = False
    data_beside_model: bool = False


@dataclass
class BuiltArtifact:
    path: Path
    manifest: dict[str, Any]
    table: np.ndarray | None = None
    bias: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def rewrite_manifest(self, **changes: Any) -> None:
        """Update top-level manifest keys and write manifest.json again."""
        self.manifest.update(changes)
        (self.path / "manifest.json").write_text(json.dumps(self.manifest, indent=2))


CONTRACT_INPUTS = [
    {"name": "history_ids", "dtype": "int64", "shape": ["batch", "seq_len"]},
    {"name": "history_lengths", "dtype": "int64", "shape": ["batch"]},
    {"name": "candidate_ids", "dtype": "int64", "shape": ["batch", "num_candidates"]},
]
CONTRACT_OUTPUTS = [{"name": "scores", "dtype": "float32", "shape": ["batch", "num_candidates"]}]


def write_artifact(
    directory: Path,
    variants: dict[str, VariantPlan],
    *,
    default_variant: str,
    inputs: list[dict[str, Any]] = CONTRACT_INPUTS,
    outputs: list[dict[str, Any]] = CONTRACT_OUTPUTS,
    id_inputs: dict[str, str | None] | None = None,
    vocab_size: int | None = VOCAB_SIZE,
    max_seq_len: int | None = None,
) -> dict[str, Any]:
    """Write model files, parity.json and a manifest with real sha256s, and return the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    variant_entries: dict[str, Any] = {}
    for name, plan in variants.items():
        model_file = f"{name}.onnx"
        files = [model_file]
        if plan.external_data:
            data_file = f"{model_file}.data" if plan.data_beside_model else f"weights/{name}.onnx.data"
            (directory / data_file).parent.mkdir(exist_ok=True)
            onnx.save_model(
                plan.model,
                str(directory / model_file),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data_file,
                size_threshold=1024,  # only the embedding table; shape constants stay inline
            )
            if not plan.data_beside_model:
                files.append(data_file)
        else:
            onnx.save_model(plan.model, str(directory / model_file))
        variant_entries[name] = {
            "model_file": model_file,
            "files": files,
            "passed": plan.passed,
            "description": f"test variant {name}",
            "gate": {"max_abs_diff": 0.0},
        }

    (directory / "parity.json").write_text(json.dumps({"note": "written by the runtime tests"}))

    listed = sorted(
        path.relative_to(directory).as_posix()
        for path in directory.rglob("*")
        if path.is_file() and path.name != "manifest.json"
    )
    manifest = {
        "format_version": 1,
        "created_utc": "2026-12-04T19:00:00Z",
        "model": {"kind": "target_attention_ranker", "config": {"vocab_size": vocab_size}},
        "inputs": inputs,
        "outputs": outputs,
        "dynamic_axes": ["batch", "seq_len", "num_candidates"],
        "id_inputs": id_inputs if id_inputs is not None else {"history_ids": "history_lengths", "candidate_ids": None},
        "vocab_size": vocab_size,
        "max_seq_len": max_seq_len,
        "padding_id": 0,
        "opset": OPSET,
        "producer": {"attn_export": "tests"},
        "variants": variant_entries,
        "default_variant": default_variant,
        "files": {
            path: {"sha256": sha256_hex(directory / path), "bytes": (directory / path).stat().st_size}
            for path in listed
        },
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def build_ranking_artifact(
    directory: Path,
    *,
    variant_passed: dict[str, bool] | None = None,
    default_variant: str = "optimized",
    max_seq_len: int | None = None,
    vocab_size: int | None = VOCAB_SIZE,
    table: np.ndarray | None = None,
    external_data_variants: tuple[str, ...] = (),
) -> BuiltArtifact:
    """Write a ranking artifact whose variants all hold the same graph."""
    table = make_table() if table is None else table
    model = build_ranking_model(table)
    passed = variant_passed if variant_passed is not None else {"fp32": True, "optimized": True}
    plans = {
        name: VariantPlan(model=model, passed=ok, external_data=name in external_data_variants)
        for name, ok in passed.items()
    }
    manifest = write_artifact(
        directory, plans, default_variant=default_variant, max_seq_len=max_seq_len, vocab_size=vocab_size
    )
    return BuiltArtifact(path=directory, manifest=manifest, table=table)
