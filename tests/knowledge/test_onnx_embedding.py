"""The command line's embedder (ONNX Runtime, exported once from the installed package) gives the library's
vectors, so a question embedded by `codexk8s docs search` is compared with chunks embedded by the indexer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codexk8s_pipelines.knowledge.embedding import Embedder
from codexk8s_pipelines.knowledge.onnx_embedding import OnnxEmbedder, onnx_embedder, onnx_path

TEXTS = [
    "How do I connect the app to the Postgres database?",
    "SHOP_LOG_LEVEL",
    "Zürich — naïve café, 東京, emoji 🚀 and a `code span`",
    "word " * 400,  # past the model's 256 word pieces: both truncate the same way
    "x",
    "Configuration > Listing the current configuration\n\n## Listing\n\n```bash\npoetry config --list\n```",
]


def test_onnx_vectors_equal_the_sentence_transformers_ones(embedder: Embedder) -> None:
    onnx = onnx_embedder()
    assert (onnx.model_name, onnx.dim) == (embedder.model_name, embedder.dim)
    ours, theirs = onnx.encode(TEXTS), embedder.encode(TEXTS)
    assert ours.shape == theirs.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    cosines = (ours * theirs).sum(axis=1)
    assert cosines.min() >= 1 - 1e-5, cosines
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # One at a time (no padding) equals the batch (padded to its longest text).
    assert np.allclose(onnx.encode(TEXTS[:1])[0], ours[0], atol=1e-5)
    assert onnx.encode([]).shape == (0, 384)


def test_the_export_is_cached_and_reused(tmp_path: Path) -> None:
    onnx = onnx_embedder()
    assert isinstance(onnx, OnnxEmbedder)
    from codexk8s_pipelines.knowledge.embedding import resolve_model

    path = onnx_path(resolve_model()[0])
    assert path.is_file() and path.with_suffix(".opt.onnx").is_file()
    stamp = path.stat().st_mtime_ns
    again = OnnxEmbedder(export=False)  # loads the cached graph: no torch, no export
    assert np.allclose(again.encode(["refund"]), onnx.encode(["refund"]), atol=1e-6)
    assert path.stat().st_mtime_ns == stamp


def test_a_search_from_the_command_line_never_imports_torch(indexed_url: str, tmp_path: Path) -> None:
    """The command's start is what issue 19 measured (8.5 s, nearly all of it importing sentence-transformers)."""
    code = (
        "import sys\n"
        "from codexk8s_pipelines.cli import main\n"
        "sys.argv = ['codexk8s', 'docs', 'search', 'How can a customer get their money back?', '-k', '3']\n"
        "code = main()\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "CODEXK8S_DATABASE_URL": indexed_url, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "NO-TORCH"
    assert "docs/payments.md" in done.stdout.splitlines()[0] and "Refunds" in done.stdout.splitlines()[0]


class _FakeOnnxRuntime:
    """Just enough of onnxruntime for `_session`: records the sessions it is asked for."""

    class GraphOptimizationLevel:
        ORT_DISABLE_ALL = "disable-all"
        ORT_ENABLE_EXTENDED = "extended"

    class SessionOptions:
        log_severity_level = 0
        graph_optimization_level = ""
        optimized_model_filepath = ""

    def __init__(self) -> None:
        self.sessions: list[tuple[str, object]] = []

    def InferenceSession(self, path: str, options: object = None, providers: object = None) -> str:
        self.sessions.append((path, options))
        return f"session:{path}"


def test_a_read_only_cache_falls_back_to_an_unsaved_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """uid 1000 in the image cannot write beside a root-owned export: the session still loads, unsaved."""
    import tempfile

    from codexk8s_pipelines.knowledge import onnx_embedding

    cache = tmp_path / "cache"
    cache.mkdir()
    graph = cache / "model.onnx"
    graph.write_bytes(b"graph")

    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(13, "Permission denied", str(cache))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    runtime = _FakeOnnxRuntime()
    session = onnx_embedding._session(runtime, graph)
    assert session == f"session:{graph}"
    assert runtime.sessions == [(str(graph), None)]
    assert sorted(p.name for p in cache.iterdir()) == ["model.onnx"]
