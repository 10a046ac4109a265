"""The HNSW candidate list (`hnsw.ef_search`) measured on the corpus it searches, instead of one guess for all.

Why measured: how long the list must be for recall@10 ≥ 0.98 against exact search depends on the vectors, by a
factor of three. bench/knowledge.py at 100,000 chunks, on the graph of migration 0016: real documentation (`real`)
gets there from 140-200, while an adversarial synthetic set (`clustered`, every point nearly equidistant from its
neighbours) needs 560, at twice the latency. A fixed value is either slow on every real corpus or loses recall
on a hard one.

How: `tune()` makes questions as people type them (a section's last heading and its first words) about a fixed
sample of the index's chunks, embeds them with the model, ranks each exactly once, then walks the HNSW graph
exactly as `search()` does at each length of LADDER, shortest first, and keeps the first length whose recall@10
reaches TARGET_RECALL. Questions, not the chunks' own vectors: a stored vector finds its neighbours far more
easily than a question does (measured on `real`: recall 0.99 from a list of 60 for chunk vectors, where questions
needed 200), so tuning on them would cut the list below what searches need. A question's own chunk is left out
of its answers, as if the section it asks about were not indexed: questions about indexed sections alone were
still easier than held-out ones. Recall counts a hit when its
distance is within the exact 10th distance, so chunks that are copies of each other (a licence section in every
repository) do not count as misses. The result is one row of `doc_search_tuning` (migration 0011), which
`Searcher` reads. The docs_index asset and `codexk8s docs index` tune again when the number of chunks has moved
by RETUNE_CHANGE since the last measurement; a database never tuned searches with UNTUNED_EF_SEARCH.

The same questions measure how many binary codes (migration 0015) a large filter's ranking must re-rank by full
precision (`code_candidates`, see search.py `code_nearest`): the shortest length of CODE_LADDER whose recall@10
reaches TARGET_RECALL, times CODE_MARGIN, or none (filters are then ranked exactly).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from .db import CODE_ORDER, connect, hnsw_nearest
from .embedding import Embedder, default_embedder

log = logging.getLogger(__name__)

# Above the 0.98 goal: the questions are made up, real ones may be harder. Measured on `real` (100,000 chunks,
# bench/knowledge.py), on the graph built with a construction list of 200: 0.99 on these questions chose a list of
# 100, where held-out questions got 0.965; 0.995 chose 140, where they got 0.964-0.989 from one build of the graph to
# the next. On the graph of migration 0016 (construction list 400) 0.995 chooses 100, where they got 0.985-0.992 in
# eight builds; those questions came from the first few files of the bench's list, and questions spread over the
# corpus get less there (see LADDER). 200 questions: recall moves in steps of 0.0005.
TARGET_RECALL = 0.995
SAMPLE = 200
# From 200: below it the made-up questions cannot tell lists apart, while held-out ones still lose recall. On
# `real` at 100,000 chunks with the bench's held-out questions spread over the corpus (81 modules), the made-up
# questions reached 0.9975 / 0.9995 / 1.000 at 40 / 100 / 140, where the held-out ones got 0.937 / 0.969 / 0.989
# (one build); over four builds the held-out ones got 0.957-0.971 at 100, 0.978-0.989 at 140 and 0.982-0.993 at 200.
# A question made from an indexed chunk walks to that chunk, whose links lead to its neighbours: that shortcut is what
# they measure below 200. The `docs` set agrees (0.959 at 100, 0.978 at 200). 200 costs ~0.5 ms a search over 100
# (the walk alone, p50 1.6-1.7 against 1.1-1.2 ms).
LADDER = (200, 280, 400, 560, 800, 1000)
RETUNE_CHANGE = 0.1
# Without a measurement (before the first indexing run after migrating): well past what real documentation needs
# (the ladder's first, 200, at 100,000 chunks), short of the adversarial set's 560 (bench/knowledge.py).
UNTUNED_EF_SEARCH = 400
# More codes than the ladder's last times the margin would cost a filter more than ranking it exactly (~2 µs a code,
# read from the table: bench/knowledge.py `real`, a folder of 11,111 chunks, p50 5.0 ms exact, 3.0 ms with 400
# codes, 3.8 ms with 800). The margin: made-up questions find their neighbours' codes more easily than the bench's
# queries do. On `real` (100,000 chunks) 100 / 200 / 400 / 800 codes gave 0.977 / 0.995 / 0.999 / 1.000 on the
# made-up questions over the whole corpus, and 0.920 / 0.973 / 0.991 / 1.000 on the bench's queries within that
# folder; 200 is the first to reach the target, so 400 are used. On `clustered` not even 3,200 reached 0.995.
CODE_LADDER = (100, 200, 400)
CODE_MARGIN = 2
K = 10
QUESTION_WORDS = 8
# One measurement at a time across processes (docs_index partitions run in parallel).
_LOCK_KEY = "hashtextextended('doc_search_tuning', 0)"


def candidate_pool(k: int) -> int:
    """How many candidates each ranking of search() contributes for k hits, and the HNSW `ef_search` that can return
    them (the measured list is never shorter than this)."""
    return max(40, 4 * k)


POOL = candidate_pool(K)  # what search() asks the graph walk for at the default k


@dataclass(frozen=True)
class SearchTuning:
    """The shortest measured candidate list reaching the target recall, and what it was measured on."""

    ef_search: int
    recall: float
    chunks: int
    sample: int
    seconds: float
    measured_at: datetime | None = None
    fresh: bool = False  # measured by this call (not read back)
    code_candidates: int | None = None  # binary codes a large filter re-ranks; None: filters are ranked exactly

    def describe(self) -> str:
        """One line for logs and the CLI: the list, its recall, the codes and what they were measured on."""
        codes = f"{self.code_candidates} binary codes" if self.code_candidates else "no binary codes (exact)"
        return (
            f"HNSW ef_search {self.ef_search}, recall@10 {self.recall:.3f} against exact search; large filters:"
            f" {codes}; measured on {self.sample} of {self.chunks} chunks ({self.seconds:.1f} s)"
        )


def current_tuning(conn: psycopg.Connection[Any]) -> SearchTuning | None:
    """The stored measurement, or None (never measured, or a database from before migration 0015)."""
    try:
        with conn.transaction():
            row = conn.execute(
                "SELECT ef_search, recall, chunks, sample, seconds, measured_at, code_candidates FROM doc_search_tuning"
            ).fetchone()
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn):
        return None
    if row is None:
        return None
    codes = int(row[6]) if row[6] is not None else None
    return SearchTuning(int(row[0]), float(row[1]), int(row[2]), int(row[3]), float(row[4]), row[5], False, codes)


def ef_search_of(tuning: SearchTuning | None) -> int:
    """The candidate list searches use under `tuning`: the measured one, else UNTUNED_EF_SEARCH."""
    return tuning.ef_search if tuning else UNTUNED_EF_SEARCH


def tuned_ef_search(conn: psycopg.Connection[Any]) -> int:
    """The candidate list searches on this database use (see `ef_search_of`)."""
    return ef_search_of(current_tuning(conn))


def needs_tuning(tuning: SearchTuning | None, chunks: int) -> bool:
    """Whether the corpus moved enough since `tuning` to measure again (every first time there are chunks)."""
    if chunks < 2:
        return False
    if tuning is None:
        return True
    return abs(chunks - tuning.chunks) > RETUNE_CHANGE * max(tuning.chunks, 1)


def _recall(found: list[float], exact: list[float]) -> float:
    """Share of the exact top-k matched: a found distance counts while it is within the exact k-th one."""
    if not exact:
        return 1.0
    bound = exact[-1] + 1e-6
    return min(sum(1 for d in found[: len(exact)] if d <= bound), len(exact)) / len(exact)


def question_text(heading_path: Sequence[str], content: str, words: int = QUESTION_WORDS) -> str:
    """A question as people type it about a section: its last heading and the first few words it says."""
    return " ".join([*heading_path[-1:], *content.split()[:words]])


Question = tuple[int, np.ndarray]  # (the chunk it is about, its vector)


def _questions(conn: psycopg.Connection[Any], size: int, embedder: Embedder) -> list[Question]:
    """Questions about a fixed spread of chunks (ordered by a hash of the id, so the same corpus gives the same
    sample), embedded as searches embed theirs."""
    rows = conn.execute(
        "SELECT id, heading_path, content FROM doc_chunks ORDER BY hashint8(id), id LIMIT %s", (size,)
    ).fetchall()
    if not rows:
        return []
    vectors = np.asarray(embedder.encode([question_text(tuple(r[1] or ()), str(r[2])) for r in rows]), np.float32)
    return [(int(r[0]), v) for r, v in zip(rows, vectors, strict=True)]


def _exact(conn: psycopg.Connection[Any], questions: list[Question]) -> list[list[float]]:
    """Each question's K smallest distances to the chunks other than its own (`+ 0` keeps the HNSW index out)."""
    statement = "SELECT embedding <=> %s FROM doc_chunks WHERE id <> %s ORDER BY (embedding <=> %s) + 0 LIMIT %s"
    return [[float(r[0]) for r in conn.execute(statement, (v, i, v, K)).fetchall()] for i, v in questions]


