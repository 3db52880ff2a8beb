"""PyTorch eager engine of the benchmark worker: the original model under torch.inference_mode().

Imported only inside the PyTorch worker process; it never imports onnxruntime.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .grid import GridPoint
from .inputs import digest_request, make_request
from .stats import TimingBudget, summarize_latencies, time_calls

__all__ = ["run_torch_spec"]

logger = logging.getLogger(__name__)


def _configure_threads(threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    return {
        "torch_version": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"),
        "mkldnn_available": bool(torch.backends.mkldnn.is_available()),
    }


def run_torch_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Time the artifact's PyTorch original on every point of `spec`; see `worker` for the spec."""
    import torch

    from ..artifact import read_manifest
    from ..sources import load_reference

    threads = int(spec["threads"])
    settings = _configure_threads(threads)
    artifact = Path(spec["artifact"])
    manifest = read_manifest(artifact)
    model, export_spec = load_reference(artifact, manifest)
    model.eval()
    budget = TimingBudget(**spec["budget"])
    results = []
    for point_dict in spec["points"]:
        point = GridPoint.from_dict(point_dict)
        feeds = make_request(point, int(spec["vocab_size"]), seed=int(spec["seed"]))
        tensors = tuple(torch.from_numpy(feeds[name]) for name in export_spec.input_names)

        def call() -> Any:
            with torch.inference_mode():
                return model(*tensors)

        logger.info("PyTorch eager, %d thread(s): timing %s", threads, point.label())
        latencies, exhausted = time_calls(call, budget)
        results.append({
            **point.to_dict(),
            **summarize_latencies(latencies, point.batch, point.num_candidates),
            "budget_exhausted": exhausted,
            "input_digest": digest_request(feeds),
        })
    return {"engine": "pytorch", "variant": "eager", "threads": threads, "settings": settings, "results": results}
