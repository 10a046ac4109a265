"""Run in a process of its own (`python -m tests.embedding_probe`), often inside a CPU quota (tests/cpu_quota.py):
what the embedders set themselves up with there, as JSON on stdout.

- `onnx_workers`: threads ONNX Runtime started for the query embedder's session (its pool's workers; the calling
  thread is the pool's first), counted from /proc/self/task around the session's creation.
- `vector`: the query embedder's vector of `--text`.
- `torch_threads` (with --torch): torch's thread count once the sentence-transformers embedder is loaded.
- `ms` (with --runs N): N query embeddings of the questions in `--texts`, each timed, `--gap` seconds apart.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--text", default="how do I limit the CPUs a pod may use")
    parser.add_argument("--torch", action="store_true")
    parser.add_argument("--runs", type=int, default=0)
    parser.add_argument("--texts", type=Path)
    parser.add_argument("--gap", type=float, default=0.005)
    args = parser.parse_args()

    import onnxruntime  # noqa: F401  (its import starts a thread of its own, which is not the session's pool)

    from codexk8s_pipelines.knowledge.onnx_embedding import OnnxEmbedder

    before = _threads()
    embedder = OnnxEmbedder()
    out: dict[str, object] = {"onnx_workers": _threads() - before}
    out["vector"] = [float(x) for x in embedder.encode([args.text])[0]]
    if args.runs:
        texts = args.texts.read_text(encoding="utf-8").splitlines() if args.texts else [args.text]
        for text in texts[:20]:
            embedder.encode([text])
        timings = []
        for i in range(args.runs):
            start = time.perf_counter()
            embedder.encode([texts[i % len(texts)]])
            timings.append((time.perf_counter() - start) * 1000)
            time.sleep(args.gap)
        out["ms"] = timings
    if args.torch:
        import torch

        from codexk8s_pipelines.knowledge.embedding import default_embedder

        default_embedder()
        out["torch_threads"] = torch.get_num_threads()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
