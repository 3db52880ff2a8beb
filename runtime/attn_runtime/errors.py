"""Exception types raised by attn_runtime.

numpy and onnxruntime only; services install this without torch.
"""

from __future__ import annotations

__all__ = ["ArtifactError", "InputError", "ScoringError"]


class ArtifactError(Exception):
    """An artifact directory, its manifest or one of its files is missing or invalid.

    The message names the file or manifest key, what was expected, what was found
    and what to do (usually: re-export the artifact or restore the file).
    """


class InputError(ValueError):
    """A request input failed validation before it reached onnxruntime.

    The message names the input, what was expected, what was received and how to fix it.
    """


class ScoringError(RuntimeError):
    """onnxruntime failed on a validated request, or returned a non-finite output.

    This points at the model or the runtime, not at the request: the inputs had
    already passed validation.
    """
