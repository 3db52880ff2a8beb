"""Measure this machine's float32 GEMM throughput with one large onnxruntime MatMul.

The result is the reference for "% of peak" in the report: an achieved rate, not the CPU's
theoretical peak. Imported only in the onnxruntime worker; it never imports torch.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

__all__ = ["PEAK_MATMUL_SIZE", "matmul_model_bytes", "measure_matmul_peak"]

logger = logging.getLogger(__name__)

PEAK_MATMUL_SIZE = 1024


def matmul_model_bytes(size: int) -> bytes:
    """Serialize an ONNX graph C = A @ B with float32 inputs of shape [size, size]."""
    import onnx
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [size, size])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, [size, size])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm_peak", [a, b], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def measure_matmul_peak(
    threads: int, spinning: bool, size: int = PEAK_MATMUL_SIZE, min_runs: int = 10, min_seconds: float = 1.0
) -> dict[str, Any]:
    """Time a [size, size] x [size, size] float32 MatMul and return GFLOP/s (2 * size**3 FLOPs per run).

    `gflops` uses the fastest run, the closest this kernel gets to peak; `gflops_median` uses the
    median run. The session uses `threads` intra-op threads and the given spinning policy.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    spin = "1" if spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    session = ort.InferenceSession(matmul_model_bytes(size), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        "a": rng.standard_normal((size, size), dtype=np.float32),
        "b": rng.standard_normal((size, size), dtype=np.float32),
    }
    for _ in range(3):
        session.run(None, feeds)
    samples: list[int] = []
    start = time.perf_counter_ns()
    while len(samples) < min_runs or time.perf_counter_ns() - start < min_seconds * 1e9:
        before = time.perf_counter_ns()
        session.run(None, feeds)
        samples.append(time.perf_counter_ns() - before)
    flops = 2.0 * size**3
    fastest_s = min(samples) / 1e9
    median_s = float(np.median(samples)) / 1e9
    logger.info("MatMul %d^3 with %d thread(s): %.1f GFLOP/s", size, threads, flops / fastest_s / 1e9)
    return {
        "threads": threads,
        "matmul_size": size,
        "runs": len(samples),
        "gflops": flops / fastest_s / 1e9,
        "gflops_median": flops / median_s / 1e9,
        "fastest_ms": fastest_s * 1e3,
        "median_ms": median_s * 1e3,
    }
