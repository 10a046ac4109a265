"""Docs search quality on real documentation, measured side by side in one run: the hybrid search against its
two halves (BM25 words only, dense meaning only), on each evaluation set.

Sets:
- `poetry`: Poetry's user docs (16 files, MIT) and 123 questions with target file and heading
  (../shared/data/docs-eval/, or --poetry DIR).
- `click`: Click 8.5.1's docs (35 files, BSD-3-Clause) and 51 questions written for this project
  (bench/data/, see its README).

Metrics, from the top 10 chunks of each method: file-level hit@1, hit@5 and MRR@10 (the rank of the first
chunk of the target file), and section-level hit@5 (a chunk of the target file under the target heading).
`hybrid` is `search()` exactly as the CLI and the MCP tool call it (grouped: at most MAX_PER_FILE chunks per
file); `hybrid-all` is the same with grouping off, comparable chunk for chunk with the halves. The halves are
the very rankings the hybrid fuses: `text_scores()` (BM25) and the exact cosine ranking.

A second table compares fusion methods on the same two rankings (the goal: never below the better half on
hit@1, hit@5 and MRR), so the method search.py uses is measured, not assumed.

Run: .venv/bin/python bench/retrieval.py [--sets poetry,click] [--no-fusion-table]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from codexk8s_pipelines.knowledge.db import connect
from codexk8s_pipelines.knowledge.index import index_repository
from codexk8s_pipelines.knowledge.onnx_embedding import onnx_embedder
from codexk8s_pipelines.knowledge.search import (
    Searcher,
    candidate_pool,
    fetch_rows,
    filters,
    fuse,
    text_scores,
    vector_ranking,
)
from codexk8s_pipelines.store import EmbeddedPostgres, PlatformStore

HERE = Path(__file__).resolve().parent
SETS = {
    "poetry": (HERE.parent.parent / "shared" / "data" / "docs-eval" / "poetry", None),
    "click": (HERE / "data" / "click-docs", HERE / "data" / "click-questions.json"),
}
TOP = 10


@dataclass(frozen=True)
class Question:
    text: str
    file: str
    heading: str


@dataclass(frozen=True)
class Ranked:
    """One method's top chunks for a question: (path, heading path) in rank order."""

    hits: list[tuple[str, tuple[str, ...]]]


def load_questions(path: Path) -> list[Question]:
    return [Question(q["q"], q["file"], q["heading"]) for q in json.loads(path.read_text(encoding="utf-8"))]


def _norm(heading: str) -> str:
    return heading.strip().strip("`").lower()


def scores(rankings: Sequence[Ranked], questions: Sequence[Question]) -> dict[str, float]:
    """hit@1, hit@5, MRR@10 at file level and hit@5 at section level, as shares of the questions."""
    hit1 = hit5 = mrr = sec5 = 0.0
    for ranked, q in zip(rankings, questions, strict=True):
        files = [path for path, _ in ranked.hits[:TOP]]
        rank = next((n for n, path in enumerate(files, start=1) if path == q.file), None)
        hit1 += rank == 1
        hit5 += rank is not None and rank <= 5
        mrr += 1 / rank if rank else 0.0
        sec5 += any(path == q.file and _norm(q.heading) in {_norm(h) for h in heads} for path, heads in ranked.hits[:5])
    n = len(questions)
    return {"hit@1": hit1 / n, "hit@5": hit5 / n, "MRR": mrr / n, "sec@5": sec5 / n}


def _row(name: str, s: dict[str, float]) -> str:
    return f"  {name:<28} " + "  ".join(f"{s[m]:.3f}" for m in ("hit@1", "hit@5", "MRR", "sec@5"))


