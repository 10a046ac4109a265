"""Docs knowledge figures, measured side by side in one run on this machine.

1. Indexing throughput with the real model, as a ratio to a bare `SentenceTransformer.encode` of the very same
   chunk texts (goal ≥ 0.9): what chunking, hashing and PostgreSQL cost on top of the model.
2. Re-index of the unchanged corpus as a ratio of the full index (goal ≤ 0.05).
3. Search at 100,000 chunks (random unit vectors in 384 dimensions spread over 20 repositories; the HNSW index
   built as the migration defines it): latency p50/p95 of `search()` (goal p95 ≤ 20 ms) and recall@10 of the
   HNSW vector ranking against exact search, with and without a repository filter (goal ≥ 0.95). The hybrid
   `search()` embeds its query with a hashing embedder here, so the figure is the database's, not the model's.
   Recall is that of the vector ranking `search()` runs (its pool, HNSW settings and exact-scan rule).

Run: .venv/bin/python bench/knowledge.py [--chunks 100000]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codexk8s_pipelines.knowledge.db import connect, vector_version
from codexk8s_pipelines.knowledge.embedding import HashingEmbedder, resolve_model
from codexk8s_pipelines.knowledge.index import DEFAULT_GLOBS, index_repository, read_chunks
from codexk8s_pipelines.knowledge.search import (
    candidate_pool,
    filters,
    prepare_vector_scan,
    search,
    use_exact_scan,
    vector_ranking,
)
from codexk8s_pipelines.store import EmbeddedPostgres, PlatformStore

WORDS = (
    "deploy",
    "release",
    "rollback",
    "cart",
    "checkout",
    "payment",
    "invoice",
    "queue",
    "worker",
    "retry",
    "timeout",
    "cache",
    "index",
    "token",
    "service",
    "cluster",
    "namespace",
    "pod",
    "secret",
    "config",
    "schema",
    "migration",
    "table",
    "backup",
    "restore",
    "alert",
    "metric",
    "trace",
    "latency",
    "budget",
    "owner",
    "review",
    "approval",
    "branch",
    "merge",
    "build",
    "image",
    "registry",
    "version",
    "upgrade",
    "patch",
    "incident",
)


def _corpus(root: Path, files: int = 40, sections: int = 6) -> None:
    rng = random.Random(7)
    for f in range(files):
        lines = [f"# Component {f}", ""]
        for s in range(sections):
            lines += [f"## Topic {f}.{s} {rng.choice(WORDS)}", ""]
            lines += [" ".join(rng.choice(WORDS) for _ in range(90)) + ".", ""]
        path = root / f"docs/area{f % 5}/component{f}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines))


def bench_indexing(url: str, tmp: Path) -> None:
    from sentence_transformers import SentenceTransformer

    root = tmp / "corpus"
    _corpus(root)
    texts = [c.embedding_text for chunks in read_chunks(root, DEFAULT_GLOBS).values() for c in chunks]
    model_dir, _ = resolve_model()
    bare = SentenceTransformer(str(model_dir), device="cpu")
    bare.encode(texts[:8], normalize_embeddings=True)  # warm-up, as the index's cached model is warm too
    t = time.perf_counter()
    bare.encode(texts, batch_size=64, normalize_embeddings=True)
    encode_s = time.perf_counter() - t
    index_repository(url, "bench/warmup", root / "docs/area0")  # loads and warms the platform's model
    t = time.perf_counter()
    full = index_repository(url, "bench/docs", root)
    index_s = time.perf_counter() - t
    t = time.perf_counter()
    again = index_repository(url, "bench/docs", root)
    reindex_s = time.perf_counter() - t
    assert again.embedded == 0, again
    encode_rate, index_rate = len(texts) / encode_s, full.embedded / index_s
    print(
        f"indexing {full.chunks} chunks: bare encode {encode_rate:6.1f} chunks/s, index_repository "
        f"{index_rate:6.1f} chunks/s, ratio {index_rate / encode_rate:4.2f} (goal ≥ 0.9)"
    )
    ratio = reindex_s / index_s
    print(f"re-index unchanged: {reindex_s:5.2f} s vs full {index_s:5.2f} s, ratio {ratio:5.3f} (goal ≤ 0.05)")


def _index_ddl() -> str:
    """The HNSW index exactly as the migration creates it, rebuilt after the bulk load."""
    sql_text = (
        Path(__file__).resolve().parent.parent / "codexk8s_pipelines/store/migrations/0002_knowledge.sql"
    ).read_text()
    start = sql_text.index("CREATE INDEX doc_chunks_embedding_idx")
    return sql_text[start : sql_text.index(";", start)]


INDEX_DDL = _index_ddl()


def _load_vectors(url: str, n: int, repos: int) -> np.ndarray:
    import psycopg

    # Text embeddings are not uniform noise: they gather by topic. Points around 1,000 topic centres.
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((1000, 384)).astype(np.float32)
    vectors = centres[rng.integers(0, len(centres), n)] + 0.6 * rng.standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP INDEX IF EXISTS doc_chunks_embedding_idx")
        with conn.cursor().copy(
            "COPY doc_chunks (repository, path, chunk_index, heading_path, heading_text, start_line, end_line,"
            " content, content_hash, model, embedding) FROM STDIN"
        ) as copy:
            for i, v in enumerate(vectors):
                text = " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12))
                vec = "[" + ",".join(f"{x:.6f}" for x in v) + "]"
                copy.write_row(
                    (f"bench/r{i % repos}", f"doc{i}.md", 0, ["Doc"], "Doc", 1, 2, text, f"h{i}", "bench", vec)
                )
        t = time.perf_counter()
        conn.execute(INDEX_DDL)
        print(f"HNSW build over {n:,} vectors: {time.perf_counter() - t:5.1f} s")
        conn.execute("ANALYZE doc_chunks")
    return vectors


def _recall(url: str, queries: np.ndarray, repository: str | None) -> float:
    """recall@10 of the vector ranking exactly as `search()` runs it (same pool, settings and exact-scan rule)
    against an exact nearest-neighbour ranking of the same rows."""
    found = []
    where, params = filters(repository, None)
    pool = candidate_pool(10)
    with connect(url) as conn:
        version = vector_version(conn, url)
        for q in queries:
            with conn.transaction():
                prepare_vector_scan(conn, pool, version)
                exact = use_exact_scan(conn, where, params)
                approx = [i for i, _ in vector_ranking(conn, q, where, params, pool, exact=exact)][:10]
            with conn.transaction():
                truth = [i for i, _ in vector_ranking(conn, q, where, params, 10, exact=True)]
            found.append(len(set(approx) & set(truth)) / 10)
    return statistics.mean(found)


def bench_search(url: str, n: int) -> None:
    vectors = _load_vectors(url, n, repos=20)
    rng = np.random.default_rng(5)
    picks = vectors[rng.choice(n, 100, replace=False)]
    queries = picks + 0.3 * rng.standard_normal(picks.shape).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    embedder = HashingEmbedder(dim=384)
    for label, repo in (("all repositories", None), ("one repository", "bench/r3")):
        timings = []
        for i in range(200):
            t = time.perf_counter()
            search(url, f"{WORDS[i % len(WORDS)]} rollback budget", repository=repo, k=10, embedder=embedder)
            timings.append((time.perf_counter() - t) * 1000)
        timings.sort()
        p50, p95 = timings[len(timings) // 2], timings[int(len(timings) * 0.95)]
        recall = _recall(url, queries, repo)
        print(
            f"search at {n:,} chunks, {label:16}: p50 {p50:5.1f} ms  p95 {p95:5.1f} ms (goal ≤ 20)   "
            f"HNSW recall@10 vs exact {recall:.3f} (goal ≥ 0.95)"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.setdefault("LC_ALL", "C.UTF-8")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp_name, EmbeddedPostgres(Path(tmp_name) / "pg") as pg:
        store = PlatformStore(pg.url or "")
        store.migrate()
        bench_indexing(store.url, Path(tmp_name))
        with store.connect() as conn:
            conn.execute("TRUNCATE doc_chunks")
        bench_search(store.url, args.chunks)


if __name__ == "__main__":
    main()
