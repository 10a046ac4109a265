"""The packaged MiniLM on ONNX Runtime: the same vectors as sentence-transformers without importing torch.

Why: questions are embedded one at a time (`codexk8s docs search`, the MCP docs tools, ops: see
`embedding.query_embedder`). For the command, which embeds one question and exits, importing sentence-transformers
(torch, transformers) took ~8 s of its ~8.5 s; ONNX Runtime with the `tokenizers` library loads in well under a
second. In a service, sentence-transformers spends 2.5-3.5 times as long as ONNX Runtime on each question.
The index stays valid because the vectors are the same: the ONNX graph is exported once from the installed
package's own weights (never downloaded), and tokenisation, mean pooling and normalisation follow the package's
sentence-transformers configuration (tests/knowledge/test_onnx_embedding.py: cosine ≥ 1 - 1e-5 against it).

The export needs torch and the `onnx` package and takes a few seconds; it runs at the first use (or
`export_onnx()` at install time) and is cached under the checkout (`.codexk8s/onnx/`, or
$CODEXK8S_ONNX_CACHE), keyed by the weights file's size and modification time and by EXPORT_FORMAT, so a new
model version or a new way of exporting gets a new export.

The exported graph runs each layer's attention, the embeddings' and the residual layer norms and the GELU as
ONNX Runtime's fused BERT operators (`onnxruntime.transformers.optimizer`), not as ~40 small operators a layer.
Measured on bench/knowledge.py's 100 `real` queries, one at a time, the former and the fused graph alternating in
ten runs: the fused one was faster in all ten, its p50 by 0.1-2.2 ms (median 0.27 ms, ~5%), with the same vectors
(cosine ≥ 1 - 2e-7 against sentence-transformers).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .cpu_budget import compute_threads
from .embedding import EmbeddingModelError, quiet_transformers, resolve_model

log = logging.getLogger(__name__)
ONNX_CACHE_VAR = "CODEXK8S_ONNX_CACHE"
_DEFAULT_CACHE = Path(__file__).resolve().parents[2] / ".codexk8s" / "onnx"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# ONNX Runtime's own variable for its default intra-op pool: set, it decides instead of `cpu_budget`.
ORT_THREADS_VAR = "ORT_INTRA_OP_NUM_THREADS"
# Part of the export's file name: a change to how the graph is made (here: fused attention) must not reuse an older
# export that a checkout or an image already holds.
EXPORT_FORMAT = "fused1"


def cache_dir() -> Path:
    return Path(os.environ.get(ONNX_CACHE_VAR) or _DEFAULT_CACHE).expanduser()


def _weights(model_dir: Path) -> Path:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (model_dir / name).is_file():
            return model_dir / name
    raise EmbeddingModelError(f"{model_dir}: no model.safetensors or pytorch_model.bin to export to ONNX")


def onnx_path(model_dir: Path) -> Path:
    """Where the export of this model's weights lives: a changed weights file never reuses an old export."""
    stat = _weights(model_dir).stat()
    key = f"{model_dir.name}-{stat.st_size}-{stat.st_mtime_ns}-{EXPORT_FORMAT}"
    place = hashlib.sha256(str(model_dir.resolve()).encode("utf-8")).hexdigest()[:12]
    return cache_dir() / f"{place}-{key}.onnx"


def _max_seq_length(model_dir: Path) -> int:
    config = model_dir / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length") or 256)
    return 256


def _check_pipeline(model_dir: Path) -> None:
    """Only Transformer → mean pooling → normalise (the packaged MiniLM) is reproduced here; anything else
    must stay on sentence-transformers."""
    modules = model_dir / "modules.json"
    pooling = model_dir / "1_Pooling" / "config.json"
    if not modules.is_file() or not pooling.is_file():
        raise EmbeddingModelError(f"{model_dir}: not a sentence-transformers model with a pooling layer")
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in json.loads(modules.read_text(encoding="utf-8"))]
    config = json.loads(pooling.read_text(encoding="utf-8"))
    if kinds != ["Transformer", "Pooling", "Normalize"] or not config.get("pooling_mode_mean_tokens"):
        raise EmbeddingModelError(f"{model_dir}: ONNX path supports mean-pooled, normalised models only ({kinds})")


def supports_onnx(model: str | None = None) -> bool:
    """Whether this path reproduces `model`'s vectors (a mean-pooled, normalised sentence-transformers model)."""
    try:
        _check_pipeline(resolve_model(model)[0])
    except EmbeddingModelError:
        return False
    return True


