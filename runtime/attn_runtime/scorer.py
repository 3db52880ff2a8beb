"""Score requests with an exported artifact: the main entry point of attn_runtime.

numpy and onnxruntime only; services install this without torch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from attn_runtime.artifact import Artifact
from attn_runtime.errors import ArtifactError, InputError, ScoringError
from attn_runtime.manifest import Manifest, VariantSpec
from attn_runtime.packing import pack_rows
from attn_runtime.ranking import top_k
from attn_runtime.session import ORT_ERRORS, SessionConfig, build_session
from attn_runtime.validation import FeedValidator, PaddingIdPolicy, check_outputs_finite

__all__ = ["Scorer", "CONTRACT_INPUTS", "SCORES_OUTPUT"]

logger = logging.getLogger(__name__)

CONTRACT_INPUTS = ("history_ids", "history_lengths", "candidate_ids")
SCORES_OUTPUT = "scores"

_ORT_TYPES = {
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(bool)": np.dtype(np.bool_),
}


class Scorer:
    """Validated, thread-safe scoring with one variant of an artifact.

    Build it with `Scorer.from_artifact(path)`. Every call validates its inputs (see
    `attn_runtime.validation`) before onnxruntime runs, and rejects non-finite outputs.
    The scorer keeps no per-call state, and onnxruntime's `InferenceSession.run` is
    thread-safe, so one instance can serve concurrent requests.
    """

    def __init__(
        self,
        artifact: Artifact,
        variant: VariantSpec,
        session: ort.InferenceSession,
        *,
        padding_id_policy: PaddingIdPolicy = "warn",
    ) -> None:
        """Wrap an already-built session. Most callers want `from_artifact` instead.

        Raises:
            ArtifactError: the session's inputs or outputs differ from the manifest.
        """
        self._artifact = artifact
        self._variant = variant
        self._session = session
        self._validator = FeedValidator(artifact.manifest, padding_id_policy=padding_id_policy)
        self._output_names = tuple(spec.name for spec in artifact.manifest.outputs)
        _check_session_matches_manifest(session, artifact.manifest, variant)

    @classmethod
    def from_artifact(
        cls,
        path: str | Path,
        variant: str | None = None,
        config: SessionConfig | None = None,
        *,
        allow_failed: bool = False,
        verify_checksums: bool = True,
        padding_id_policy: PaddingIdPolicy = "warn",
    ) -> Scorer:
        """Load the artifact directory `path` and open one variant on the CPU.

        variant: a variant name, or None for the manifest default (falling back to
            "fp32" if the default failed its gate or its files do not verify).
        config: onnxruntime session settings, SessionConfig() when None.
        allow_failed: load a variant that failed its gate.
        verify_checksums: check the sha256 of every artifact file before loading. The
            served variant's files must match the manifest. Other listed files that are
            missing or changed are logged as warnings.
        padding_id_policy: what to do with the padding id in a real slot ("warn",
            "raise" or "ignore").

        Raises:
            ArtifactError: the artifact is missing or invalid, a file of the served
                variant is missing or corrupted, the variant cannot be used, or
                onnxruntime cannot load it.
        """
        artifact = Artifact.load(path, verify_checksums=verify_checksums)
        spec = artifact.select_variant(variant, allow_failed=allow_failed)
        session = build_session(artifact.model_path(spec), config or SessionConfig(), variant_name=spec.name)
        return cls(artifact, spec, session, padding_id_policy=padding_id_policy)

    @property
    def variant(self) -> str:
        """Name of the variant being served, e.g. "optimized"."""
        return self._variant.name

    @property
    def manifest(self) -> Manifest:
        """Validated manifest of the artifact. Its top-level mappings are read-only, and nested values must not be modified either."""
        return self._artifact.manifest

    @property
    def artifact_path(self) -> Path:
        """Directory the artifact was loaded from."""
        return self._artifact.path

    @property
    def input_names(self) -> tuple[str, ...]:
        """Model input names in manifest order."""
        return tuple(spec.name for spec in self._artifact.manifest.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Model output names in manifest order."""
        return self._output_names

    def __repr__(self) -> str:
        return f"Scorer(artifact={str(self._artifact.path)!r}, variant={self.variant!r})"

    def run(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Validate `feeds` and run the model, returning every output by name.

        This is the generic path for any artifact, including custom models whose
        inputs differ from the ranking contract. Outputs of zero size are returned
        without running the model.

        Raises:
            InputError: an input failed validation.
            ScoringError: onnxruntime failed, or an output contains NaN or infinity.
        """
        return self._run_validated(feeds, caller_slots=None)

    def score(
        self,
        history_ids: Any = None,
        history_lengths: Any = None,
        candidate_ids: Any = None,
        *,
        histories: Sequence[Sequence[int]] | None = None,
        candidates: Sequence[Sequence[int]] | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Score candidates for each user. Scores are logits, and a higher score ranks first.

        Two call forms:
          * Padded arrays: `score(history_ids, history_lengths, candidate_ids)` with
            history_ids `[batch, seq_len]` right-padded with the padding id,
            history_lengths `[batch]`, candidate_ids `[batch, num_candidates]`.
            Returns float32 `[batch, num_candidates]`.
          * Ragged lists: `score(histories=[[3, 5, 9], []], candidates=[[1, 2], [4]])`.
            Users may have different history lengths and candidate counts. Returns a
            list with one float32 array `[num_candidates_i]` per user, in input order.
            The list form always returns a list, even when all counts are equal.

        Raises:
            InputError: the call mixes both forms, gives an incomplete form, or an input
                fails validation. In the list form, history_ids[i, j] in a message is
                histories[i][j] and candidate_ids[i, j] is candidates[i][j].
            ScoringError: onnxruntime failed, or returned a non-finite score.
        """
        self._require_contract()
        uses_arrays = any(value is not None for value in (history_ids, history_lengths, candidate_ids))
        uses_lists = histories is not None or candidates is not None

        if uses_arrays and uses_lists:
            raise InputError(
                "score() received both padded arrays (history_ids, history_lengths, candidate_ids) "
                "and ragged lists (histories, candidates). Use one form per call."
            )
        if uses_lists:
            return self._score_lists(histories, candidates)

        missing = [
            name
            for name, value in zip(CONTRACT_INPUTS, (history_ids, history_lengths, candidate_ids))
            if value is None
        ]
        if missing:
            raise InputError(
                f"score() is missing {missing}. Pass history_ids, history_lengths and candidate_ids, "
                "or the ragged form score(histories=..., candidates=...)."
            )
        feeds = {
            "history_ids": history_ids,
            "history_lengths": history_lengths,
            "candidate_ids": candidate_ids,
        }
        return self._run_validated(feeds, caller_slots=None)[SCORES_OUTPUT]

    def top_k(self, scores_or_inputs: Any, k: int) -> tuple[Any, Any]:
        """Return `(indices, scores)` of the k best candidates per user, best first.

        `scores_or_inputs` is either the output of `score` (array or list of arrays),
        or a dict of `score` keyword arguments (padded arrays, or histories and
        candidates), which is scored first. k is clipped to each user's candidate
        count, and equal scores keep candidate order. See `attn_runtime.ranking.top_k`.

        Raises:
            InputError: invalid k, scores or inputs.
            ScoringError: see `score`.
        """
        if isinstance(scores_or_inputs, Mapping):
            scores = self.score(**scores_or_inputs)
        else:
            scores = scores_or_inputs
        return top_k(scores, k)

    def _run_validated(
        self, feeds: Mapping[str, Any], *, caller_slots: Mapping[str, np.ndarray] | None
    ) -> dict[str, np.ndarray]:
        validated = self._validator.validate(feeds, caller_slots=caller_slots)
        if validated.empty_outputs is not None:
            return dict(validated.empty_outputs)

        try:
            values = self._session.run(list(self._output_names), dict(validated.feeds))
        except ORT_ERRORS as error:
            shapes = {name: array.shape for name, array in validated.feeds.items()}
            logger.error("onnxruntime failed on variant %r with input shapes %s: %s", self.variant, shapes, error)
            raise ScoringError(
                f"onnxruntime failed on variant {self.variant!r} of {str(self._artifact.path)!r} "
                f"with validated input shapes {shapes}: {error}. The inputs passed validation, so "
                "this points at the model: try the fp32 variant and report the artifact."
            ) from error

        outputs = dict(zip(self._output_names, values))
        check_outputs_finite(outputs, variant=self.variant)
        return outputs

    def _score_lists(self, histories: Any, candidates: Any) -> list[np.ndarray]:
        if histories is None or candidates is None:
            raise InputError(
                "The ragged form needs both histories and candidates, e.g. "
                "score(histories=[[3, 5, 9]], candidates=[[1, 2]])."
            )
        padding_id = self.manifest.padding_id
        history_ids, history_lengths = pack_rows("histories", histories, padding_id=padding_id)
        candidate_ids, candidate_counts = pack_rows("candidates", candidates, padding_id=padding_id)
        if history_ids.shape[0] != candidate_ids.shape[0]:
            raise InputError(
                f"histories has {history_ids.shape[0]} users but candidates has "
                f"{candidate_ids.shape[0]}. Give one candidate list per history, in the same order."
            )

        # Every user with no candidates gives width 0; the padded width 1 would only score padding.
        if not candidate_counts.any():
            candidate_ids = candidate_ids[:, :0]  # [batch, 0]
        positions = np.arange(candidate_ids.shape[1])  # [num_candidates]
        caller_slots = positions < candidate_counts[:, np.newaxis]  # [batch, num_candidates]

        feeds = {
            "history_ids": history_ids,
            "history_lengths": history_lengths,
            "candidate_ids": candidate_ids,
        }
        try:
            scores = self._run_validated(feeds, caller_slots={"candidate_ids": caller_slots})[SCORES_OUTPUT]
        except InputError as error:
            raise InputError(
                f"{error} (In the ragged form, history_ids[i, j] is histories[i][j] and "
                "candidate_ids[i, j] is candidates[i][j].)"
            ) from error
        return [scores[row, :count].copy() for row, count in enumerate(candidate_counts.tolist())]

    def _require_contract(self) -> None:
        manifest = self.manifest
        output_names = {spec.name for spec in manifest.outputs}
        if set(self.input_names) != set(CONTRACT_INPUTS) or SCORES_OUTPUT not in output_names:
            raise InputError(
                f"score() needs a model with inputs {list(CONTRACT_INPUTS)} and output "
                f"{SCORES_OUTPUT!r}, but this artifact declares inputs {list(self.input_names)} "
                f"and outputs {sorted(output_names)}. Call Scorer.run(feeds) with these input names."
            )


def _check_session_matches_manifest(session: ort.InferenceSession, manifest: Manifest, variant: VariantSpec) -> None:
    declared = {spec.name: spec for spec in manifest.inputs}
    actual = {node.name: node for node in session.get_inputs()}
    fix = "manifest.json and the model file disagree, so re-export the artifact."

    if set(declared) != set(actual):
        raise ArtifactError(
            f"Variant {variant.name!r} ({variant.model_file}) has inputs {sorted(actual)}, but "
            f"manifest.json declares {sorted(declared)}. {fix}"
        )
    for name, spec in declared.items():
        node = actual[name]
        dtype = _ORT_TYPES.get(node.type)
        if dtype != spec.dtype or len(node.shape) != len(spec.shape):
            raise ArtifactError(
                f"Variant {variant.name!r} ({variant.model_file}) input {name!r} is {node.type} with "
                f"shape {node.shape}, but manifest.json declares {spec.dtype} with shape "
                f"{list(spec.shape)}. {fix}"
            )

    actual_outputs = {node.name for node in session.get_outputs()}
    missing = [spec.name for spec in manifest.outputs if spec.name not in actual_outputs]
    if missing:
        raise ArtifactError(
            f"Variant {variant.name!r} ({variant.model_file}) has outputs {sorted(actual_outputs)}, "
            f"but manifest.json declares {missing} as well. {fix}"
        )
