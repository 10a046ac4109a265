"""Hybrid docs search: nearest chunks by meaning (pgvector HNSW, cosine) and by words (BM25 over PostgreSQL
full-text vectors), fused by normalised scores, at most MAX_PER_FILE chunks of one file.

Why both: the model finds "how do I point the platform at my database" in a section that never says those
words, while BM25 finds exact identifiers (`CODEXK8S_DATABASE_URL`, `hnsw.ef_search`) and rare terms that a
small model blurs. bench/retrieval.py measures the hybrid against each half on two real documentation sets
(Poetry's and Click's docs): it must never score below the better half. Filters (repository, path prefix)
are applied inside both rankings, and the HNSW scan is iterative so a narrow filter still fills top-k.
The HNSW graph holds half-precision copies of the vectors (migration 0004); its candidates are re-ranked by
full-precision distance. Its candidate list is the one measured on the corpus after indexing (`tuning`).

Why one statement on a kept connection: at 100,000 chunks the goal is p95 ≤ 12 ms, and a new connection
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
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, LiteralString, NamedTuple

import numpy as np
import psycopg
from psycopg import sql

from .db import (
    CODE_ORDER,
    HALF_ORDER,
    WORD_WEIGHTS,
    check_dimension,
    connect,
    hnsw_nearest,
    missing_index,
    vector_version,
)
from .embedding import Embedder, query_embedder
from .tuning import POOL, SearchTuning, candidate_pool, current_tuning, ef_search_of, tuned_ef_search

MAX_K = 1000
# The fusion (see `fuse`): the meaning ranking's share of the fused score, and how many chunks of one file a
# search returns by default (more would crowd other files out of a short list; `per_file=None` keeps all).
MEANING_WEIGHT = 0.4
MAX_PER_FILE = 2
# BM25 (see _text_ctes). k1 and b are the usual values. A word of the title or heading path counts as often as it
# occurs: bench/retrieval.py measured 0, 1, 2 extra occurrences (and b 0.5), and 0 ranked best on both sets, as
# title and heading words are already in the text the words ranking reads.
BM25_K1 = 1.2
BM25_B = 0.75
# Candidates of the words ranking (see _text_ctes): every chunk with a query word while the words have at most
# MAX_WORD_MATCHES postings in the filter's scope, else each word's WORD_CANDIDATES heaviest postings. It bounds
# the chunks BM25 scores per search on any corpus and filter: each ~1.5 µs since migration 0017 (one row, one inner
# product), ~5-9 µs from its postings when these limits were measured (below). MAX_WORD_MATCHES is
# about what the heaviest postings make for a usual question (6 words: 300, and the meaning ranking's 40): with
# 1,000, a search at 10,000 chunks scored up to twice the candidates one at 100,000 did, and its SQL p95 was as
# long (bench/knowledge.py `real`, the two sizes searched alternately: 7.9 against 8.5 ms). Measured side by side
# at 10,000 chunks: 1,000 → 500 took p95 7.7 → 5.5 ms (p50 4.2 → 3.7), and the top 10 kept 0.940 of the chunks
# that scoring every match finds (1,000: 0.952); bench/retrieval.py scores both alike (Poetry MRR 0.856 → 0.855,
# Click 0.804 both), and at 100,000 chunks nothing changed (p95 6.6 and 6.3 ms).
# A query with a phrase or an exclusion scores every chunk that satisfies it while at most PHRASE_MATCHES do, else
# each word's PHRASE_MATCHES heaviest postings that satisfy it.
MAX_WORD_MATCHES = 500
WORD_CANDIDATES = 50
PHRASE_MATCHES = 2000
# A filter keeping at most this many chunks is ranked exactly (see use_exact_scan). Exact costs ~0.3 µs a row, read
# from a covering index with half-precision vectors (migration 0014); a filtered HNSW walk costs more the fewer rows
# the filter keeps. bench/knowledge.py, 100,000 chunks, a folder of 11,111: exact p50 12.4 ms, recall 1.000; the
# walk p50 21.7 ms, recall 0.958 (measured side by side with 5,000 here, before migration 0014 halved the former).
EXACT_SCAN_ROWS = 15000
# An exact ranking orders by half-precision distance (see `exact_nearest`), then re-ranks this many times the rows it
# returns by full precision, so that rounding cannot move a chunk across its limit.
EXACT_RERANK = 2
# A filter keeping more than CODE_SCAN_ROWS chunks (and at most EXACT_SCAN_ROWS) is ranked by binary codes first,
# where the corpus's measurement allows (`code_nearest`, tuning.py). Smaller filters gain too little for the recall
# they would give up: a repository of 5,000 chunks (bench/knowledge.py `real`) p50 2.4 ms exact, 2.0 ms with 400
# codes at recall 0.989.
CODE_SCAN_ROWS = 8000
_EXCLUDES = re.compile(r"(?:^|\s)-[\w\"]")  # websearch syntax for "without this word (or phrase)"
# Dashes that exclude nothing: a run of them (a Markdown rule `-----`, a flag `--verbose`) or one before a space or
# a sign. websearch_to_tsquery reads each as a NOT, and more than 32 in a row fail the statement ("tsquery stack
# too small"); a pasted heading underline must not break a search, nor `x --- y` exclude y.
_STRAY_DASHES = re.compile(r"-{2,}|-(?![\w\"])")


def websearch_text(text: str) -> str:
    """The query as `websearch_to_tsquery` should read it: words, "phrases", OR, and `-word` exclusions only."""
    return _STRAY_DASHES.sub(" ", text)


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


def ef_search_for(pool: int, floor: int) -> int:
    """The HNSW candidate list for a pool: never below the corpus's measured list (`tuning`), never above
    pgvector's maximum (1000)."""
    return min(max(floor, int(pool)), 1000)


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
    index range: sizing a folder (`exact_gate`), ranking it exactly and matching its words read that folder's
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
    """Transaction-local HNSW settings: a candidate list as long as the pool (at least the corpus's measured one)
    and, on pgvector ≥ 0.8, iterative scanning, which keeps reading the graph until filtered rows fill the LIMIT
    instead of returning fewer."""
    statement = f"SET LOCAL hnsw.ef_search = {ef_search_for(pool, tuned_ef_search(conn))}"
    if version >= (0, 8):
        statement += "; SET LOCAL hnsw.iterative_scan = relaxed_order"
    conn.execute(statement)