def _walk(conn: psycopg.Connection[Any], questions: list[Question], ef_search: int) -> list[list[float]]:
    """Each question's distances as search() serves them: POOL candidates of the graph walk (one more, for the
    question's own chunk, which is dropped) re-sorted by full precision."""

    def nearest(question: Question) -> list[float]:
        chunk, vector = question
        walk, params = hnsw_nearest(vector, sql.SQL("TRUE"), [], POOL + 1)
        rows = conn.execute(sql.SQL("SELECT id, dist FROM ({}) AS nearest ORDER BY dist, id").format(walk), params)
        return [float(r[1]) for r in rows.fetchall() if int(r[0]) != chunk][:POOL]

    with conn.transaction():
        conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(int(ef_search))))
        return [nearest(q) for q in questions]


def _code_distances(conn: psycopg.Connection[Any], questions: list[Question]) -> list[list[float]]:
    """Each question's full-precision distances to the max(CODE_LADDER) chunks other than its own nearest by binary
    code, in code order (ties by id): the first n are what a search re-ranks with n codes. Over the whole corpus: a
    filter ranked by codes keeps at most EXACT_SCAN_ROWS chunks of it, where fewer compete for the same n."""
    statement = sql.SQL(
        "SELECT c.embedding <=> %s FROM (SELECT id, " + CODE_ORDER + " AS ham FROM doc_chunks WHERE id <> %s"
        " ORDER BY ham, id LIMIT {n}) AS h JOIN doc_chunks AS c USING (id) ORDER BY h.ham, h.id"
    ).format(n=sql.Literal(max(CODE_LADDER)))
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")  # the codes from a covering index, not every chunk's row
        return [[float(r[0]) for r in conn.execute(statement, (v, v, i)).fetchall()] for i, v in questions]


