"""The docs knowledge core: chunking, embeddings, the pgvector + full-text index, hybrid search, change impact.

Plain Python over the platform database: the CLI (`codexk8s docs …`), the periodic docs-index asset and the
agents' MCP tools all call these functions. Names load lazily, so that importing the package (the CLI does at
every start) costs nothing; torch and the model load only when something is embedded.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Chunk": "chunking",
    "chunk_document": "chunking",
    "estimate_tokens": "chunking",
    "KnowledgeError": "db",
    "EMBEDDING_MODEL_VAR": "embedding",
    "Embedder": "embedding",
    "EmbeddingModelError": "embedding",
    "HashingEmbedder": "embedding",
    "default_embedder": "embedding",
    "query_embedder": "embedding",
    "OnnxEmbedder": "onnx_embedding",
    "onnx_embedder": "onnx_embedding",
    "DEFAULT_GLOBS": "index",
    "IndexStats": "index",
    "index_repository": "index",
    "SearchHit": "search",
    "ImpactHit": "impact",
    "change_impact": "impact",
}

# `search` itself is not re-exported: once `knowledge.search` (the module) is imported, the package attribute
# of that name is the module. Import it as `from codexk8s_pipelines.knowledge.search import search`.
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
