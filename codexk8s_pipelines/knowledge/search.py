"""Hybrid docs search: nearest chunks by meaning (pgvector HNSW, cosine) and by words (PostgreSQL full text),
fused by reciprocal rank.

Why both: the model finds "how do I point the platform at my database" in a section that never says those
words, while full text finds exact identifiers (`CODEXK8S_DATABASE_URL`, `hnsw.ef_search`) that a small model
blurs. Reciprocal rank fusion (k = 60) needs no score calibration between the two. Filters (repository, path
prefix) are applied inside both queries, and the HNSW scan is iterative so a narrow filter still fills top-k.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from .db import check_dimension, connect, missing_index, vector_version
from .embedding import Embedder, default_embedder

RRF_K = 60
MAX_K = 1000
# Ranking every match costs ~6 µs a row: words so common that more sections match say little, and the
# meaning ranking carries such queries. The cap keeps a search within its latency budget on any corpus.
MAX_TEXT_MATCHES = 1000
EXACT_SCAN_ROWS = 5000  # a filter keeping at most this many chunks is ranked exactly (see use_exact_scan)
_EXCLUDES = re.compile(r"(?:^|\s)-\S")  # websearch syntax for "without this word"


@dataclass(frozen=True)
class SearchHit:
    repository: str
    path: str
    heading_path: tuple[str, ...]
    start_line: int
    end_line: int
    score: float
    text: str


@dataclass(frozen=True)
class Row:
    """A stored chunk as search and impact read it."""

    id: int
    repository: str
    path: str
    heading_path: tuple[str, ...]
    start_line: int
    end_line: int
    content: str


# The HNSW candidate list: below ~200 recall@10 drops fast at 100,000 chunks (bench/knowledge.py).
EF_SEARCH_FLOOR = 200


def candidate_pool(k: int) -> int:
    """How many candidates each ranking contributes, and the HNSW `ef_search` that can return them."""
    return max(40, 4 * k)


def filters(repository: str | None, path_prefix: str | None) -> tuple[sql.Composable, list[Any]]:
    """The WHERE clause both rankings share (always at least TRUE, so callers can append with AND)."""
    parts: list[sql.Composable] = [sql.SQL("TRUE")]
    params: list[Any] = []
    if repository:
        parts.append(sql.SQL("repository = %s"))
        params.append(repository)
    if path_prefix:
        parts.append(sql.SQL("starts_with(path, %s)"))
        params.append(path_prefix)
    return sql.SQL(" AND ").join(parts), params


def prepare_vector_scan(conn: Any, pool: int, version: tuple[int, int]) -> None:
    """Transaction-local HNSW settings: a candidate list as long as the pool and, on pgvector ≥ 0.8, iterative
    scanning, which keeps reading the graph until filtered rows fill the LIMIT instead of returning fewer."""
    statement = f"SET LOCAL hnsw.ef_search = {min(max(EF_SEARCH_FLOOR, int(pool)), 1000)}"
    if version >= (0, 8):
        statement += "; SET LOCAL hnsw.iterative_scan = relaxed_order"
    conn.execute(statement)


def use_exact_scan(conn: Any, where: sql.Composable, params: Sequence[Any]) -> bool:
    """Whether a filtered ranking should read every matching row instead of walking the HNSW graph.

    A filter that keeps few rows (one repository among many, a docs folder) makes the graph walk visit many
    rows it then throws away; reading those few rows exactly is faster and has perfect recall. Counting stops
    at the limit, so the check costs a few index pages."""
    if not params:
        return False
    query = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM doc_chunks WHERE {where} LIMIT %s) AS f").format(where=where)
    row = conn.execute(query, [*params, EXACT_SCAN_ROWS + 1]).fetchone()
    return bool(row) and int(row[0]) <= EXACT_SCAN_ROWS


def vector_ranking(
    conn: Any, vector: np.ndarray, where: sql.Composable, params: Sequence[Any], limit: int, *, exact: bool = False
) -> list[tuple[int, float]]:
    """(chunk id, cosine similarity), most similar first. Relaxed ordering may return the HNSW candidates
    slightly out of order, so the outer query sorts them again. `exact` orders by an expression the HNSW
    index cannot serve, so PostgreSQL filters by the btree indexes and sorts every remaining row."""
    order = "(embedding <=> %s) + 0" if exact else "embedding <=> %s"
    query = sql.SQL(
        "SELECT id, 1 - dist FROM (SELECT id, embedding <=> %s AS dist FROM doc_chunks WHERE {where}"
        " ORDER BY {order} LIMIT %s) AS nearest ORDER BY dist, id"
    ).format(where=where, order=sql.SQL(order))
    rows = conn.execute(query, [vector, *params, vector, limit]).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]


def text_ranking(conn: Any, text: str, where: sql.Composable, params: Sequence[Any], limit: int) -> list[int]:
    """Chunk ids matching `websearch_to_tsquery` (all words, "phrases", -exclusions), best cover density first.

    A natural-language question rarely has every word in one section; when the strict query finds nothing
    (and excludes nothing), any-word matching ranks sections by how many of the words they cover."""
    strict = "websearch_to_tsquery('english', %s)"
    loose = "replace(websearch_to_tsquery('english', %s)::text, ' & ', ' | ')::tsquery"
    for form in (strict, loose):
        query = sql.SQL(
            "SELECT id FROM (SELECT id, tsv, q FROM doc_chunks, (SELECT {tsquery} AS q) AS query"
            " WHERE tsv @@ q AND {where} LIMIT %s) AS matching ORDER BY ts_rank_cd(tsv, q) DESC, id LIMIT %s"
        ).format(tsquery=sql.SQL(form), where=where)
        ids = [int(r[0]) for r in conn.execute(query, [text, *params, MAX_TEXT_MATCHES, limit]).fetchall()]
        if ids or _EXCLUDES.search(text) or form is loose:
            return ids
    return []


def fetch_rows(conn: Any, ids: Sequence[int]) -> dict[int, Row]:
    rows = conn.execute(
        "SELECT id, repository, path, heading_path, start_line, end_line, content FROM doc_chunks WHERE id = ANY(%s)",
        (list(ids),),
    ).fetchall()
    return {int(r[0]): Row(int(r[0]), r[1], r[2], tuple(r[3] or ()), r[4], r[5], r[6]) for r in rows}


def rrf(*rankings: Sequence[int], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal rank fusion: each ranking adds 1 / (k + rank) (rank from 1) to each id it lists."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return scores


def _validate(conn_url: str, query: str, k: int) -> None:
    if not conn_url:
        raise ValueError("conn_url: no platform database URL (set CODEXK8S_DATABASE_URL)")
    if not isinstance(query, str) or not query.strip():
        raise ValueError("query: give the words or the question to search the docs for")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"k: the number of hits must be an integer from 1 to {MAX_K}, not {k!r}")


def search(
    conn_url: str,
    query: str,
    *,
    repository: str | None = None,
    path_prefix: str | None = None,
    k: int = 10,
    embedder: Embedder | None = None,
) -> list[SearchHit]:
    """The top-k chunks for `query`, best first; `score` is the fused reciprocal-rank score (higher is better)."""
    _validate(conn_url, query, k)
    if embedder is not None:
        check_dimension(embedder.dim)
    if path_prefix:
        path_prefix = path_prefix.removeprefix("./")
    pool = candidate_pool(k)
    where, params = filters(repository, path_prefix)
    with connect(conn_url) as conn:  # first: a database without the index fails before the model loads
        version = vector_version(conn, conn_url)
        embedder = embedder or default_embedder()
        check_dimension(embedder.dim)
        vector = np.asarray(embedder.encode([query.strip()]), dtype=np.float32)[0]
        try:
            with conn.transaction():
                prepare_vector_scan(conn, pool, version)
                exact = use_exact_scan(conn, where, params)
                by_meaning = [i for i, _ in vector_ranking(conn, vector, where, params, pool, exact=exact)]
                by_words = text_ranking(conn, query.strip(), where, params, pool)
                fused = rrf(by_meaning, by_words)
                # Equal fused scores: the better meaning rank first (the model reads the whole question).
                position = {i: n for n, i in enumerate(by_meaning)}
                top = sorted(fused, key=lambda i: (-fused[i], position.get(i, len(position)), i))[:k]
                rows = fetch_rows(conn, top)
        except psycopg.Error as exc:
            raise (missing_index(exc) or exc) from exc
    return [
        SearchHit(r.repository, r.path, r.heading_path, r.start_line, r.end_line, round(fused[i], 6), r.content)
        for i in top
        if (r := rows.get(i)) is not None
    ]