def export_onnx(model: str | None = None) -> Path:
    """Export the configured model's transformer to ONNX (once; a cached export is returned as is)."""
    model_dir, _ = resolve_model(model)
    _check_pipeline(model_dir)
    target = onnx_path(model_dir)
    if target.is_file():
        return target
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:  # pragma: no cover - torch ships with the platform
        raise EmbeddingModelError(f"exporting the model to ONNX needs torch and transformers: {exc}") from exc

    class _Encoder(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    quiet_transformers()
    # Eager attention: the graph of PyTorch's fused attention (SDPA) is not one that ONNX Runtime's attention fusion
    # recognises, so every layer would stay ~40 small operators (see `_fuse`).
    inner = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager").eval()
    encoder = _Encoder(inner)
    sample = torch.ones(1, 8, dtype=torch.long)
    axes = {"0": "batch", "1": "tokens"}
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed: a concurrent reader never loads a half-written graph.
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        # The tracer's warnings are about shapes this graph never sees (a cache, negative indexes): noise on stderr.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                encoder,
                (sample, sample, torch.zeros_like(sample)),
                tmp,
                input_names=list(_INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes={name: {int(k): v for k, v in axes.items()} for name in (*_INPUTS, "last_hidden_state")},
                opset_version=17,
                dynamo=False,
            )
        _fuse(tmp, int(inner.config.num_attention_heads), int(inner.config.hidden_size))
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _remove_stale_exports(target)
    return target


def _remove_stale_exports(target: Path) -> None:
    """Remove this model directory's former exports (older weights or EXPORT_FORMAT): ~180 MB each, never read again.
    A process that loaded one keeps its session: the graph is read into memory when the session is made."""
    place = target.name.split("-", 1)[0]
    for old in target.parent.glob(f"{place}-*.onnx"):
        if old.name not in (target.name, target.with_suffix(".opt.onnx").name):
            with contextlib.suppress(OSError):  # a cache another user owns: left as it is
                old.unlink()


def _fuse(path: str, heads: int, hidden: int) -> None:
    """Rewrite the exported graph in place with ONNX Runtime's fused BERT operators (Attention,
    EmbedLayerNormalization, SkipLayerNormalization, BiasGelu).

    Why not leave it to the session's own graph optimisation: its "extended" level fuses the layer norms and GELU
    but not a layer's attention, which stays ~40 small operators. Fusing is plain float32 arithmetic in fewer
    operators: the vectors stay those of sentence-transformers (tests/knowledge/test_onnx_embedding.py). If a
    transformers version's attention graph is not recognised, the graph is kept as exported (same vectors, ~5%
    slower) with a warning; the test that the export is fused fails then."""
    path_before = list(sys.path)
    try:
        from onnxruntime.transformers.optimizer import optimize_model
    finally:
        sys.path[:] = path_before  # the package puts its own folder first on sys.path, for its flat imports

    model = optimize_model(path, model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0)
    fused = model.get_fused_operator_statistics()
    if fused.get("Attention", 0) < 1:
        log.warning("ONNX export: attention was not fused (%s); keeping the plain graph", fused)
        return
    model.save_model_to_file(path)


def _options(onnxruntime: Any, level: Any) -> Any:
    """Session options: quiet, the given graph optimisation level, and an intra-op pool of the physical cores this
    process may use under its CPU limit (`cpu_budget.compute_threads`: ONNX Runtime counts the machine's cores and
    ignores a pod's limit), unless the operator sized the pool with ONNX Runtime's own variable."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = level
    if not os.environ.get(ORT_THREADS_VAR):
        options.intra_op_num_threads = compute_threads()
    return options


def _session(onnxruntime: Any, path: Path) -> Any:
    """An inference session, from the graph optimised once and saved beside the export when it is there.

    Optimising the graph is most of a session's start (~1 s of a cold command on a busy machine); the saved
    graph loads without it. "Extended" optimisations only: the fully optimised graph may be specific to the
    machine that wrote it, and the cache may be shared."""
    optimised = path.with_suffix(".opt.onnx")
    levels = onnxruntime.GraphOptimizationLevel
    if optimised.is_file():
        options = _options(onnxruntime, levels.ORT_DISABLE_ALL)
        return onnxruntime.InferenceSession(str(optimised), options, providers=["CPUExecutionProvider"])
    options = _options(onnxruntime, levels.ORT_ENABLE_EXTENDED)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".opt.tmp")
        os.close(fd)
        options.optimized_model_filepath = tmp
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared by the checkout's users
        os.replace(tmp, optimised)
    except OSError:  # a read-only cache: the session still works, it just is not saved
        unsaved = _options(onnxruntime, levels.ORT_ENABLE_EXTENDED)
        session = onnxruntime.InferenceSession(str(path), unsaved, providers=["CPUExecutionProvider"])
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return session


class OnnxEmbedder:
    """The `Embedder` protocol on ONNX Runtime: tokenise (tokenizers), run the exported graph, mean-pool over
    the attention mask, L2-normalise — sentence-transformers' steps for this model."""

    def __init__(self, model: str | None = None, *, export: bool = True) -> None:
        model_dir, name = resolve_model(model)
        _check_pipeline(model_dir)
        path = onnx_path(model_dir)
        if not path.is_file():
            if not export:
                raise EmbeddingModelError(f"no ONNX export of {name} at {path} (run export_onnx())")
            path = export_onnx(model)
        import onnxruntime
        from tokenizers import Tokenizer

        self.model_name = name
        self.max_seq_length = _max_seq_length(model_dir)
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_seq_length)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._session = _session(onnxruntime, path)
        self.dim = int(self._session.get_outputs()[0].shape[-1] or 384)
        self._lock = threading.Lock()

    def token_count(self, text: str) -> int:
        """How many tokens the model reads for `text` (with its start and end tokens, after truncation): a query's
        embedding time grows with them (bench/knowledge.py prints it by length)."""
        return len(self._tokenizer.encode(text).ids)

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out: list[np.ndarray] = []
        for start in range(0, len(texts), 32):
            encodings = self._tokenizer.encode_batch(list(texts[start : start + 32]))
            ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            with self._lock:
                hidden = self._session.run(None, feeds)[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out.append(pooled / np.clip(norms, 1e-12, None))
        return np.concatenate(out).astype(np.float32)


_CACHE: dict[str, OnnxEmbedder] = {}
_LOCK = threading.Lock()


def onnx_embedder(model: str | None = None) -> OnnxEmbedder:
    """The ONNX embedder for `model`, loaded once per process."""
    _, name = resolve_model(model)
    with _LOCK:
        if name not in _CACHE:
            _CACHE[name] = OnnxEmbedder(model)
        return _CACHE[name]
