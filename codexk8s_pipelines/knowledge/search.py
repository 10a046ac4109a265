"""Hybrid docs search: nearest chunks by meaning (pgvector HNSW, cosine) and by words (PostgreSQL full text),
fused by reciprocal rank.

Why both: the model finds "how do I point the platform at my database" in a section that never says those
words, while full text finds exact identifiers (`CODEXK8S_DATABASE_URL`, `hnsw.ef_search`) that a small model
blurs. Reciprocal rank fusion (k = 60) needs no score calibration between the two. Filters (repository, path
prefix) are applied inside both queries, and the HNSW scan is iterative so a narrow filter still fills top-k.
The HNSW graph holds half-precision copies of the vectors (migration 0004); its candidates are re-ranked by
full-precision distance.

Why one statement on a kept connection: at 100,000 chunks the goal is p95 ≤ 20 ms, and a new connection
(~6 ms), pgvector's type lookup, planning and one round trip per step each take a visible share of it. A
`Searcher` keeps its connection with the HNSW settings applied and the statement prepared; `search()` borrows
one from a small per-URL pool, so every caller (CLI, MCP tools, Dagster ops) gets that without owning one.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from .db import EMBEDDING_DIM, check_dimension, connect, missing_index, vector_version
from .embedding import Embedder, default_embedder

RRF_K = 60
MAX_K = 1000
# Ranking a match costs ~15 µs (its tsvector is read out of line, then cover density), and when thousands of
# sections match, the words say little: the meaning ranking carries such queries. The cap bounds a search's
# cost on any corpus; matches are capped after the full test (phrases, exclusions), so a quoted phrase still
# finds its few sections among many that have its words.
MAX_TEXT_MATCHES = 100
MAX_WORD_MATCHES = 2000  # the any-word fallback skips words in more chunks than this (see _text_ctes)
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


# The HNSW candidate list. bench/knowledge.py prints ef_search → p95, recall@10 at 100,000 chunks: real-text
# embeddings reach recall 0.99 from 200, the adversarial clustered set 0.95 only from 300 (0.98 at 400), while
# p95 on the half-precision index nears 20 ms at 400 on a shared 2-core machine. 350: both goals, some margin.
EF_SEARCH_FLOOR = 350


# The expression the HNSW index is built on (migration 0004): the graph holds half-precision vectors.
HNSW_ORDER = f"embedding::halfvec({EMBEDDING_DIM}) <=> %s::halfvec({EMBEDDING_DIM})"


def candidate_pool(k: int) -> int:
    """How many candidates each ranking contributes, and the HNSW `ef_search` that can return them."""
    return max(40, 4 * k)


def ef_search_for(pool: int, floor: int | None = None) -> int:
    """The HNSW candidate list for a pool: never below the floor, never above pgvector's maximum (1000)."""
    return min(max(EF_SEARCH_FLOOR if floor is None else floor, int(pool)), 1000)