def evaluate(url: str, repository: str, questions: Sequence[Question], fusion_table: bool) -> None:
    embedder = onnx_embedder()
    vectors = embedder.encode([q.text for q in questions])
    pool = candidate_pool(TOP)
    where, params = filters(repository, None)
    dense: list[list[tuple[int, float]]] = []
    words: list[list[tuple[int, float]]] = []
    with connect(url) as conn:
        for q, vector in zip(questions, vectors, strict=True):
            dense.append(vector_ranking(conn, vector, where, params, pool, exact=True))
            words.append(text_scores(conn, q.text, repository, None, pool))
        ids = {i for ranking in (*dense, *words) for i, _ in ranking}
        rows = fetch_rows(conn, list(ids))

    def ranked(ids_in_order: Sequence[int]) -> Ranked:
        return Ranked([(rows[i].path, rows[i].heading_path) for i in ids_in_order[:TOP]])

    results: dict[str, dict[str, float]] = {}
    with Searcher(url, embedder=embedder) as searcher:
        started = time.perf_counter()
        grouped = [searcher.search(q.text, repository=repository, k=TOP) for q in questions]
        per_search = (time.perf_counter() - started) / len(questions) * 1000
        flat = [searcher.search(q.text, repository=repository, k=TOP, per_file=None) for q in questions]
    results["hybrid (search())"] = scores([Ranked([(h.path, h.heading_path) for h in hs]) for hs in grouped], questions)
    results["hybrid-all (no grouping)"] = scores(
        [Ranked([(h.path, h.heading_path) for h in hs]) for hs in flat], questions
    )
    results["BM25 only"] = scores([ranked([i for i, _ in w]) for w in words], questions)
    results["dense only (exact cosine)"] = scores([ranked([i for i, _ in d]) for d in dense], questions)
    print("  method                       hit@1  hit@5  MRR    sec@5")
    for name, s in results.items():
        print(_row(name, s))
    best = {m: max(results["BM25 only"][m], results["dense only (exact cosine)"][m]) for m in ("hit@1", "hit@5", "MRR")}
    ratios = "  ".join(f"{m} {results['hybrid-all (no grouping)'][m] / best[m]:.3f}" for m in best if best[m])
    print(f"  hybrid-all / better half: {ratios}   (goal: every ratio >= 1)")
    print(f"  search() wall time per question (embedding + SQL, warm): {per_search:.1f} ms")
    if not fusion_table:
        return
    variants: dict[str, Callable[[list[tuple[int, float]], list[tuple[int, float]]], list[int]]] = {
        "rrf k=60": lambda d, w: _rrf(d, w, 60),
        "rrf k=20": lambda d, w: _rrf(d, w, 20),
        "rrf k=5": lambda d, w: _rrf(d, w, 5),
        "minmax a=0.3": lambda d, w: [i for i, _ in fuse(d, w, 0.3)],
        "minmax a=0.4": lambda d, w: [i for i, _ in fuse(d, w, 0.4)],
        "minmax a=0.5": lambda d, w: [i for i, _ in fuse(d, w, 0.5)],
        "minmax a=0.7": lambda d, w: [i for i, _ in fuse(d, w, 0.7)],
        "fuse() (search.py)": lambda d, w: [i for i, _ in fuse(d, w)],
    }
    print("  fusion of the same two rankings   hit@1  hit@5  MRR    sec@5")
    for name, fn in variants.items():
        print(_row(name, scores([ranked(fn(d, w)) for d, w in zip(dense, words, strict=True)], questions)))


def _rrf(dense: list[tuple[int, float]], words: list[tuple[int, float]], k: int) -> list[int]:
    fused: dict[int, float] = {}
    for ranking in (dense, words):
        for rank, (i, _) in enumerate(ranking, start=1):
            fused[i] = fused.get(i, 0.0) + 1 / (k + rank)
    return sorted(fused, key=lambda i: -fused[i])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sets", default="poetry,click", help="comma-separated: poetry, click")
    parser.add_argument("--poetry", type=Path, help="the Poetry set's folder (default ../shared/data/docs-eval)")
    parser.add_argument("--no-fusion-table", action="store_true", help="skip the fusion method comparison")
    parser.add_argument(
        "--data-dir", type=Path, help="keep the server's data here; a later run re-indexes incrementally"
    )
    args = parser.parse_args()
    os.environ.setdefault("LC_ALL", "C.UTF-8")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedPostgres(args.data_dir or Path(tmp) / "pg") as pg:
        url = make_conninfo(pg.url or "", dbname="bench_retrieval")
        with psycopg.connect(pg.url or "", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'bench_retrieval'").fetchone():
                conn.execute('CREATE DATABASE "bench_retrieval"')
        PlatformStore(url).migrate()
        for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
            docs, questions_file = SETS[name]
            if name == "poetry" and args.poetry:
                docs = args.poetry / "poetry"
            questions_file = questions_file or docs.parent / f"{name}-questions.json"
            questions = load_questions(questions_file)
            stats = index_repository(url, f"eval/{name}", docs, embedder=onnx_embedder())
            print(f"[{name}] {stats.files} files, {stats.chunks} chunks, {len(questions)} questions")
            evaluate(url, f"eval/{name}", questions, not args.no_fusion_table)


if __name__ == "__main__":
    main()