def use_exact_scan(conn: Any, repository: str | None, path_prefix: str | None) -> bool:
    """Whether a filtered ranking should read every matching row instead of walking the HNSW graph.

    A filter that keeps few rows (one repository among many, a docs folder) makes the graph walk visit many
    rows it then throws away; reading those few rows exactly is faster and has perfect recall. A repository's or
    a folder's ids and vectors are read from a covering index (migration 0014, see `exact_nearest`), one key
    range, not from table pages wherever the chunks were written. `search()` makes the same decision (`filter_gate`,
    which a `Searcher` keeps a while); impact, which ranks many vectors under one filter, asks once here."""
    return filter_gate(conn, repository, path_prefix).exact


Fragment = tuple[sql.Composable, list[Any]]  # SQL text and the parameters it takes, in order


class Gate(NamedTuple):
    """How a filter's chunks are ranked: `exact`, every one of them (at most EXACT_SCAN_ROWS), else by the graph walk;
    `coarse`, when ranked exactly with a corpus's measured codes, by binary codes first (more than CODE_SCAN_ROWS)."""

    exact: bool
    coarse: bool = False


def filter_gate(conn: Any, repository: str | None, path_prefix: str | None, *, codes: bool = False) -> Gate:
    """The filter's `Gate`, asked of the database (`exact_gate`); `codes`: whether `coarse` is asked too. No filter:
    the graph walk."""
    if not repository and not path_prefix:
        return Gate(exact=False)
    gate, params = exact_gate(repository, path_prefix, codes=codes)
    row = conn.execute(gate, params).fetchone()
    return Gate(exact=bool(row and row[0]), coarse=bool(codes and row and row[1]))


def exact_gate(repository: str | None, path_prefix: str | None, *, codes: bool = False) -> Fragment:
    """SELECT (exact): whether the filter keeps at most EXACT_SCAN_ROWS chunks (see `use_exact_scan`); with `codes`,
    also (coarse) whether it keeps more than CODE_SCAN_ROWS (then `search()` ranks it by binary codes first).

    A repository alone: its chunk count, one row of doc_corpus, which the indexer writes with the chunks. Counting
    the repository's index entries instead cost ~0.7 ms for 5,000 chunks and ~2 ms near the limit, a tenth of a
    search (bench/knowledge.py `real`, 100,000 chunks). A path prefix: whether the path index has an entry past the
    limit, read in order from the range's start (the former `count(*)` over the first EXACT_SCAN_ROWS + 1 entries
    read as many and aggregated them: p50 0.77 against 0.61 ms for a folder of 11,111, same server, alternating).
    With `codes` a folder's entries are counted that former way, up to one past the limit: one read answers both."""
    if repository and not path_prefix:
        count: sql.Composable = sql.SQL("SELECT coalesce(sum(chunks), 0) AS n FROM doc_corpus WHERE repository = %s")
        params: list[Any] = [repository]
    else:
        where, params = filters(repository, path_prefix)
        if not codes:
            query = sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM doc_chunks WHERE {where} OFFSET {rows}) AS exact")
            return query.format(where=where, rows=sql.Literal(EXACT_SCAN_ROWS)), params
        count = sql.SQL("SELECT count(*) AS n FROM (SELECT 1 FROM doc_chunks WHERE {where} LIMIT {over}) AS f").format(
            where=where, over=sql.Literal(EXACT_SCAN_ROWS + 1)
        )
    coarse = sql.SQL(", n > {rows} AS coarse").format(rows=sql.Literal(CODE_SCAN_ROWS)) if codes else sql.SQL("")
    query = sql.SQL("SELECT n <= {rows} AS exact{coarse} FROM ({count}) AS size")
    return query.format(rows=sql.Literal(EXACT_SCAN_ROWS), coarse=coarse, count=count), params


