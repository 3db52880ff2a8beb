"""The runtime package must work without torch, onnx, onnxscript or the other project packages."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from runtime_builders import BuiltArtifact, reference_scores

RUNTIME_DIR = Path(__file__).resolve().parents[2] / "runtime"
FORBIDDEN = ("torch", "onnx", "onnxscript", "attn_models", "attn_export")
HEADER = "numpy and onnxruntime only; services install this without torch"

# Runs in a fresh interpreter. A meta-path finder placed first makes every import of a
# forbidden package (or its submodules) fail, as on a machine where it is not installed.
BLOCKED_SCRIPT = textwrap.dedent(
    """
    import importlib.abc
    import json
    import sys

    FORBIDDEN = {forbidden!r}

    class BlockForbidden(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname.split(".")[0] in FORBIDDEN:
                raise ImportError(f"{{fullname}} is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockForbidden())
    for name in list(sys.modules):
        if name.split(".")[0] in FORBIDDEN:
            del sys.modules[name]

    import numpy as np
    from attn_runtime import Scorer

    scorer = Scorer.from_artifact(sys.argv[1])
    scores = scorer.score(
        np.array([[3, 5, 9, 0], [7, 0, 0, 0]]), np.array([3, 1]), np.array([[1, 2, 3], [4, 5, 6]])
    )
    ragged = scorer.score(histories=[[3, 5, 9]], candidates=[[1, 2]])
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in FORBIDDEN)
    print(json.dumps({{"scores": scores.tolist(), "ragged": ragged[0].tolist(), "loaded": loaded}}))
    """
)


def test_runtime_scores_without_torch(ranking_artifact: BuiltArtifact) -> None:
    script = BLOCKED_SCRIPT.format(forbidden=set(FORBIDDEN))
    completed = subprocess.run(
        [sys.executable, "-c", script, str(ranking_artifact.path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])

    assert result["loaded"] == []
    expected = reference_scores(
        ranking_artifact.table,
        np.array([[3, 5, 9, 0], [7, 0, 0, 0]]),
        np.array([3, 1]),
        np.array([[1, 2, 3], [4, 5, 6]]),
    )
    np.testing.assert_allclose(np.array(result["scores"], dtype=np.float32), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result["ragged"], expected[0, :2], rtol=1e-5, atol=1e-5)


def imported_roots(tree: ast.AST) -> set[str]:
    """Return top-level package names imported by import statements or import_module/__import__ calls."""
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                roots.add(node.args[0].value.split(".")[0])
    return roots


def test_imported_roots_finds_all_forms() -> None:
    tree = ast.parse("import torch.nn\nfrom onnx import helper\nimportlib.import_module('attn_models.x')\n")
    assert imported_roots(tree) == {"torch", "onnx", "attn_models"}


def test_runtime_sources_import_nothing_forbidden() -> None:
    sources = sorted(RUNTIME_DIR.rglob("*.py"))
    assert len(sources) >= 5, f"expected the attn_runtime modules under {RUNTIME_DIR}"
    for path in sources:
        roots = imported_roots(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        forbidden = sorted(roots.intersection(FORBIDDEN))
        assert not forbidden, f"{path.relative_to(RUNTIME_DIR)} imports {forbidden}"


def test_runtime_modules_state_dependency_rule() -> None:
    for path in sorted((RUNTIME_DIR / "attn_runtime").glob("*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        first_lines = "\n".join(docstring.splitlines()[:4])
        assert HEADER in first_lines, f"{path.name} docstring must state: {HEADER}"