def code_candidates(by_code: list[list[float]], exact: list[list[float]]) -> int | None:
    """CODE_MARGIN times the fewest codes of CODE_LADDER whose re-ranking reaches TARGET_RECALL, or None."""
    for n in CODE_LADDER:
        recall = float(np.mean([_recall(sorted(f[:n]), e) for f, e in zip(by_code, exact, strict=True)]))
        if recall >= TARGET_RECALL:
            return CODE_MARGIN * n
    return None


def tune(
    conn_url: str, *, force: bool = False, sample: int = SAMPLE, embedder: Embedder | None = None
) -> SearchTuning | None:
    """Measure and store the candidate list for this database when the corpus moved (or `force`); returns the
    tuning in effect (None while the index has fewer than two chunks). Concurrent callers (docs_index partitions)
    measure once: the others skip while one holds the lock, and keep the tuning it stores. `embedder` embeds the
    questions (default: the platform's model, as the index's vectors were made)."""
    with connect(conn_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM doc_chunks").fetchone()
        chunks = int(row[0]) if row else 0
        tuning = current_tuning(conn)
        if not force and not needs_tuning(tuning, chunks):
            return tuning
        if chunks < 2:
            return tuning
        locked = conn.execute(f"SELECT pg_try_advisory_lock({_LOCK_KEY})").fetchone()
        if not locked or not locked[0]:
            return tuning
        try:
            started = time.perf_counter()
            queries = _questions(conn, sample, embedder or default_embedder())
            exact = _exact(conn, queries)
            ef, recall = LADDER[-1], 0.0
            for ef in LADDER:
                found = _walk(conn, queries, ef)
                recall = float(np.mean([_recall(f, e) for f, e in zip(found, exact, strict=True)]))
                if recall >= TARGET_RECALL:
                    break
            codes = code_candidates(_code_distances(conn, queries), exact)
            seconds = time.perf_counter() - started
            measured = conn.execute(
                "INSERT INTO doc_search_tuning (ef_search, recall, chunks, sample, seconds, code_candidates)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (singleton) DO UPDATE SET ef_search = excluded.ef_search,"
                " recall = excluded.recall, chunks = excluded.chunks, sample = excluded.sample,"
                " seconds = excluded.seconds, code_candidates = excluded.code_candidates, measured_at = now()"
                " RETURNING measured_at",
                (ef, recall, chunks, len(queries), seconds, codes),
            ).fetchone()
        finally:
            conn.execute(f"SELECT pg_advisory_unlock({_LOCK_KEY})")
    if recall < TARGET_RECALL:
        log.warning(
            "docs search: recall@10 %.3f at the longest candidate list (%d), below %.2f", recall, ef, TARGET_RECALL
        )
    measured_at = measured[0] if measured else None
    return SearchTuning(ef, recall, chunks, len(queries), seconds, measured_at, fresh=True, code_candidates=codes)