def exact_nearest(vector: np.ndarray, where: sql.Composable, params: Sequence[Any], limit: int) -> Fragment:
    """SELECT (id, dist): the `limit` chunks under the filter nearest to `vector` by full-precision cosine distance,
    nearest first, every filtered row ranked.

    Every filtered row is ordered by its half-precision copy (migration 0014), which the filters' covering indexes
    hold, so PostgreSQL reads the filter's key range of one index instead of each chunk's row (a path prefix:
    1,238 index pages instead of 4,186 table pages, 3.4 ms instead of 7.8 ms, bench/knowledge.py `real`). The
    EXACT_RERANK × `limit` nearest are then re-ranked by full precision and cut to `limit`. The `+ 0` keeps an
    index on the distance out of it."""
    query = sql.SQL(
        "SELECT c.id, c.embedding <=> %s AS dist FROM (SELECT id FROM doc_chunks WHERE {where}"
        " ORDER BY (" + HALF_ORDER + ") + 0 LIMIT {rerank}) AS h JOIN doc_chunks AS c USING (id)"
        " ORDER BY dist, c.id LIMIT {limit}"
    ).format(where=where, rerank=sql.Literal(EXACT_RERANK * limit), limit=sql.Literal(limit))
    return query, [vector, *params, vector]


def code_nearest(
    vector: np.ndarray, where: sql.Composable, params: Sequence[Any], limit: int, candidates: int
) -> Fragment:
    """SELECT (id, dist): the `limit` chunks under the filter nearest to `vector` by full-precision cosine distance,
    nearest first, among the `candidates` (more for a pool above the default, in proportion) whose binary codes are
    nearest to its code.

    Every filtered row's code (48 bytes, migration 0015) is read from the filters' covering indexes and compared by
    Hamming distance, where `exact_nearest` reads 768 bytes a row and computes a half-precision distance: for a large
    filter that is most of its cost. The candidates are re-ranked by their full-precision distance, read from the
    table. Not exact: a near chunk whose code is far can be missed, hence a count measured on the corpus (tuning.py)."""
    codes = max(candidates, candidates * limit // POOL)
    query = sql.SQL(
        "SELECT c.id, c.embedding <=> %s AS dist FROM (SELECT id FROM doc_chunks WHERE {where}"
        " ORDER BY (" + CODE_ORDER + ") + 0 LIMIT {codes}) AS h JOIN doc_chunks AS c USING (id)"
        " ORDER BY dist, c.id LIMIT {limit}"
    ).format(where=where, codes=sql.Literal(codes), limit=sql.Literal(limit))
    return query, [vector, *params, vector]


def vector_ranking(
    conn: Any, vector: np.ndarray, where: sql.Composable, params: Sequence[Any], limit: int, *, exact: bool = False
) -> list[tuple[int, float]]:
    """(chunk id, cosine similarity), most similar first. The HNSW index orders by half-precision distance and
    relaxed ordering may return its candidates slightly out of order, so the outer query sorts them again by
    the full-precision similarity it returns. `exact` ranks every filtered row (`exact_nearest`)."""
    rank = exact_nearest if exact else hnsw_nearest
    nearest, nearest_params = rank(vector, where, params, limit)
    query = sql.SQL("SELECT id, 1 - dist FROM ({nearest}) AS nearest ORDER BY dist, id").format(nearest=nearest)
    rows = conn.execute(query, nearest_params).fetchall()
    return [(int(r[0]), float(r[1])) for r in rows]


# -- the statements -----------------------------------------------------------------------------------------
# Built from fragments that carry their own parameters, so `search()`, `text_ranking()` and the bench run the
# very same SQL. Every CTE below is small (at most a pool or a cap of rows). Row limits are literals, not
# parameters: the plan is generic (see Searcher), and with an unknown LIMIT PostgreSQL assumes a tenth of the
# table and sorts the filtered rows instead of walking the HNSW index.


def _vector_ctes(
    vector: np.ndarray,
    repository: str | None,
    path_prefix: str | None,
    pool: int,
    codes: int | None = None,
    gate: Gate | None = None,
) -> Fragment:
    """CTE `by_meaning(id, sim, rank)`: the pool nearest chunks under the filter, ranked by full-precision distance
    (the HNSW walk orders by half precision).

    With a filter, the exact-or-HNSW choice is the filter's `gate` (`filter_gate`, with `coarse` asked when `codes`),
    given as parameters: the plan holds every branch and PostgreSQL runs only the one whose one-time filter holds, so
    one prepared statement serves every filter. The exact branch (`exact_nearest`) reads the filters' indexes; the
    HNSW branch gets them in a form those indexes cannot serve (see `filters`). With `codes` (the corpus's measured
    count, tuning.py), a filter of more than CODE_SCAN_ROWS chunks takes a third branch instead of the exact one:
    `code_nearest`, from the same filters' code indexes."""
    where, params = filters(repository, path_prefix)
    walk, walk_params = filters(repository, path_prefix, walk=True)
    if not params:
        hnsw, nearest_params = hnsw_nearest(vector, walk, walk_params, pool)
        nearest = sql.SQL("nearest AS ({hnsw})").format(hnsw=hnsw)
        decided: Fragment = (sql.SQL(""), [])
    else:
        if gate is None:
            raise ValueError("gate: a filtered ranking needs its filter's gate (filter_gate)")
        decided = (
            sql.SQL("gate AS MATERIALIZED (SELECT %s::boolean AS exact, %s::boolean AS coarse), "),
            [gate.exact, gate.coarse],
        )
        ranked = sql.SQL("exact AND NOT coarse" if codes is not None else "exact")
        exact, exact_params = exact_nearest(
            vector, sql.SQL("{where} AND (SELECT {ranked} FROM gate)").format(where=where, ranked=ranked), params, pool
        )
        hnsw, hnsw_params = hnsw_nearest(
            vector, sql.SQL("{walk} AND NOT (SELECT exact FROM gate)").format(walk=walk), walk_params, pool
        )
        branches, nearest_params = [hnsw, exact], [*hnsw_params, *exact_params]
        if codes is not None:
            large = sql.SQL("{where} AND (SELECT exact AND coarse FROM gate)").format(where=where)
            coarse, coarse_params = code_nearest(vector, large, params, pool, codes)
            branches.append(coarse)
            nearest_params += coarse_params
        union = sql.SQL(" UNION ALL ").join(sql.SQL("({})").format(branch) for branch in branches)
        nearest = sql.SQL("nearest AS ({union})").format(union=union)
    query = sql.SQL(
        "{gate}{nearest}, by_meaning AS (SELECT id, 1 - dist AS sim, row_number() OVER (ORDER BY dist, id) AS rank"
        " FROM nearest)"
    )
    return query.format(gate=decided[0], nearest=nearest), [*decided[1], *nearest_params]


def uses_operators(text: str) -> bool:
    """Whether a query uses websearch syntax that must hold, not just rank: a "quoted phrase" or a -exclusion."""
    return '"' in text or bool(_EXCLUDES.search(text))


def _text_ctes(
    text: str, repository: str | None, path_prefix: str | None, limit: int, *, within_meaning: bool = False
) -> Fragment:
    """CTE `by_words(id, score, rank)`: Okapi BM25 over the chunks that have the query's words (all of them, or
    each word's heaviest: see below), best first, at most `limit` rows.

    Why BM25 over all matches: natural-language questions rarely have all their words in one section, and
    which section has the *rare* ones decides. Ranking a capped, unordered sample of matches by cover density
    (the former way) lost to both halves of the hybrid on a real corpus (issue 19). Document frequencies come
    from doc_terms/doc_corpus (migration 0007), written with the chunks; the query is parsed in the repository's
    text search language. A candidate's score is the inner product of its postings, kept as one sparse vector a chunk
    (migration 0017), with the query words' idf: each (word, chunk) weight was computed by the indexer with the
    chunk's length against its repository's average length, so across repositories a chunk is long or short by its
    own repository's measure.

    While the query's words have at most MAX_WORD_MATCHES postings in the filter's scope, every chunk with one of
    them is scored. Beyond that (at 100,000 chunks a repository filter left ~1,700 matches of three words to score:
    ~27 ms), each word makes candidates of its WORD_CANDIDATES heaviest postings only (migration 0010: postings
    ordered by their BM25 weight without the idf, which is the same for every chunk of the scope), read as one index
    range; every candidate is then scored by all the query's words. With `within_meaning` (in `search()`, after the
    `by_meaning` CTE), the meaning ranking's candidates are scored by the words too.

    A query with a phrase or an exclusion (`websearch_to_tsquery`: every word, each phrase, no excluded word) is
    answered by the full-text GIN index: while at most PHRASE_MATCHES chunks satisfy it, exactly those are scored,
    found however common their words are. Beyond that, each word's PHRASE_MATCHES heaviest postings that satisfy it
    are (a phrase's chunk has all its words, so it is found whenever one of them is in at most that many chunks).
    Checking each word's heaviest postings against the query (the former way, always) read up to 2,000 chunks' rows
    a word: a pasted snippet with quoted words took 40 ms at 100,000 chunks (bench/knowledge.py `real`)."""
    corpus_where, corpus_params = filters(repository, None)
    where, params = filters(repository, path_prefix)
    text = websearch_text(text)
    strict = uses_operators(text)
    # Each query word's heaviest postings in the filter's scope: one index range, heaviest first (migration 0010).
    postings = sql.SQL(
        "SELECT p.id FROM term_weights AS t CROSS JOIN LATERAL (SELECT id FROM doc_postings"
        " WHERE lexeme = t.lexeme AND {where} ORDER BY impact DESC LIMIT CASE WHEN"
        " (SELECT sum(df) FROM term_weights) <= {every} THEN NULL ELSE {per_word} END) AS p WHERE t.df > 0"
    ).format(
        where=where,
        every=sql.Literal(MAX_WORD_MATCHES),
        # A phrase or an exclusion filters the candidates: every chunk of a word in at most PHRASE_MATCHES chunks
        # is one, so the chunk with the phrase is found, not only if it is among a word's heaviest.
        per_word=sql.Literal(PHRASE_MATCHES if strict else WORD_CANDIDATES),
    )
    if within_meaning:
        candidates: sql.Composable = sql.SQL("{postings} UNION SELECT id FROM by_meaning").format(postings=postings)
    else:
        candidates = sql.SQL("{postings} GROUP BY p.id").format(postings=postings)
    matches: sql.Composable = sql.SQL("SELECT id FROM ({candidates}) AS k").format(candidates=candidates)
    matches_params: list[Any] = [*params]
    if strict:
        # The chunks that satisfy the query, from the GIN index (doc_chunks_tsv_idx), counted up to one past the
        # cap; the first branch runs while they are few enough, the second (each candidate's row read) beyond.
        matches = sql.SQL(
            "WITH strict_matches AS MATERIALIZED (SELECT id FROM doc_chunks WHERE {where}"
            " AND tsv @@ (SELECT strict FROM text_query) LIMIT {over}),"
            " few AS MATERIALIZED (SELECT count(*) <= {cap} AS few FROM strict_matches)"
            " SELECT id FROM strict_matches WHERE (SELECT few FROM few)"
            " UNION ALL SELECT k.id FROM ({candidates}) AS k WHERE NOT (SELECT few FROM few) AND EXISTS"
            " (SELECT 1 FROM doc_chunks AS c WHERE c.id = k.id AND c.tsv @@ (SELECT strict FROM text_query))"
        ).format(
            where=where,
            over=sql.Literal(PHRASE_MATCHES + 1),
            cap=sql.Literal(PHRASE_MATCHES),
            candidates=candidates,
        )
        matches_params = [*params, *params]
    # The candidates' scores: one row of each candidate's weights, read by its id, times the query words' idf, both
    # sparse vectors (`WORD_WEIGHTS`; why, and what it saved, in migration 0017). A candidate without any query word
    # scores 0 and is dropped, as it had no posting to join before.
    query = sql.SQL(
        "corpus AS MATERIALIZED (SELECT coalesce(sum(chunks), 0)::float8 AS n,"
        " coalesce(min(text_config::text), 'english')::regconfig AS cfg FROM doc_corpus WHERE {corpus_where}),"
        " query_terms AS MATERIALIZED (SELECT w.lexeme, coalesce((SELECT sum(t.chunks) FROM doc_terms AS t"
        " WHERE t.lexeme = w.lexeme AND {corpus_where}), 0)::float8 AS df"
        " FROM corpus, unnest(tsvector_to_array(to_tsvector(corpus.cfg, %s))) AS w(lexeme)),"
        " term_weights AS MATERIALIZED (SELECT q.lexeme, q.df,"
        " ln(1 + (greatest(c.n, q.df) - q.df + 0.5) / (q.df + 0.5)) AS idf FROM query_terms AS q, corpus AS c),"
        " text_query AS MATERIALIZED (SELECT websearch_to_tsquery((SELECT cfg FROM corpus), %s) AS strict),"
        " word_matches AS ({matches}),"
        " query_weights AS MATERIALIZED (SELECT {weights} AS v FROM (SELECT l.dim, w.idf AS weight"
        " FROM term_weights AS w JOIN doc_lexemes AS l USING (lexeme)) AS q),"
        " bm25 AS (SELECT s.id, s.score FROM (SELECT c.id, inner_product(c.weights, (SELECT v FROM query_weights))"
        " AS score FROM doc_chunk_weights AS c WHERE c.id = ANY((SELECT array_agg(id) FROM word_matches)::bigint[]))"
        " AS s WHERE s.score > 0),"
        " by_words AS (SELECT id, score, row_number() OVER (ORDER BY score DESC, id) AS rank FROM bm25"
        " ORDER BY score DESC, id LIMIT %s)"
    ).format(corpus_where=corpus_where, matches=matches, weights=sql.SQL(WORD_WEIGHTS))
    return query, [*corpus_params, *corpus_params, text, text, *matches_params, limit]


def fuse(
    meaning: Sequence[tuple[int, float]], words: Sequence[tuple[int, float]], weight: float = MEANING_WEIGHT
) -> list[tuple[int, float]]:
    """The hybrid ranking from the meaning ranking (id, cosine similarity) and the words ranking (id, BM25), as
    `search()`'s statement computes it: (id, fused score), best first.

    Score normalisation (bench/retrieval.py compares it with reciprocal rank fusion on both evaluation sets):
    each ranking's scores are scaled to [0, 1] over its own candidates (cosine min-max, BM25 divided by the best
    BM25), weighted `weight` (MEANING_WEIGHT) and 1 - `weight`, and summed; a chunk absent from a ranking gets 0
    from it. Unlike RRF, a ranking whose top is far ahead of the rest keeps that lead, and a weak ranking
    (few words in common, nearly equal cosines) cannot push noise to the top. Equal scores go to the better
    meaning rank, then the lower id."""
    out: dict[int, float] = {}
    if meaning:
        lo, hi = min(s for _, s in meaning), max(s for _, s in meaning)
        for i, s in meaning:
            out[i] = weight * ((s - lo) / (hi - lo) if hi > lo else 1.0)
    if words:
        top = max(s for _, s in words)
        for i, s in words:
            out[i] = out.get(i, 0.0) + (1.0 - weight) * (s / top if top > 0 else 0.0)
    position = {i: n for n, (i, _) in enumerate(meaning)}
    order = sorted(out, key=lambda i: (-out[i], position.get(i, len(meaning)), i))
    return [(i, out[i]) for i in order]


def _search_statement(
    vector: np.ndarray,
    text: str,
    repository: str | None,
    path_prefix: str | None,
    pool: int,
    k: int,
    per_file: int | None = None,
    codes: int | None = None,
    gate: Gate | None = None,
) -> tuple[sql.Composed, list[Any]]:
    """Both rankings, their fusion (`fuse()`, in float8), at most `per_file` chunks of one file, and the top-k
    rows, in one statement: one round trip per search. `codes`, `gate`: see `_vector_ctes`."""
    meaning, meaning_params = _vector_ctes(vector, repository, path_prefix, pool, codes, gate)
    words, words_params = _text_ctes(text, repository, path_prefix, pool, within_meaning=True)
    query = sql.SQL(
        "WITH {meaning}, {words},"
        " spans AS (SELECT (SELECT min(sim) FROM by_meaning) AS lo, (SELECT max(sim) FROM by_meaning) AS hi,"
        " (SELECT max(score) FROM by_words) AS top),"
        " fused AS (SELECT id, COALESCE({wm} * CASE WHEN s.hi > s.lo THEN (m.sim - s.lo) / (s.hi - s.lo) ELSE 1.0 END,"
        " 0) + COALESCE({ww} * CASE WHEN s.top > 0 THEN w.score / s.top ELSE 0.0 END, 0) AS score,"
        " COALESCE(m.rank, %s) AS tie FROM by_meaning AS m FULL JOIN by_words AS w USING (id) CROSS JOIN spans AS s),"
        " placed AS (SELECT f.id, f.score, f.tie, row_number() OVER (PARTITION BY c.repository, c.path"
        " ORDER BY f.score DESC, f.tie, f.id) AS nth FROM fused AS f JOIN doc_chunks AS c USING (id)),"
        " top AS (SELECT id, score, tie FROM placed WHERE nth <= %s ORDER BY score DESC, tie, id LIMIT %s)"
        " SELECT c.id, c.repository, c.path, c.heading_path, c.start_line, c.end_line, c.content, top.score"
        " FROM top JOIN doc_chunks AS c USING (id) ORDER BY top.score DESC, top.tie, top.id"
    ).format(
        meaning=meaning,
        words=words,
        wm=sql.Literal(float(MEANING_WEIGHT)),
        ww=sql.Literal(float(1.0 - MEANING_WEIGHT)),
    )
    return query, [*meaning_params, *words_params, pool + 1, per_file or MAX_K, k]


def text_scores(
    conn: Any, text: str, repository: str | None, path_prefix: str | None, limit: int
) -> list[tuple[int, float]]:
    """(chunk id, BM25 score) of the words ranking `search()` fuses (same SQL), best first."""
    words, words_params = _text_ctes(text, repository, path_prefix, limit)
    query = sql.SQL("WITH {words} SELECT id, score FROM by_words ORDER BY rank").format(words=words)
    return [(int(r[0]), float(r[1])) for r in conn.execute(query, words_params).fetchall()]


def text_ranking(conn: Any, text: str, repository: str | None, path_prefix: str | None, limit: int) -> list[int]:
    """Chunk ids of the words ranking, best first."""
    return [i for i, _ in text_scores(conn, text, repository, path_prefix, limit)]


def fetch_rows(conn: Any, ids: Sequence[int]) -> dict[int, Row]:
    rows = conn.execute(
        "SELECT id, repository, path, heading_path, start_line, end_line, content FROM doc_chunks WHERE id = ANY(%s)",
        (list(ids),),
    ).fetchall()
    return {int(r[0]): Row(int(r[0]), r[1], r[2], tuple(r[3] or ()), r[4], r[5], r[6]) for r in rows}


MAX_QUERY_CHARS = 2000


def _validate(conn_url: str, query: str, k: int, per_file: int | None = MAX_PER_FILE) -> None:
    if not conn_url:
        raise ValueError("conn_url: no platform database URL (set CODEXK8S_DATABASE_URL)")
    if not isinstance(query, str) or not query.strip():
        raise ValueError("query: give the words or the question to search the docs for")
    if "\x00" in query:  # PostgreSQL text cannot hold NUL: without this check the database would refuse it
        raise ValueError("query: must not contain NUL characters (\\x00)")
    if len(query) > MAX_QUERY_CHARS:
        raise ValueError(f"query: at most {MAX_QUERY_CHARS} characters, not {len(query)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ValueError(f"k: the number of hits must be an integer from 1 to {MAX_K}, not {k!r}")
    if per_file is not None and (isinstance(per_file, bool) or not isinstance(per_file, int) or per_file < 1):
        raise ValueError(f"per_file: at most this many chunks of one file, an integer ≥ 1 or None, not {per_file!r}")


class Searcher:
    """Searches one database over one kept connection: settings applied once, the statement prepared.

    Not thread-safe: one search at a time (`search()` hands each thread its own from the pool). The connection
    opens on the first search and reopens after the server dropped it; `close()` (or `with`) ends it.
    The HNSW candidate list and the binary codes a large filter re-ranks are the corpus's measured ones (`tuning`),
    read when the connection opens and again when TUNING_MAX_AGE has passed, so a retuned index is searched with
    its new values within a minute. So is each filter's `Gate` (how many chunks it keeps decides how it is ranked):
    asked when the filter is first searched and again after TUNING_MAX_AGE, not in every search, because counting a
    folder's chunks took ~0.8 ms of each search (p50 6.1 → 5.3 ms, SQL, a folder of 11,111 at 100,000 chunks,
    bench/knowledge.py `real`). A folder indexed past a limit meanwhile is ranked the former way for at most that
    long: still correctly, only at the other speed. `ef_search` overrides the list (the bench's trade-off table);
    `exact_filters` ranks every filter exactly, as a corpus without codes is (the bench's side-by-side comparison)."""

    TUNING_MAX_AGE = 60.0
    MAX_GATES = 256  # filters whose gate is kept; past that the kept ones are dropped and asked again

    def __init__(
        self,
        conn_url: str,
        *,
        embedder: Embedder | None = None,
        ef_search: int | None = None,
        exact_filters: bool = False,
    ) -> None:
        if not conn_url:
            raise ValueError("conn_url: no platform database URL (set CODEXK8S_DATABASE_URL)")
        if embedder is not None:
            check_dimension(embedder.dim)
        self.conn_url = conn_url
        self.embedder = embedder
        self.ef_floor = ef_search
        self.exact_filters = exact_filters
        self.connections_opened = 0
        self._conn: psycopg.Connection[Any] | None = None
        self._ef: int | None = None
        self._tuned: tuple[SearchTuning | None, float] | None = None  # (the measurement, monotonic time read)
        self._gates: dict[tuple[str | None, str | None, bool], tuple[Gate, float]] = {}  # (gate, monotonic time read)

    def _connection(self) -> tuple[psycopg.Connection[Any], bool]:
        """The kept connection (and whether it was just opened): autocommit, as the one statement needs no
        transaction, and iterative HNSW scans for the session, so a search sends nothing but its statement (and, once a
        minute, a filter's gate)."""
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn, False
        self.close()
        conn = connect(self.conn_url, autocommit=True)  # registers the vector type once for the connection
        try:
            # The statement's plan does not depend on its values (the exact-or-HNSW choice is made as it runs,
            # the tsquery is computed inside it): planning once per connection saves ~2 ms a search, and a
            # custom plan would estimate no better. ANALYZE of a grown table still invalidates the plan.
            # No sequential scans: on a small table (10,000 chunks) PostgreSQL would rather read and sort every row
            # than walk the HNSW graph, which made a search slower there than at 100,000 chunks (issue 19;
            # measured side by side, busy machine: p50 84 → 48 ms at 10,000, 43 → 44 ms at 100,000). Every
            # other read of the statement has an index; a table without one is still scanned.
            settings: list[LiteralString] = ["SET plan_cache_mode = force_generic_plan", "SET enable_seqscan = off"]
            if vector_version(conn, self.conn_url) >= (0, 8):
                settings.append("SET hnsw.iterative_scan = relaxed_order")
            conn.execute("; ".join(settings))
        except BaseException:
            conn.close()
            raise
        self._conn, self._ef, self._tuned, self._gates = conn, None, None, {}
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
        per_file: int | None = MAX_PER_FILE,
    ) -> list[SearchHit]:
        """The top-k chunks for `query`, best first, at most `per_file` of one file (None: no limit); `score`
        is the fused score of `fuse()` (higher is better, at most 1)."""
        _validate(self.conn_url, query, k, per_file)
        embedder = embedder or self.embedder
        if embedder is not None:
            check_dimension(embedder.dim)
        if path_prefix:
            path_prefix = path_prefix.removeprefix("./")
        conn, fresh = self._connection()  # first: a database without the index fails before the model loads
        embedder = embedder or query_embedder()
        check_dimension(embedder.dim)
        vector = np.asarray(embedder.encode([query.strip()]), dtype=np.float32)[0]
        pool = candidate_pool(k)
        place = (repository, path_prefix)
        try:
            rows = self._run(conn, vector, query.strip(), place, pool, k, per_file)
        except psycopg.OperationalError:
            if fresh or not (conn.closed or conn.broken):
                raise
            # The kept connection died while idle (server restart, idle timeout): one retry on a new one.
            conn, _ = self._connection()
            rows = self._run(conn, vector, query.strip(), place, pool, k, per_file)
        return [SearchHit(r[1], r[2], tuple(r[3] or ()), r[4], r[5], round(float(r[7]), 6), r[6]) for r in rows]

    def _run(
        self,
        conn: psycopg.Connection[Any],
        vector: np.ndarray,
        text: str,
        place: tuple[str | None, str | None],
        pool: int,
        k: int,
        per_file: int | None,
    ) -> list[Any]:
        """The search's statement for (repository, path prefix) `place`, composed with the corpus's tuning and the
        filter's gate, run on `conn`."""
        try:
            tuned_ef, codes = self._tuning(conn)
            codes = None if self.exact_filters else codes
            gate = self._gate(conn, *place, codes=codes is not None)
            statement, params = _search_statement(vector, text, *place, pool, k, per_file, codes, gate)
            ef = ef_search_for(pool, self.ef_floor or tuned_ef)
            if ef != self._ef:  # a session setting: sent again only when a bigger k needs a longer list
                conn.execute(sql.SQL("SET hnsw.ef_search = {}").format(sql.Literal(ef)))
                self._ef = ef
            return conn.execute(statement, params, prepare=True).fetchall()
        except psycopg.Error as exc:
            error = missing_index(exc)
            if error is None:
                raise
            raise error from exc

    def _tuning(self, conn: psycopg.Connection[Any]) -> tuple[int, int | None]:
        """(HNSW ef_search, binary codes or None) measured for this corpus, else the untuned list and no codes."""
        if self._tuned is None or self._expired(self._tuned[1]):
            self._tuned = (current_tuning(conn), time.monotonic())
        tuning = self._tuned[0]
        return ef_search_of(tuning), tuning.code_candidates if tuning else None

    def _gate(
        self, conn: psycopg.Connection[Any], repository: str | None, path_prefix: str | None, *, codes: bool
    ) -> Gate:
        """The filter's gate (`filter_gate`), asked again when TUNING_MAX_AGE has passed."""
        key = (repository, path_prefix, codes)
        kept = self._gates.get(key)
        if kept is None or self._expired(kept[1]):
            if len(self._gates) >= self.MAX_GATES:
                self._gates.clear()
            kept = self._gates[key] = (filter_gate(conn, repository, path_prefix, codes=codes), time.monotonic())
        return kept[0]

    def _expired(self, read_at: float) -> bool:
        """Whether a reading kept since `read_at` (monotonic) is older than TUNING_MAX_AGE."""
        return time.monotonic() - read_at > self.TUNING_MAX_AGE

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
    per_file: int | None = MAX_PER_FILE,
) -> list[SearchHit]:
    """The top-k chunks for `query`, best first, at most `per_file` of one file (None: all); `score` is the
    fused score (higher is better).

    Runs on a pooled connection to `conn_url`: a process that searches again reuses it."""
    _validate(conn_url, query, k, per_file)
    if embedder is not None:
        check_dimension(embedder.dim)
    with _POOL.borrow(conn_url) as searcher:
        return searcher.search(
            query, repository=repository, path_prefix=path_prefix, k=k, embedder=embedder, per_file=per_file
        )
