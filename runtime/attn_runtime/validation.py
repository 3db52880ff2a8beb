"""Validate request inputs against the manifest before onnxruntime runs the model.

numpy and onnxruntime only; services install this without torch.

Every rule raises `InputError` with the input name, what was expected, what was
received and what to do. The rules, in the order they run:

1. Input names: every declared input is present and no unknown name is given.
2. dtypes: lossless integer conversions only (see `attn_runtime.coercion`).
3. Rank and static dims match the manifest shapes.
4. Named axes agree across inputs, e.g. every input has the same `batch` size.
5. Lengths lie in [0, seq_len] and have the id input's leading shape.
6. seq_len: a zero-width sequence gets one padding column, because some exported
   graphs cannot reduce over an empty axis. A sequence wider than the manifest's
   max_seq_len is cut to max_seq_len when every length fits, and rejected otherwise.
7. Padded slots (position >= length) are overwritten with the padding id. By the model
   contract their content does not change scores, and out-of-range garbage there
   would otherwise make the embedding lookup fail.
8. Ids in real slots lie in [0, vocab_size). Negative ids are rejected even when
   vocab_size is unknown, because onnxruntime's Gather reads negative indices from the
   end of the table instead of failing.
9. The padding id in a real slot is a valid row but usually means an upstream mapping
   bug, so `padding_id_policy` decides: "warn" (default, logged with a count),
   "raise" or "ignore".
10. Arrays are made C-contiguous.

A request whose outputs would have zero size (batch 0 or num_candidates 0) comes back
with zero-filled `empty_outputs`, so the caller can return them without running the model.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, Mapping

import numpy as np

from attn_runtime.coercion import InputRole, coerce_dtype, to_array
from attn_runtime.errors import InputError, ScoringError
from attn_runtime.manifest import Manifest, TensorSpec

__all__ = [
    "PaddingIdPolicy",
    "ValidatedFeeds",
    "FeedValidator",
    "check_outputs_finite",
]

logger = logging.getLogger(__name__)

PaddingIdPolicy = Literal["warn", "raise", "ignore"]

_MAX_LISTED_POSITIONS = 5


@dataclass(frozen=True)
class ValidatedFeeds:
    """Inputs ready for onnxruntime, with the size bound to each named axis.

    `empty_outputs` is set when some output would have zero size and every output shape
    could be resolved from the inputs. The caller returns it instead of running the model.
    """

    feeds: Mapping[str, np.ndarray]
    axis_sizes: Mapping[str, int]
    empty_outputs: Mapping[str, np.ndarray] | None


class _RepeatCounter:
    """Thread-safe counter that reports True on the 1st, 10th, 100th, ... event."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def increment(self) -> tuple[int, bool]:
        with self._lock:
            self._count += 1
            count = self._count
        is_power_of_ten = count == 10 ** (len(str(count)) - 1)
        return count, is_power_of_ten