def prefix_end(prefix: str) -> str | None:
    """The first string after every string that starts with `prefix`, in code point order; None if none is.

    In code point order (PostgreSQL's "C" collation, UTF-8 byte order), the strings starting with `prefix` are
    exactly those from `prefix` up to, not including, this one: the prefix with its last character moved to
    the next code point (past the surrogates, which UTF-8 cannot hold; a last character already at the
    maximum is dropped and the one before moved instead)."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code <= sys.maxunicode:
            chars.append(chr(0xE000 if 0xD800 <= code <= 0xDFFF else code))
            return "".join(chars)
    return None


def filters(repository: str | None, path_prefix: str | None, *, walk: bool = False) -> tuple[sql.Composable, list[Any]]:
    """The WHERE clause of a search's filters (always at least TRUE, so callers can append with AND).

    A path prefix is a range of paths in "C" order (see `prefix_end`), which doc_chunks_path_idx (migration
    0005) serves even in a generic plan, where PostgreSQL cannot turn `starts_with()` of a parameter into an
    index range: counting a folder's chunks, ranking them exactly and matching their words read that folder's
    entries, not every chunk's path. `walk=True` gives the same rows as `starts_with()`, for the HNSW walk:
    offered an index range it guesses small, PostgreSQL would sort the whole range instead of walking the
    graph (measured: 21 ms for a folder of 11,111 chunks, bench/knowledge.py)."""
    parts: list[sql.Composable] = [sql.SQL("TRUE")]
    params: list[Any] = []
    if repository:
        parts.append(sql.SQL("repository = %s"))
        params.append(repository)
    if path_prefix and walk:
        parts.append(sql.SQL("starts_with(path, %s)"))
        params.append(path_prefix)
    elif path_prefix:
        parts.append(sql.SQL('path COLLATE "C" >= %s'))
        params.append(path_prefix)
        end = prefix_end(path_prefix)
        if end is not None:
            parts.append(sql.SQL('path COLLATE "C" < %s'))
            params.append(end)
    return sql.SQL(" AND ").join(parts), params


def prepare_vector_scan(conn: Any, pool: int, version: tuple[int, int]) -> None:
    """Transaction-local HNSW settings: a candidate list as long as the pool and, on pgvector ≥ 0.8, iterative
    scanning, which keeps reading the graph until filtered rows fill the LIMIT instead of returning fewer."""
    statement = f"SET LOCAL hnsw.ef_search = {ef_search_for(pool)}"
    if version >= (0, 8):
        statement += "; SET LOCAL hnsw.iterative_scan = relaxed_order"
    conn.execute(statement)


def use_exact_scan(conn: Any, where: sql.Composable, params: Sequence[Any]) -> bool:
    """Whether a filtered ranking should read every matching row instead of walking the HNSW graph.

    A filter that keeps few rows (one repository among many, a docs folder) makes the graph walk visit many
    rows it then throws away; reading those few rows exactly is faster and has perfect recall. A repository's
    ids and vectors are read from doc_chunks_repository_vectors_idx (migration 0005), one key range, not from
    table pages wherever the chunks were written. Counting stops at the limit, so the check costs a few index
    pages. `search()` makes the same decision inside its one statement (see `_vector_ctes`); impact, which
    ranks many vectors under one filter, asks once here."""
    if not params:
        return False
    query = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM doc_chunks WHERE {where} LIMIT %s) AS f").format(where=where)
    row = conn.execute(query, [*params, EXACT_SCAN_ROWS + 1]).fetchone()
    return bool(row) and int(row[0]) <= EXACT_SCAN_ROWS


def vector_ranking(
    conn: Any, vector: np.ndarray, where: sql.Composable, params: Sequence[Any], limit: int, *, exact: bool = False
) -> list[tuple[int, float]]:
    """(chunk id, cosine similarity), most similar first. The HNSW index orders by half-precision distance and
    relaxed ordering may return its candidates slightly out of order, so the outer query sorts them again by
    the full-precision similarity it returns. `exact` orders by an expression the HNSW index cannot serve, so
    PostgreSQL filters by the btree indexes and sorts every remaining row."""
    order = "(embedding <=> %s) + 0" if exact else HNSW_ORDER
    query = sql.SQL(
        "SELECT id, 1 - dist FROM (SELECT id, embedding <=> %s AS dist FROM doc_chunks WHERE {where}"
        " ORDER BY {order} LIMIT %s) AS nearest ORDER BY dist, id"
    ).format(where=where, order=sql.SQL(order))
    rows = conn.execute(query, [vector, *params, vector, limit]).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]


# -- the statements -----------------------------------------------------------------------------------------
# Built from fragments that carry their own parameters, so `search()`, `text_ranking()` and the bench run the
# very same SQL. Every CTE below is small (at most a pool or a cap of rows). Row limits are literals, not
# parameters: the plan is generic (see Searcher), and with an unknown LIMIT PostgreSQL assumes a tenth of the
# table and sorts the filtered rows instead of walking the HNSW index.
Fragment = tuple[sql.Composable, list[Any]]


def _vector_ctes(vector: np.ndarray, repository: str | None, path_prefix: str | None, pool: int) -> Fragment:
    """CTE `by_meaning(id, rank)`: the pool nearest chunks under the filter, ranked by full-precision distance
    (the HNSW walk orders by half precision).

    With a filter, the exact-or-HNSW choice of `use_exact_scan` is made in the statement: a count capped at
    EXACT_SCAN_ROWS + 1 gates two branches, and PostgreSQL runs only the branch whose one-time filter holds.
    The count and the exact branch read the filters' indexes; the HNSW branch gets them in a form those
    indexes cannot serve (see `filters`)."""
    where, params = filters(repository, path_prefix)
    walk, walk_params = filters(repository, path_prefix, walk=True)
    hnsw = sql.SQL("SELECT id, embedding <=> %s AS dist FROM doc_chunks WHERE {where}{gate} ORDER BY " + HNSW_ORDER)
    exact = sql.SQL(
        "SELECT id, embedding <=> %s AS dist FROM doc_chunks WHERE {where}{gate} ORDER BY (embedding <=> %s) + 0"
    )
    if not params:
        nearest = sql.SQL("nearest AS ({hnsw} LIMIT {pool})").format(
            hnsw=hnsw.format(where=walk, gate=sql.SQL("")), pool=sql.Literal(pool)
        )
        nearest_params: list[Any] = [vector, vector]
        gate: Fragment = (sql.SQL(""), [])
    else:
        gate = (
            sql.SQL(
                "gate AS MATERIALIZED (SELECT count(*) <= {rows} AS exact"
                " FROM (SELECT 1 FROM doc_chunks WHERE {where} LIMIT {limit}) AS f), "
            ).format(where=where, rows=sql.Literal(EXACT_SCAN_ROWS), limit=sql.Literal(EXACT_SCAN_ROWS + 1)),
            list(params),
        )
        nearest = sql.SQL("nearest AS (({hnsw} LIMIT {pool}) UNION ALL ({exact} LIMIT {pool}))").format(
            hnsw=hnsw.format(where=walk, gate=sql.SQL(" AND NOT (SELECT exact FROM gate)")),
            exact=exact.format(where=where, gate=sql.SQL(" AND (SELECT exact FROM gate)")),
            pool=sql.Literal(pool),
        )
        nearest_params = [vector, *walk_params, vector, vector, *params, vector]
    query = sql.SQL(
        "{gate}{nearest}, by_meaning AS (SELECT id, row_number() OVER (ORDER BY dist, id) AS rank FROM nearest)"
    )
    return query.format(gate=gate[0], nearest=nearest), [*gate[1], *nearest_params]


def _text_ctes(text: str, where: sql.Composable, params: Sequence[Any], limit: int) -> Fragment:
    """CTE `by_words(id, rank)`: chunks matching `websearch_to_tsquery` (all words, "phrases", -exclusions),
    best cover density first.

    A natural-language question rarely has every word in one section; when the strict query finds nothing
    (and excludes nothing), any-word matching ranks sections by how many of the words they cover. That
    fallback leaves out words the column statistics put in more than MAX_WORD_MATCHES chunks: looking one
    up reads its whole posting list (a few ms each at 100,000 chunks) for matches that `ts_rank_cd`, which
    knows nothing of rarity, would rank as high as a shared rare word. The limit is a count, not a share, as
    it bounds that cost: at 100,000 chunks it drops words in more than 2% of them (measured in
    bench/knowledge.py: server time p95 of an unfiltered search 14-15 ms with 5,000, 10 ms with 2,000). Both
    forms stop at MAX_TEXT_MATCHES matching rows before ranking."""
    loose_allowed = not _EXCLUDES.search(text)
    query = sql.SQL(
        "common_words AS MATERIALIZED (SELECT e.lexeme FROM pg_class AS c"
        " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " JOIN pg_stats AS s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = 'tsv',"
        " unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS e(lexeme, freq)"
        " WHERE c.oid = 'doc_chunks'::regclass AND e.lexeme IS NOT NULL AND e.freq * c.reltuples > %s),"
        " text_query AS MATERIALIZED (SELECT websearch_to_tsquery('english', %s) AS strict,"
        r" (SELECT string_agg('''' || replace(replace(w.lexeme, '\', '\\'), '''', '''''') || '''', ' | ')"
        " FROM unnest(tsvector_to_array(to_tsvector('english', %s))) AS w(lexeme)"
        " WHERE w.lexeme NOT IN (SELECT lexeme FROM common_words))::tsquery AS loose),"
        " strict_matches AS MATERIALIZED (SELECT id, tsv FROM doc_chunks"
        " WHERE tsv @@ (SELECT strict FROM text_query) AND {where} LIMIT {cap}),"
        " loose_matches AS (SELECT id, tsv FROM doc_chunks WHERE %s AND NOT EXISTS (SELECT FROM strict_matches)"
        " AND tsv @@ (SELECT loose FROM text_query) AND {where} LIMIT {cap}),"
        " by_words AS (SELECT id, rank FROM (SELECT id, row_number() OVER (ORDER BY ts_rank_cd(tsv, q) DESC, id)"
        " AS rank FROM (SELECT id, tsv, (SELECT strict FROM text_query) AS q FROM strict_matches"
        " UNION ALL SELECT id, tsv, (SELECT loose FROM text_query) FROM loose_matches) AS m) AS r"
        " WHERE rank <= %s)"
    ).format(where=where, cap=sql.Literal(MAX_TEXT_MATCHES))
    return query, [MAX_WORD_MATCHES, text, text, *params, loose_allowed, *params, limit]


def _search_statement(
    vector: np.ndarray, text: str, repository: str | None, path_prefix: str | None, pool: int, k: int
) -> Fragment:
    """Both rankings, their fusion and the top-k rows, in one statement: one round trip per search.

    RRF as `rrf()` computes it, in float8: 1 / (60 + rank) from each ranking an id is in; equal scores go to
    the better meaning rank (the model read the whole question), then the lower id."""
    meaning, meaning_params = _vector_ctes(vector, repository, path_prefix, pool)
    words, words_params = _text_ctes(text, *filters(repository, path_prefix), pool)
    query = sql.SQL(
        "WITH {meaning}, {words},"
        " fused AS (SELECT id, COALESCE(1.0::float8 / (%s + m.rank), 0) + COALESCE(1.0::float8 / (%s + w.rank), 0)"
        " AS score, COALESCE(m.rank, %s) AS tie FROM by_meaning AS m FULL JOIN by_words AS w USING (id)),"
        " top AS (SELECT id, score, tie FROM fused ORDER BY score DESC, tie, id LIMIT %s)"
        " SELECT c.id, c.repository, c.path, c.heading_path, c.start_line, c.end_line, c.content, top.score"
        " FROM top JOIN doc_chunks AS c USING (id) ORDER BY top.score DESC, top.tie, top.id"
    ).format(meaning=meaning, words=words)
    return query, [*meaning_params, *words_params, RRF_K, RRF_K, pool + 1, k]


def text_ranking(conn: Any, text: str, where: sql.Composable, params: Sequence[Any], limit: int) -> list[int]:
    """Chunk ids of the full-text ranking `search()` fuses (same SQL), best first."""
    words, words_params = _text_ctes(text, where, params, limit)
    query = sql.SQL("WITH {words} SELECT id FROM by_words ORDER BY rank").format(words=words)
    return [int(r[0]) for r in conn.execute(query, words_params).fetchall()]


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


class Searcher:
    """Searches one database over one kept connection: settings applied once, the statement prepared.

    Not thread-safe: one search at a time (`search()` hands each thread its own from the pool). The connection
    opens on the first search and reopens after the server dropped it; `close()` (or `with`) ends it.
    `ef_search` overrides the HNSW candidate-list floor (the bench's trade-off table)."""

    def __init__(self, conn_url: str, *, embedder: Embedder | None = None, ef_search: int | None = None) -> None:
        if not conn_url:
            raise ValueError("conn_url: no platform database URL (set CODEXK8S_DATABASE_URL)")
        if embedder is not None:
            check_dimension(embedder.dim)
        self.conn_url = conn_url
        self.embedder = embedder
        self.ef_floor = ef_search
        self.connections_opened = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._ef: int | None = None

    def _connection(self) -> tuple[psycopg.Connection[Any], bool]:
        """The kept connection (and whether it was just opened): autocommit, as the one statement needs no
        transaction, and iterative HNSW scans for the session, so a search sends nothing but its statement."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn, False
        self.close()
        conn = connect(self.conn_url, autocommit=True)  # registers the vector type once for the connection
        try:
            # The statement's plan does not depend on its values (the exact-or-HNSW choice is made as it runs,
            # the tsquery is computed inside it): planning once per connection saves ~2 ms a search, and a
            # custom plan would estimate no better. ANALYZE of a grown table still invalidates the plan.
            settings = ["SET plan_cache_mode = force_generic_plan"]
            if vector_version(conn, self.conn_url) >= (0, 8):
                settings.append("SET hnsw.iterative_scan = relaxed_order")
            conn.execute("; ".join(settings))
        except BaseException:
            conn.close()
            raise
        self._conn, self._ef = conn, None
        self.connections_opened += 1
        return conn, True

    def search(
        self,
        query: str,
        *,
        repository: str | None = None,
        path_prefix: str | None = None,
        k: int = 10,
        embedder: Embedder | None = None,
    ) -> list[SearchHit]:
        """The top-k chunks for `query`, best first; `score` is the fused reciprocal-rank score (higher is
        better)."""
        _validate(self.conn_url, query, k)
        embedder = embedder or self.embedder
        if embedder is not None:
            check_dimension(embedder.dim)
        if path_prefix:
            path_prefix = path_prefix.removeprefix("./")
        conn, fresh = self._connection()  # first: a database without the index fails before the model loads
        embedder = embedder or default_embedder()
        check_dimension(embedder.dim)
        vector = np.asarray(embedder.encode([query.strip()]), dtype=np.float32)[0]
        pool = candidate_pool(k)
        statement, statement_params = _search_statement(vector, query.strip(), repository, path_prefix, pool, k)
        try:
            rows = self._run(conn, pool, statement, statement_params)
        except psycopg.OperationalError:
            if fresh or not (conn.closed or conn.broken):
                raise
            # The kept connection died while idle (server restart, idle timeout): one retry on a new one.
            conn, _ = self._connection()
            rows = self._run(conn, pool, statement, statement_params)
        return [SearchHit(r[1], r[2], tuple(r[3] or ()), r[4], r[5], round(float(r[7]), 6), r[6]) for r in rows]

    def _run(self, conn: psycopg.Connection[Any], pool: int, statement: sql.Composable, params: list[Any]) -> list[Any]:
        ef = ef_search_for(pool, self.ef_floor)
        try:
            if ef != self._ef:  # a session setting: sent again only when a bigger k needs a longer list
                conn.execute(sql.SQL("SET hnsw.ef_search = {}").format(sql.Literal(ef)))
                self._ef = ef
            return conn.execute(statement, params, prepare=True).fetchall()
        except psycopg.Error as exc:
            error = missing_index(exc)
            if error is None:
                raise
            raise error from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def __enter__(self) -> Searcher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Pool:
    """Idle Searchers per database URL, for callers that do not keep one (CLI, MCP tools, Dagster ops).

    A few per URL: the MCP server may search from several threads at once, each borrowing its own. After a
    fork the parent's connections are abandoned, not closed: closing would end the parent's sessions."""

    MAX_IDLE = 4

    def __init__(self) -> None:
        self._idle: dict[str, list[Searcher]] = {}
        self._lock = threading.Lock()
        self._abandoned: list[Searcher] = []  # kept referenced: freeing a connection would close its socket

    @contextmanager
    def borrow(self, conn_url: str) -> Iterator[Searcher]:
        with self._lock:
            idle = self._idle.get(conn_url)
            searcher = idle.pop() if idle else Searcher(conn_url)
        try:
            yield searcher
        except BaseException:
            searcher.close()  # an unknown state (a cancelled statement, a broken connection): start clean
            raise
        with self._lock:
            idle = self._idle.setdefault(conn_url, [])
            if len(idle) < self.MAX_IDLE:
                idle.append(searcher)
                return
        searcher.close()

    def after_fork(self) -> None:
        self._abandoned.extend(s for idle in self._idle.values() for s in idle)
        self._idle = {}
        self._lock = threading.Lock()

    def close_all(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for searchers in idle.values():
            for searcher in searchers:
                searcher.close()


_POOL = _Pool()
os.register_at_fork(after_in_child=_POOL.after_fork)
atexit.register(_POOL.close_all)


def search(
    conn_url: str,
    query: str,
    *,
    repository: str | None = None,
    path_prefix: str | None = None,
    k: int = 10,
    embedder: Embedder | None = None,
) -> list[SearchHit]:
    """The top-k chunks for `query`, best first; `score` is the fused reciprocal-rank score (higher is better).

    Runs on a pooled connection to `conn_url`: a process that searches again reuses it."""
    _validate(conn_url, query, k)
    if embedder is not None:
        check_dimension(embedder.dim)
    with _POOL.borrow(conn_url) as searcher:
        return searcher.search(query, repository=repository, path_prefix=path_prefix, k=k, embedder=embedder)
