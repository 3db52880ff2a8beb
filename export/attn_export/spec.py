"""Declarative export specs: input names, dtypes, named dynamic axes, sample inputs, tolerances."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["TensorSpec", "ExportSpec", "ranker_export_spec", "DEFAULT_SAMPLE_SIZES"]

# Sample sizes for tracing: at least 2 and different on every axis, because torch.export
# specializes an axis whose sample size is 1, and equal sizes can be unified into one symbol.
DEFAULT_SAMPLE_SIZES = {"batch": 3, "seq_len": 7, "num_candidates": 5}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output. `shape` lists axis names (dynamic) or ints (static)."""

    name: str
    dtype: str
    shape: tuple[str | int, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


SampleFn = Callable[[dict[str, int], np.random.Generator], dict[str, np.ndarray]]


@dataclass
class ExportSpec:
    """What the exporter needs to know about a model beyond its weights.

    `sample_inputs(sizes, rng)` returns numpy inputs keyed by input name for the given axis sizes.
    `id_inputs` maps an int64 id input to the lengths input that marks its real slots (or None).
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    sample_inputs: SampleFn
    atol: float = 1e-4
    rtol: float = 1e-3
    vocab_size: int | None = None
    max_seq_len: int | None = None
    padding_id: int = 0
    id_inputs: dict[str, str | None] = field(default_factory=dict)
    sample_sizes: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SAMPLE_SIZES))

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @property
    def dynamic_axes(self) -> list[str]:
        names: list[str] = []
        for tensor in (*self.inputs, *self.outputs):
            for dim in tensor.shape:
                if isinstance(dim, str) and dim not in names:
                    names.append(dim)
        return names

    @property
    def is_id_level(self) -> bool:
        """True when the model keeps the history_ids / history_lengths / candidate_ids contract."""
        return self.input_names == ["history_ids", "history_lengths", "candidate_ids"]


def ranker_export_spec(vocab_size: int, max_seq_len: int | None, atol: float = 1e-4) -> ExportSpec:
    """Spec of the id-level ranker contract."""

    def sample(sizes: dict[str, int], rng: np.random.Generator) -> dict[str, np.ndarray]:
        batch, seq_len, num_candidates = sizes["batch"], sizes["seq_len"], sizes["num_candidates"]
        lengths = rng.integers(0, seq_len + 1, size=batch).astype(np.int64)  # [batch]
        lengths[0] = seq_len
        if batch > 1:
            lengths[1] = 0
        ids = rng.integers(1, vocab_size, size=(batch, seq_len)).astype(np.int64)  # [batch, seq_len]
        ids[np.arange(seq_len)[None, :] >= lengths[:, None]] = 0
        candidates = rng.integers(1, vocab_size, size=(batch, num_candidates)).astype(np.int64)
        return {"history_ids": ids, "history_lengths": lengths, "candidate_ids": candidates}

    return ExportSpec(
        inputs=(
            TensorSpec("history_ids", "int64", ("batch", "seq_len")),
            TensorSpec("history_lengths", "int64", ("batch",)),
            TensorSpec("candidate_ids", "int64", ("batch", "num_candidates")),
        ),
        outputs=(TensorSpec("scores", "float32", ("batch", "num_candidates")),),
        sample_inputs=sample,
        atol=atol,
        vocab_size=vocab_size,
        max_seq_len=max_seq_len,
        id_inputs={"history_ids": "history_lengths", "candidate_ids": None},
    )