class FeedValidator:
    """Validate and normalize request feeds for one manifest.

    The validator keeps no per-request state, so one instance may serve many threads.
    Its only shared state is the thread-safe counter behind the padding-id warning.
    """

    def __init__(self, manifest: Manifest, *, padding_id_policy: PaddingIdPolicy = "warn") -> None:
        if padding_id_policy not in ("warn", "raise", "ignore"):
            raise ValueError(
                f"padding_id_policy must be 'warn', 'raise' or 'ignore', got {padding_id_policy!r}."
            )
        self._manifest = manifest
        self._specs = {spec.name: spec for spec in manifest.inputs}
        self._roles = {name: _input_role(manifest, name) for name in self._specs}
        self._padding_id_policy = padding_id_policy
        self._padding_id_counter = _RepeatCounter()

    def validate(
        self, feeds: Mapping[str, Any], *, caller_slots: Mapping[str, np.ndarray] | None = None
    ) -> ValidatedFeeds:
        """Check `feeds` against the manifest and return arrays ready for onnxruntime.

        `caller_slots` optionally maps an id input without a lengths input to a bool mask
        of its shape. False marks slots that the runtime itself padded (ragged
        candidates), which are exempt from the padding-id check and whose outputs the
        caller discards.

        Raises:
            InputError: a rule listed in the module docstring is violated.
        """
        self._check_names(feeds)

        arrays: dict[str, np.ndarray] = {}
        for name, spec in self._specs.items():
            array = coerce_dtype(name, to_array(name, feeds[name]), spec.dtype, role=self._roles[name])
            self._check_rank_and_static_dims(name, array, spec)
            arrays[name] = array

        axis_sizes = self._bind_named_axes(arrays)

        for id_name, lengths_name in self._manifest.id_inputs.items():
            if lengths_name is None:
                known_slots = (caller_slots or {}).get(id_name)
                self._check_id_range(id_name, arrays[id_name], real_mask=known_slots)
                continue
            self._check_lengths(id_name, arrays[id_name], lengths_name, arrays[lengths_name])
            ids = self._fit_sequence_axis(id_name, arrays[id_name], arrays[lengths_name])
            real_mask = _real_slot_mask(ids, arrays[lengths_name])  # same shape as ids
            ids = self._clear_padded_slots(id_name, ids, real_mask)
            self._check_id_range(id_name, ids, real_mask=real_mask)
            arrays[id_name] = ids

        ready = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
        # Rebind because rule 6 may have widened or cut a sequence axis.
        axis_sizes = self._bind_named_axes(ready)
        return ValidatedFeeds(
            feeds=MappingProxyType(ready),
            axis_sizes=MappingProxyType(axis_sizes),
            empty_outputs=self._empty_outputs(axis_sizes),
        )

    def _check_names(self, feeds: Mapping[str, Any]) -> None:
        if not isinstance(feeds, Mapping):
            raise InputError(
                f"Inputs must be a mapping from input name to array, received {type(feeds).__name__}. "
                f"Pass a dict with the keys {list(self._specs)}."
            )
        expected = list(self._specs)
        unknown = sorted(str(name) for name in feeds if name not in self._specs)
        if unknown:
            raise InputError(
                f"Unknown input name(s) {unknown}. The model expects exactly {expected}. "
                "Remove or rename the unknown inputs."
            )
        missing = [name for name in expected if name not in feeds]
        if missing:
            raise InputError(
                f"Missing input(s) {missing}. The model expects exactly {expected}, received "
                f"{sorted(str(name) for name in feeds)}. Add the missing inputs."
            )

    @staticmethod
    def _check_rank_and_static_dims(name: str, array: np.ndarray, spec: TensorSpec) -> None:
        axes = list(spec.shape)
        if array.ndim != len(axes):
            raise InputError(
                f"Input {name!r} must have rank {len(axes)} with axes {axes}, but received rank "
                f"{array.ndim} with shape {array.shape}. Reshape it. For a single row, add the batch "
                "axis with value[np.newaxis]."
            )
        for axis, (dim, size) in enumerate(zip(axes, array.shape)):
            if isinstance(dim, int) and size != dim:
                raise InputError(
                    f"Input {name!r} must have size {dim} on axis {axis} (static in the exported "
                    f"model), but received shape {array.shape}. Pad or slice axis {axis} to {dim}."
                )

    def _bind_named_axes(self, arrays: Mapping[str, np.ndarray]) -> dict[str, int]:
        bound: dict[str, tuple[int, str, int]] = {}
        for name, spec in self._specs.items():
            shape = arrays[name].shape
            for axis, dim in enumerate(spec.shape):
                if not isinstance(dim, str):
                    continue
                size = shape[axis]
                if dim not in bound:
                    bound[dim] = (size, name, axis)
                    continue
                first_size, first_name, first_axis = bound[dim]
                if size != first_size:
                    raise InputError(
                        f"Input {name!r} has {dim} size {size} (axis {axis}, shape {shape}), but "
                        f"input {first_name!r} has {dim} size {first_size} (axis {first_axis}). "
                        f"Every input must agree on the size of axis {dim!r}, so send the same rows "
                        "in every input."
                    )
        return {dim: size for dim, (size, _, _) in bound.items()}

    @staticmethod
    def _check_lengths(id_name: str, ids: np.ndarray, lengths_name: str, lengths: np.ndarray) -> None:
        if lengths.shape != ids.shape[:-1]:
            raise InputError(
                f"Input {lengths_name!r} must have shape {ids.shape[:-1]} (the leading axes of "
                f"{id_name!r} with shape {ids.shape}), but received shape {lengths.shape}. "
                f"Give one length per row of {id_name!r}."
            )
        seq_len = ids.shape[-1]
        invalid = (lengths < 0) | (lengths > seq_len)
        if invalid.any():
            positions = _list_positions(invalid, lengths)
            raise InputError(
                f"Input {lengths_name!r} must hold lengths in [0, {seq_len}] (0 to the seq_len "
                f"of {id_name!r}), but received out-of-range values at {positions}. A length "
                f"counts the real items at the start of each {id_name!r} row, so fix the lengths or "
                "pad the rows to a larger seq_len."
            )

    def _fit_sequence_axis(self, id_name: str, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        seq_len = ids.shape[-1]
        spec = self._specs[id_name]
        sequence_axis_is_dynamic = isinstance(spec.shape[-1], str)

        if seq_len == 0 and sequence_axis_is_dynamic:
            padding = np.full((*ids.shape[:-1], 1), self._manifest.padding_id, dtype=ids.dtype)
            return padding  # [..., 1]

        max_seq_len = self._manifest.max_seq_len
        if max_seq_len is None or seq_len <= max_seq_len:
            return ids

        longest = int(lengths.max()) if lengths.size else 0
        if longest > max_seq_len:
            raise InputError(
                f"Input {id_name!r} has a row with {longest} real items, but the model accepts at "
                f"most max_seq_len={max_seq_len}. Keep the most recent {max_seq_len} items of each "
                "history (e.g. history[-max_seq_len:]) and set the lengths to match."
            )
        # Only padding columns are cut, and by the model contract they cannot change scores.
        return ids[..., :max_seq_len]  # [..., max_seq_len]

    def _clear_padded_slots(self, id_name: str, ids: np.ndarray, real_mask: np.ndarray) -> np.ndarray:
        padding_id = self._manifest.padding_id
        stale = ~real_mask & (ids != padding_id)
        if not stale.any():
            return ids
        logger.debug("Reset %d padded slots of %r to padding id %d", int(stale.sum()), id_name, padding_id)
        cleared = ids.copy()
        cleared[stale] = padding_id
        return cleared

    def _check_id_range(self, id_name: str, ids: np.ndarray, *, real_mask: np.ndarray | None) -> None:
        # Only inputs with a lengths input have padded slots that the caller can see. The
        # ragged form's padded candidate slots are internal, so messages do not mention them.
        slots = "real slots of " if self._manifest.id_inputs.get(id_name) is not None else ""
        checked = ids if real_mask is None else np.where(real_mask, ids, self._manifest.padding_id)

        negative = checked < 0
        if negative.any():
            raise InputError(
                f"Input {id_name!r} contains negative ids at {_list_positions(negative, checked)}. "
                f"Ids in {slots}{id_name!r} must be >= 0 because onnxruntime would read a row from the "
                "end of the embedding table for them instead of failing. Map unknown items to "
                "a trained id or drop them before scoring."
            )

        vocab_size = self._manifest.vocab_size
        if vocab_size is not None:
            too_large = checked >= vocab_size
            if too_large.any():
                raise InputError(
                    f"Input {id_name!r} contains ids >= vocab_size {vocab_size} at "
                    f"{_list_positions(too_large, checked)}. Ids in {slots}{id_name!r} must be in "
                    f"[0, {vocab_size}). Use the same id mapping as at training time, and map "
                    "unknown items to a trained id or drop them."
                )

        self._check_padding_id_in_real_slots(id_name, ids, real_mask)

    def _check_padding_id_in_real_slots(self, id_name: str, ids: np.ndarray, real_mask: np.ndarray | None) -> None:
        if self._padding_id_policy == "ignore":
            return
        padding_id = self._manifest.padding_id
        hits = ids == padding_id
        if real_mask is not None:
            hits &= real_mask
        if not hits.any():
            return

        message = (
            f"Input {id_name!r} contains the padding id {padding_id} in real slots at "
            f"{_list_positions(hits, ids)}. The model scores it as the padding item, which is "
            "usually an id-mapping bug upstream. Map each item to its trained id"
        )
        if self._padding_id_policy == "raise":
            raise InputError(f"{message}, or create the scorer with padding_id_policy='warn' to allow it.")

        count, should_log = self._padding_id_counter.increment()
        if should_log:
            logger.warning("%s. Seen in %d request(s) so far. Further repeats are logged at 10x intervals.", message, count)

    def _empty_outputs(self, axis_sizes: Mapping[str, int]) -> dict[str, np.ndarray] | None:
        outputs: dict[str, np.ndarray] = {}
        for spec in self._manifest.outputs:
            shape: list[int] = []
            for dim in spec.shape:
                if isinstance(dim, int):
                    shape.append(dim)
                elif dim in axis_sizes:
                    shape.append(axis_sizes[dim])
                else:
                    # NOTE: an output axis that no input defines cannot be sized here, so
                    # the model runs even if the request is empty.
                    return None
            outputs[spec.name] = np.zeros(shape, dtype=spec.dtype)

        if all(array.size > 0 for array in outputs.values()):
            return None
        return outputs


def check_outputs_finite(outputs: Mapping[str, np.ndarray], *, variant: str) -> None:
    """Raise ScoringError if a floating-point output contains NaN or infinity.

    Inputs have passed validation when this runs, so a non-finite score points at the
    model or the variant (for example an overflowing quantized graph), not the request.
    """
    for name, array in outputs.items():
        if array.dtype.kind != "f":
            continue
        finite = np.isfinite(array)
        if finite.all():
            continue
        bad = ~finite
        raise ScoringError(
            f"Variant {variant!r} returned {int(bad.sum())} non-finite value(s) in output {name!r} "
            f"at {_list_positions(bad, array)} for validated inputs. This is a model or export "
            "defect, not a request error. Serve the fp32 variant, and re-export or report the "
            "artifact with these inputs."
        )


def _input_role(manifest: Manifest, name: str) -> InputRole:
    if name in manifest.id_inputs:
        return "ids"
    if name in manifest.lengths_inputs:
        return "lengths"
    return "values"


def _real_slot_mask(ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    positions = np.arange(ids.shape[-1])  # [seq_len]
    return positions < lengths[..., np.newaxis]  # [..., seq_len]


def _list_positions(mask: np.ndarray, values: np.ndarray) -> str:
    """Format the first few True positions of `mask` as 'index (value)' pairs."""
    indices = np.argwhere(mask)
    formatted = []
    for index in indices[:_MAX_LISTED_POSITIONS]:
        position = tuple(int(i) for i in index)
        label = position[0] if len(position) == 1 else position
        formatted.append(f"{label} (value {values[position]})")
    more = len(indices) - len(formatted)
    suffix = f" and {more} more" if more > 0 else ""
    return ", ".join(formatted) + suffix
