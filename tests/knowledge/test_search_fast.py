"""What keeps search within its latency budget without changing its answers: kept connections (pool and
`Searcher`), one prepared statement per search, BM25 over every word match, and the exact-or-HNSW choice made
as the statement runs, from a filter's gate that a `Searcher` asks once a minute. Each is checked against the
slower, obvious way of computing the same answer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql
from psycopg._queries import PostgresQuery
from psycopg.adapt import Transformer

import codexk8s_pipelines.knowledge.search as search_module
from codexk8s_pipelines.knowledge.db import connect
from codexk8s_pipelines.knowledge.embedding import Embedder, HashingEmbedder
from codexk8s_pipelines.knowledge.index import refresh_term_stats
from codexk8s_pipelines.knowledge.search import (
    Gate,
    Searcher,
    _search_statement,
    candidate_pool,
    filter_gate,
    filters,
    fuse,
    prefix_end,
    search,
    text_ranking,
    text_scores,
    use_exact_scan,
    vector_ranking,
)
from codexk8s_pipelines.knowledge.tuning import UNTUNED_EF_SEARCH

from .chunk_rows import copy_chunks


@pytest.fixture
def counted_connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every connection search opens, by URL."""
    opened: list[str] = []

    def counting(conn_url: str, **kw: Any) -> psycopg.Connection[Any]:
        opened.append(conn_url)
        return connect(conn_url, **kw)

    monkeypatch.setattr(search_module, "connect", counting)
    return opened


def test_a_second_search_reuses_the_pooled_connection(indexed_url: str, counted_connects: list[str]) -> None:
    hashing = HashingEmbedder()
    search_module._POOL.close_all()
    first = search(indexed_url, "refund", k=3, embedder=hashing)
    assert counted_connects == [indexed_url]
    for _ in range(3):
        assert search(indexed_url, "refund", k=3, embedder=hashing) == first
    assert counted_connects == [indexed_url], "later searches borrow the idle connection"


def test_concurrent_searches_each_borrow_their_own_connection(indexed_url: str, counted_connects: list[str]) -> None:
    hashing = HashingEmbedder()
    search_module._POOL.close_all()
    barrier = threading.Barrier(3)
    results: list[Any] = []

    def run() -> None:
        barrier.wait()
        results.append([h.path for h in search(indexed_url, "money back", k=5, embedder=hashing)])

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and results[0] == results[1] == results[2]
    assert 1 <= len(counted_connects) <= 3
    opened = len(counted_connects)
    search(indexed_url, "money back", k=5, embedder=hashing)
    assert len(counted_connects) == opened, "the connections went back to the pool"


def test_one_statement_per_search_on_a_kept_connection(indexed_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    statements: list[str] = []
    original = psycopg.Connection.execute

    def counting(self: psycopg.Connection[Any], query: Any, *args: Any, **kw: Any) -> Any:
        statements.append(str(query)[:40])
        return original(self, query, *args, **kw)

    with Searcher(indexed_url, embedder=HashingEmbedder()) as searcher:
        searcher.search("refund", repository="acme/shop", k=5)  # opens, sets the session up
        monkeypatch.setattr(psycopg.Connection, "execute", counting)
        for query in ("refund", "rollback", '"exchange rates"'):
            searcher.search(query, repository="acme/shop", k=5)
        assert len(statements) == 3, statements
        pool = candidate_pool(150)
        assert pool > UNTUNED_EF_SEARCH  # the fixture index was never tuned
        searcher.search("refund", k=150)  # a pool past the measured list: the setting follows, once
        assert len(statements) == 5 and "ef_search" in statements[3], statements
        assert searcher.connections_opened == 1


def test_a_searcher_reconnects_after_the_server_dropped_its_connection(indexed_url: str) -> None:
    with Searcher(indexed_url, embedder=HashingEmbedder()) as searcher:
        before = searcher.search("refund", k=3)
        conn = searcher._conn
        assert conn is not None
        pid = conn.info.backend_pid
        with psycopg.connect(indexed_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        assert searcher.search("refund", k=3) == before
        assert searcher.connections_opened == 2


def _expected_fusion(url: str, text: str, vector: np.ndarray, repository: str | None, k: int) -> list[tuple]:
    """search()'s answer computed step by step with the separate rankings and Python's `fuse`."""
    pool = candidate_pool(k)
    where, params = filters(repository, None)
    with connect(url) as conn, conn.transaction():
        search_module.prepare_vector_scan(conn, pool, (0, 8))
        exact = use_exact_scan(conn, repository, None)
        by_meaning = vector_ranking(conn, vector, where, params, pool, exact=exact)
        by_words = text_scores(conn, text, repository, None, pool)
        top = fuse(by_meaning, by_words)[:k]
        rows = search_module.fetch_rows(conn, [i for i, _ in top])
    return [(rows[i].path, rows[i].start_line, round(score, 6)) for i, score in top]


@pytest.mark.parametrize("repository", [None, "acme/shop"])
@pytest.mark.parametrize("text", ["refund", "How do I undo a bad deploy?", "customer refund helicopter", "zzzqx"])
def test_the_fused_statement_equals_python_fusion_over_both_rankings(
    indexed_url: str, embedder: Embedder, repository: str | None, text: str
) -> None:
    vector = np.asarray(embedder.encode([text]), dtype=np.float32)[0]
    hits = search(indexed_url, text, repository=repository, k=8, embedder=embedder, per_file=None)
    assert [(h.path, h.start_line, h.score) for h in hits] == _expected_fusion(indexed_url, text, vector, repository, 8)


def _plan_branches(url: str, repository: str, codes: int | None = None) -> tuple[int, int, int]:
    """(rows from the HNSW branch, from the exact branch, from the binary-code branch) when search()'s statement runs
    for a filter, with `codes` as a corpus's measured count."""
    vector = HashingEmbedder().encode(["refund"])[0]
    with connect(url, autocommit=True) as conn:
        gate = filter_gate(conn, repository, None, codes=codes is not None)
        statement, statement_params = _search_statement(vector, "refund", repository, None, 40, 10, None, codes, gate)
        conn.execute("SET hnsw.iterative_scan = relaxed_order")
        row = conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) {}").format(statement), statement_params).fetchone()
    assert row is not None
    rows = {"hnsw": 0, "exact": 0, "codes": 0}

    def walk(node: dict[str, Any]) -> None:
        # The HNSW branch orders by the graph's expression (the vector cast to half precision); the exact branch
        # sorts every filtered row by the stored half-precision copy, the code branch by the stored binary code
        # (their re-ranking of the nearest by full precision, `c.embedding <=> ...`, is none of these).
        key = f"{node.get('Sort Key', '')} {node.get('Order By', '')}"
        if "embedding)::halfvec" in key:
            rows["hnsw"] += int(node["Actual Rows"])
        elif "embedding_half <=>" in key:
            rows["exact"] += int(node["Actual Rows"])
        elif "embedding_bits <~>" in key:
            rows["codes"] += int(node["Actual Rows"])
        for child in node.get("Plans", []):
            walk(child)

    walk(row[0][0]["Plan"])
    return rows["hnsw"], rows["exact"], rows["codes"]


def test_the_statement_runs_only_the_branch_the_filter_size_calls_for(
    indexed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _plan_branches(indexed_url, "acme/other") == (0, 2, 0), "two chunks: ranked exactly, no graph walk"
    assert _plan_branches(indexed_url, "acme/other", codes=400) == (0, 2, 0), "codes only above CODE_SCAN_ROWS"
    monkeypatch.setattr(search_module, "CODE_SCAN_ROWS", 1)
    assert _plan_branches(indexed_url, "acme/other", codes=400) == (0, 0, 2), "above CODE_SCAN_ROWS: codes first"
    assert _plan_branches(indexed_url, "acme/other") == (0, 2, 0), "no measured count: ranked exactly"
    monkeypatch.setattr(search_module, "EXACT_SCAN_ROWS", 1)
    for codes in (None, 400):
        assert _plan_branches(indexed_url, "acme/other", codes) == (2, 0, 0), "above the exact-scan limit: the walk"


@pytest.mark.parametrize(("repository", "path"), [("acme/shop", None), (None, "docs/"), ("acme/shop", "docs/")])
def test_a_large_filter_ranked_by_binary_codes_first_gets_the_exact_answer_when_all_are_candidates(
    indexed_url: str, embedder: Embedder, monkeypatch: pytest.MonkeyPatch, repository: str | None, path: str | None
) -> None:
    """Above CODE_SCAN_ROWS a filter's chunks are ranked by their binary codes (migration 0015) and the nearest are
    re-ranked by full precision. With as many codes as the filter has chunks, the answer, scores included, must be
    the exact ranking's; with one code (per default pool), only the chunk nearest by code can lead the meaning half."""
    question = "How long do I have to ask for my money back?"
    vector = np.asarray(embedder.encode([question]), dtype=np.float32)[0]
    monkeypatch.setattr(search_module, "CODE_SCAN_ROWS", 1)

    def ranked(codes: int | None) -> list[tuple[str, int, float]]:
        with connect(indexed_url, autocommit=True) as conn:
            gate = filter_gate(conn, repository, path, codes=codes is not None)
            statement, params = _search_statement(vector, question, repository, path, 40, 8, 2, codes, gate)
            return [(r[2], r[4], round(float(r[7]), 6)) for r in conn.execute(statement, params).fetchall()]

    exact = ranked(None)
    assert exact and ranked(1000) == exact
    with connect(indexed_url, autocommit=True) as conn:
        gate = filter_gate(conn, repository, path, codes=True)
        meaning, params = search_module._vector_ctes(vector, repository, path, 40, 1, gate)
        nearest = conn.execute(sql.SQL("WITH {} SELECT id FROM by_meaning").format(meaning), params).fetchall()
    assert len(nearest) == 1, "one code a pool of its default size: one candidate"


def test_chunks_with_the_same_binary_code_are_ordered_by_full_precision(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two chunks whose vectors have the same signs have the same code (Hamming distance 0 to each other): the
    code ranking cannot order them, the full-precision re-rank must choose the nearest. The farther one is stored
    first (lower id), so an order by code and id would keep it."""
    rng = np.random.default_rng(7)
    query = rng.normal(size=384).astype(np.float32)
    query /= np.linalg.norm(query)
    near, far = query + 0.05 * np.abs(rng.normal(size=384)) * np.sign(query), query * rng.uniform(0.2, 3.0, 384)
    vectors = [v / np.linalg.norm(v) for v in (far, near)]
    assert (np.sign(vectors[0]) == np.sign(vectors[1])).all() and float(query @ vectors[1]) > float(query @ vectors[0])
    rows = [
        ("acme/a", f"docs/{name}.md", "H", "text", "[" + ",".join(f"{x:.9g}" for x in v) + "]")
        for name, v in zip(("far", "near"), vectors, strict=True)
    ]
    copy_chunks(migrated_url, rows)
    monkeypatch.setattr(search_module, "CODE_SCAN_ROWS", 1)
    nearest = sql.SQL(
        "WITH {} SELECT c.path, m.sim FROM by_meaning AS m JOIN doc_chunks AS c USING (id) ORDER BY m.rank"
    )
    with connect(migrated_url) as conn:
        gate = filter_gate(conn, None, "docs/", codes=True)
        assert gate == Gate(exact=True, coarse=True)
        meaning, meaning_params = search_module._vector_ctes(query, None, "docs/", 1, 400, gate)  # the nearest only
        ranked = conn.execute(nearest.format(meaning), meaning_params).fetchall()
        codes = conn.execute("SELECT count(DISTINCT embedding_bits) FROM doc_chunks").fetchone()
    assert codes == (1,)
    assert [p for p, _ in ranked] == ["docs/near.md"]
    assert ranked[0][1] == pytest.approx(float(query @ vectors[1]), abs=1e-6)


def test_a_searcher_ranks_large_filters_by_the_corpus_s_measured_codes(
    migrated_url: str, migrator_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The count tuning stores is what a Searcher's statements use (read again as the HNSW list is); without one, or
    with `exact_filters`, a large filter is ranked exactly. Seen in the answer: a stored count of one code leaves the
    meaning ranking one candidate, so a question whose words match nothing gets one hit instead of three."""
    monkeypatch.setattr(search_module, "CODE_SCAN_ROWS", 1)
    monkeypatch.setattr(Searcher, "TUNING_MAX_AGE", 0.0)
    hashing = HashingEmbedder()
    texts = ["refund policy", "refund window", "shipping times", "exchange rates"]
    copy_chunks(
        migrated_url,
        [
            ("acme/a", f"docs/{n}.md", "H", text, "[" + ",".join(f"{x:.9g}" for x in v) + "]")
            for n, (text, v) in enumerate(zip(texts, hashing.encode(texts), strict=True))
        ],
    )

    def hits(searcher: Searcher) -> int:
        return len(searcher.search("zzzqx", path_prefix="docs/", k=3, per_file=None))

    def store(codes: int | None) -> None:
        with psycopg.connect(migrator_database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO doc_search_tuning (ef_search, recall, chunks, sample, seconds, code_candidates)"
                " VALUES (100, 1.0, 10, 10, 0.1, %s) ON CONFLICT (singleton) DO UPDATE"
                " SET code_candidates = excluded.code_candidates",
                [codes],
            )

    with (
        Searcher(migrated_url, embedder=hashing) as searcher,
        Searcher(migrated_url, embedder=hashing, exact_filters=True) as exact,
    ):
        assert hits(searcher) == 3, "never measured: ranked exactly"
        store(1)
        assert hits(searcher) == 1, "the measured count: the folder ranked by codes first"
        assert hits(exact) == 3, "exact_filters: ranked exactly"
        store(None)
        assert hits(searcher) == 3, "measured again without codes: ranked exactly"


def test_a_searcher_asks_a_filter_s_gate_once_a_while_not_in_every_search(
    indexed_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether a filter is ranked exactly, by codes or by the walk depends on how many chunks it keeps; counting a
    folder's took ~0.8 ms of every search. A Searcher asks once per filter and again after TUNING_MAX_AGE."""
    asked: list[str] = []
    original = psycopg.Connection.execute

    def counting(self: psycopg.Connection[Any], query: Any, *args: Any, **kw: Any) -> Any:
        text = query.as_string(self) if isinstance(query, sql.Composable) else str(query)
        if text.startswith(("SELECT NOT EXISTS", "SELECT n <=")):  # exact_gate's two forms
            asked.append(text)
        return original(self, query, *args, **kw)

    with Searcher(indexed_url, embedder=HashingEmbedder()) as searcher:
        monkeypatch.setattr(psycopg.Connection, "execute", counting)
        in_docs = [searcher.search("refund", path_prefix="docs/", k=3) for _ in range(3)]
        assert len(asked) == 1 and in_docs[0] and in_docs[0] == in_docs[1] == in_docs[2]
        searcher.search("refund", repository="acme/shop", k=3)
        searcher.search("refund", k=3)  # no filter: the walk, nothing to ask
        assert len(asked) == 2, "another filter is asked once too"
        monkeypatch.setattr(Searcher, "TUNING_MAX_AGE", 0.0)
        assert searcher.search("refund", path_prefix="docs/", k=3) == in_docs[0]
        assert len(asked) == 3, "asked again once the age has passed"
        monkeypatch.setattr(search_module, "EXACT_SCAN_ROWS", 0)  # the folder now counts as past the limit
        walked = searcher.search("refund", path_prefix="docs/", k=3)  # now by the graph walk
        assert len(asked) == 4 and walked and all(h.path.startswith("docs/") for h in walked)


ROWS = 300


@pytest.fixture
def crowded_url(migrated_url: str) -> Iterator[str]:
    """ROWS chunks that all have "exchange" and "rates" (apart), then one with the phrase "exchange rates",
    stored last, in other repositories and folders too; term statistics written as the indexer writes them."""
    vector = "[" + ",".join(["0.051"] * 384) + "]"
    desks = [
        (f"acme/r{i % 2}", f"docs/n{i}.md", "Desk", f"The exchange desk {i} publishes daily rates for every currency.")
        for i in range(ROWS)
    ]
    phrase = ("acme/r1", "guide/prices.md", "Prices", "Prices convert at the exchange rates of the central bank.")
    copy_chunks(migrated_url, [(*row, vector) for row in [*desks, phrase]])
    with psycopg.connect(migrated_url) as conn, conn.cursor() as cur:
        for repository in ("acme/r0", "acme/r1"):
            refresh_term_stats(cur, repository)
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute("ANALYZE doc_chunks")
    yield migrated_url
    search_module._POOL.close_all()


def test_every_match_is_ranked_and_a_quoted_phrase_filters(crowded_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the query's words have at most MAX_WORD_MATCHES postings, every chunk with one of them is ranked (past
    it, each word's heaviest: see the tests below). "exchange" and "rates" are in every chunk: 602 postings."""
    monkeypatch.setattr(search_module, "MAX_WORD_MATCHES", 2 * (ROWS + 1))
    hashing = HashingEmbedder()
    for repository, rows in ((None, ROWS + 1), ("acme/r1", ROWS // 2 + 1)):
        with connect(crowded_url) as conn:
            assert len(text_ranking(conn, "exchange rates", repository, None, 10_000)) == rows
            assert len(text_ranking(conn, "exchange OR currency", repository, None, 10_000)) == rows
            phrase = text_ranking(conn, '"exchange rates"', repository, None, 10_000)
            assert [r.path for r in search_module.fetch_rows(conn, phrase).values()] == ["guide/prices.md"]
        # Every chunk has the same vector: the meaning ranking says nothing, the phrase's words ranking decides.
        hits = search(crowded_url, '"exchange rates"', repository=repository, k=5, embedder=hashing)
        assert hits[0].path == "guide/prices.md", [(h.path, h.score) for h in hits]


def test_a_phrase_of_common_words_is_found_by_the_full_text_index(migrated_url: str) -> None:
    """More than PHRASE_MATCHES chunks have both words of a phrase, apart, and each weighs more than the one long
    chunk that has the phrase: that chunk is among neither word's heaviest postings, but it is the only chunk that
    satisfies the quoted query, so the full-text index finds it. A query that more than PHRASE_MATCHES chunks
    satisfy still scores a bounded number of them: each word's heaviest that satisfy it."""
    vector = "[" + ",".join(["0.051"] * 384) + "]"
    common = search_module.PHRASE_MATCHES + 300
    rows = [("acme/a", f"docs/n{i}.md", "Desk", f"Exchange desk {i} publishes rates.", vector) for i in range(common)]
    long = "Filler about banking and ledgers. " * 40 + "It converts at the exchange rates of the central bank."
    copy_chunks(migrated_url, [*rows, ("acme/a", "guide/long.md", "Prices", long, vector)])
    with psycopg.connect(migrated_url) as conn, conn.cursor() as cur:
        refresh_term_stats(cur, "acme/a")
    with connect(migrated_url) as conn:
        phrase = text_ranking(conn, '"exchange rates"', None, None, 10)
        assert [r.path for r in search_module.fetch_rows(conn, phrase).values()] == ["guide/long.md"]
        both = text_ranking(conn, 'exchange "rates"', None, None, 10_000)  # every chunk has both words
        assert search_module.PHRASE_MATCHES <= len(both) <= 2 * search_module.PHRASE_MATCHES, len(both)
    hits = search(migrated_url, 'bank "exchange rates"', k=3, embedder=HashingEmbedder())
    assert hits[0].path == "guide/long.md", [(h.path, h.score) for h in hits]


def test_a_rare_word_in_the_chunk_stored_last_ranks_it_first(crowded_url: str) -> None:
    """The bug of issue 19: matches were cut to 100 rows in no order before ranking, so a chunk stored after
    them could never come from the words ranking. Now every match is ranked, and "bank" (in one chunk) outweighs
    "desk" (in all others) by its rarity."""
    with connect(crowded_url) as conn:
        ids = text_ranking(conn, "desk bank helicopter", None, None, 10_000)
        assert len(ids) == ROWS + 1
        assert search_module.fetch_rows(conn, ids[:1])[ids[0]].path == "guide/prices.md"
        assert text_ranking(conn, "helicopter", None, None, 10) == []
    hits = search(crowded_url, "which bank sets the rate?", k=3, embedder=HashingEmbedder())
    assert hits[0].path == "guide/prices.md"


def test_filters_hold_in_the_words_ranking(crowded_url: str) -> None:
    hashing = HashingEmbedder()
    hits = search(crowded_url, "exchange rates", repository="acme/r0", k=50, embedder=hashing, per_file=None)
    assert len(hits) == 50 and {h.repository for h in hits} == {"acme/r0"}
    hits = search(crowded_url, "exchange rates", path_prefix="guide/", k=50, embedder=hashing)
    assert [h.path for h in hits] == ["guide/prices.md"]
    with connect(crowded_url) as conn:
        assert len(text_ranking(conn, "exchange -desk", None, None, 10_000)) == 1  # an exclusion filters


def test_postings_hold_each_chunk_s_words_with_their_bm25_weight(crowded_url: str) -> None:
    """Migration 0010: one posting per (lexeme, chunk), as many as doc_terms counts, whose weight times the
    word's idf is the BM25 score the words ranking gives the chunk for that word."""
    with connect(crowded_url) as conn:
        for repository in ("acme/r0", "acme/r1"):
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM doc_postings WHERE repository = %s),"
                " (SELECT sum(chunks) FROM doc_terms WHERE repository = %s)",
                (repository, repository),
            ).fetchone()
            assert counts is not None and counts[0] == counts[1] > 0
        [(chunk, score)] = text_scores(conn, "bank", "acme/r1", None, 10)
        row = conn.execute("SELECT impact FROM doc_postings WHERE lexeme = 'bank' AND id = %s", (chunk,)).fetchone()
        assert row is not None
        chunks = ROWS // 2 + 1
        idf = float(np.log(1 + (chunks - 1 + 0.5) / (1 + 0.5)))
        assert abs(idf * row[0] - score) < 1e-5 * score


def test_words_in_many_chunks_make_only_their_heaviest_postings_candidates(
    crowded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading the posting list of a word nearly every chunk has costs milliseconds at 100,000 chunks, so past
    MAX_WORD_MATCHES postings each word makes candidates of its WORD_CANDIDATES heaviest (migration 0010): a
    rare word's chunk is still found and ranked first, and the common word adds to the candidates' scores."""
    monkeypatch.setattr(search_module, "MAX_WORD_MATCHES", ROWS // 2)
    monkeypatch.setattr(search_module, "WORD_CANDIDATES", 5)
    with connect(crowded_url) as conn:
        ids = text_ranking(conn, "desk bank helicopter", None, None, 10_000)
        assert search_module.fetch_rows(conn, ids[:1])[ids[0]].path == "guide/prices.md"
        assert len(ids) == 5 + 1
        assert len(text_ranking(conn, "desk helicopter", None, None, 10_000)) == 5  # the heaviest of ROWS
        # A phrase filters: its chunk is found wherever its words' postings put it.
        phrase = text_ranking(conn, '"exchange rates"', None, None, 10_000)
        assert [r.path for r in search_module.fetch_rows(conn, phrase).values()] == ["guide/prices.md"]


def test_the_meaning_ranking_orders_by_the_expression_the_hnsw_index_is_built_on(indexed_url: str) -> None:
    """The index holds half-precision vectors (migration 0004): a query ordering by anything else would rank
    every chunk exactly, correct but slow. On the small fixture PostgreSQL prefers sorting unless told not to."""
    vector = HashingEmbedder().encode(["refund"])[0]
    for repository in (None, "acme/shop"):
        with connect(indexed_url) as conn, conn.transaction():
            gate = filter_gate(conn, repository, None)
            statement, statement_params = _search_statement(vector, "refund", repository, None, 40, 10, gate=gate)
            conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off")
            plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN {}").format(statement), statement_params))
        assert "doc_chunks_embedding_idx" in plan, plan


def _index_nodes(plan: dict[str, Any], index: str) -> list[dict[str, Any]]:
    """The nodes of an EXPLAIN (FORMAT JSON) plan that read `index`."""
    found = [plan] if plan.get("Index Name") == index else []
    for child in plan.get("Plans", []):
        found += _index_nodes(child, index)
    return found


@pytest.mark.parametrize(
    ("repository", "prefix", "index", "rows", "codes"),
    [
        ("acme/r1", None, "doc_chunks_repository_vectors_idx", ROWS // 2 + 1, None),
        (None, "docs/", "doc_chunks_path_vectors_idx", ROWS, None),
        ("acme/r1", None, "doc_chunks_repository_bits_idx", ROWS // 2 + 1, 400),
        (None, "docs/", "doc_chunks_path_bits_idx", ROWS, 400),
    ],
)
def test_a_filter_is_ranked_exactly_from_its_vectors_index_without_reading_the_table(
    crowded_url: str,
    migrator_database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    repository: str | None,
    prefix: str | None,
    index: str,
    rows: int,
    codes: int | None,
) -> None:
    """Migration 0014: a repository's or a folder's ids and half-precision vectors sit side by side in a covering
    index, so the exact ranking is an index-only scan of the filter's key range, with no table page read per chunk
    (what made a spread-out repository or a folder across repositories slow). Only the few nearest are then read
    from the table, to re-rank them by full precision. Migration 0015: the same for the binary codes a large
    filter is ranked by first. On this small table PostgreSQL would rather read the whole table, hence the
    settings; what is checked is that the index alone can rank what search() ranks."""
    monkeypatch.setattr(search_module, "CODE_SCAN_ROWS", 1)
    with psycopg.connect(migrator_database_url, autocommit=True) as conn:  # the owner: the app role cannot vacuum
        conn.execute("VACUUM ANALYZE doc_chunks")  # sets the visibility map, as autovacuum does
    vector = HashingEmbedder().encode(["exchange"])[0]
    with connect(crowded_url) as conn, conn.transaction():
        gate = filter_gate(conn, repository, prefix, codes=codes is not None)
        statement, statement_params = _search_statement(
            vector, "exchange", repository, prefix, 40, 10, None, codes, gate
        )
        conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        row = conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) {}").format(statement), statement_params).fetchone()
    assert row is not None
    # The filter's key range (an Index Cond): with sequential and bitmap scans off, this small table may also be read
    # whole through a small index (the gate's count), which is no ranking.
    nodes = [n for n in _index_nodes(row[0][0]["Plan"], index) if n["Actual Loops"] and "Index Cond" in n]
    assert {(n["Node Type"], n["Actual Rows"], n["Heap Fetches"]) for n in nodes} == {("Index Only Scan", rows, 0)}
    assert search(crowded_url, "exchange", repository=repository, path_prefix=prefix, embedder=HashingEmbedder())


def test_a_repository_s_size_is_read_from_its_chunk_count_and_a_folder_s_is_counted(migrated_url: str) -> None:
    """A repository's exact-or-walk decision reads its chunk count (doc_corpus, written with its chunks): counting its
    index entries took ~0.7 ms for 5,000 chunks and ~2 ms near the limit, in every search. A folder has no count
    kept, so its chunks are counted. Here acme/big has 3 chunks but is recorded as past the limit: the decision
    follows the record (the graph is walked); its folder is counted (3 chunks, ranked exactly)."""
    vectors = HashingEmbedder().encode(["refund policy", "refund window", "shipping"])
    rows = [
        ("acme/big", f"docs/{n}.md", "H", "refund", "[" + ",".join(f"{x:.9g}" for x in v) + "]")
        for n, v in enumerate(vectors)
    ]
    copy_chunks(migrated_url, rows)
    with connect(migrated_url, autocommit=True) as conn:
        refresh_term_stats(conn.cursor(), "acme/big")
        assert conn.execute("SELECT chunks FROM doc_corpus WHERE repository = 'acme/big'").fetchone() == (3,)
        assert use_exact_scan(conn, "acme/big", None)
        conn.execute(
            "UPDATE doc_corpus SET chunks = %s WHERE repository = 'acme/big'", (search_module.EXACT_SCAN_ROWS + 1,)
        )
        assert not use_exact_scan(conn, "acme/big", None)
        assert use_exact_scan(conn, "acme/big", "docs/") and use_exact_scan(conn, None, "docs/")
    assert _plan_branches(migrated_url, "acme/big") == (3, 0, 0)
    assert _plan_branches(migrated_url, "acme/big", codes=400) == (3, 0, 0), (
        "past the limit by its record, with codes too"
    )


def test_a_folder_at_the_limit_is_ranked_exactly_and_one_past_it_walks_the_graph(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder's size is read from the path index up to one entry past EXACT_SCAN_ROWS: exactly at the limit it is
    ranked exactly, one chunk more walks the graph. Chunks of a sibling folder whose name starts the same way
    (`docs2/`) and of other repositories under the same folder count only when they match the filter."""
    vectors = HashingEmbedder().encode([f"refund {n}" for n in range(5)])
    places = [("acme/a", "docs/1.md"), ("acme/a", "docs/2.md"), ("acme/b", "docs/3.md"), ("acme/a", "docs2/4.md")]
    places.append(("acme/a", "guide/5.md"))
    rows = [
        (r, p, "H", "refund", "[" + ",".join(f"{x:.9g}" for x in v) + "]")
        for (r, p), v in zip(places, vectors, strict=True)
    ]
    copy_chunks(migrated_url, rows)
    with connect(migrated_url, autocommit=True) as conn:
        monkeypatch.setattr(search_module, "EXACT_SCAN_ROWS", 3)
        assert use_exact_scan(conn, None, "docs/")  # three chunks under docs/, in two repositories
        assert not use_exact_scan(conn, None, "docs")  # four with docs2/
        assert use_exact_scan(conn, "acme/a", "docs")  # acme/a has three there
        monkeypatch.setattr(search_module, "EXACT_SCAN_ROWS", 2)
        assert not use_exact_scan(conn, None, "docs/")
        assert use_exact_scan(conn, "acme/a", "docs/") and use_exact_scan(conn, None, "guide/")
        monkeypatch.setattr(search_module, "EXACT_SCAN_ROWS", 0)
        assert use_exact_scan(conn, None, "nothing/") and not use_exact_scan(conn, None, "guide/")


@pytest.mark.parametrize(
    ("prefix", "end"),
    [("docs/", "docs0"), ("a", "b"), ("guide/é", "guide/ê"), ("x\ud7ff", "x\ue000"), ("d\U0010ffff", "e"), ("", None)],
)
def test_a_path_prefix_ends_where_its_last_character_would_move_on(prefix: str, end: str | None) -> None:
    assert prefix_end(prefix) == end
    assert prefix_end("\U0010ffff\U0010ffff") is None


PATHS = [
    "docs",
    "docs/",
    "docs/a.md",
    "docs/é/x.md",
    "docs0",
    "docs.md",
    "doc",
    "DOCS/a.md",
    "guide/docs/a.md",
    "docs/\U0010ffff.md",
    "docs/\ud7ff.md",
    "docs/\ue000.md",
    "é/a.md",
    "éa/b.md",
    "f/a.md",
]


@pytest.mark.parametrize("prefix", ["docs/", "docs", "é", "docs/\ud7ff", "docs/\U0010ffff", "", "zz"])
def test_the_path_filter_keeps_exactly_the_paths_that_start_with_the_prefix(migrated_url: str, prefix: str) -> None:
    """What PostgreSQL's "C" order keeps between a prefix and its end, against Python's startswith."""
    where, params = filters(None, prefix)
    with psycopg.connect(migrated_url) as conn:
        kept = conn.execute(
            sql.SQL("SELECT path FROM unnest(%s::text[]) AS p(path) WHERE {}").format(where), [PATHS, *params]
        ).fetchall()
    assert sorted(r[0] for r in kept) == sorted(p for p in PATHS if p.startswith(prefix))


def test_a_folder_filter_finds_its_chunks_through_the_path_index(crowded_url: str) -> None:
    """Without a repository, a path prefix is an index range of a path index: counting the folder's chunks (is it
    small enough to rank exactly?) and ranking them read that folder's entries, not every chunk's path."""
    vector = HashingEmbedder().encode(["exchange"])[0]
    gate, gate_params = search_module.exact_gate(None, "guide/")
    with connect(crowded_url) as conn, conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        statement, statement_params = _search_statement(
            vector, "exchange", None, "guide/", 40, 10, gate=filter_gate(conn, None, "guide/")
        )
        nodes: list[dict[str, Any]] = []
        for query, params in ((gate, gate_params), (statement, statement_params)):  # the count, then the ranking
            row = conn.execute(sql.SQL("EXPLAIN (ANALYZE, FORMAT JSON) {}").format(query), params).fetchone()
            assert row is not None
            read = [n for i in PATH_INDEXES for n in _index_nodes(row[0][0]["Plan"], i) if n["Actual Loops"]]
            assert read, query
            nodes += read
    assert all("Index Cond" in n and n["Actual Rows"] == 1 for n in nodes), nodes
    hits = search(crowded_url, "exchange", path_prefix="guide/", k=5, embedder=HashingEmbedder())
    assert [h.path for h in hits] == ["guide/prices.md"]


PATH_INDEXES = ("doc_chunks_path_idx", "doc_chunks_path_vectors_idx", "doc_chunks_path_bits_idx")  # 0005, 0014, 0015


def _generic_plan(url: str, statement: sql.Composable, params: list[Any]) -> str:
    """The plan search() runs: its statement prepared with a generic plan (see Searcher), parameters unknown."""
    with connect(url) as conn, conn.transaction():
        conn.execute("SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off")
        query = PostgresQuery(Transformer(conn))
        query.convert(statement, params)
        conn.execute(b"PREPARE planned AS " + query.query)
        literals = sql.SQL(", ").join(sql.Literal(p) for p in params)
        plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN EXECUTE planned ({})").format(literals)))
        conn.execute("DEALLOCATE planned")
    return plan


def test_the_graph_walk_gets_a_folder_filter_no_index_range_serves(crowded_url: str) -> None:
    """The HNSW branch gets the path filter as starts_with(), which no index serves in a generic plan. Given the
    index range, a generic plan (which guesses a range keeps few rows) reads the whole folder and sorts it
    instead of walking the graph: at 100,000 chunks a folder of 11,111 took 21 ms that way (bench/knowledge.py).
    On this small table any plan sorts; what is checked is that the path index is not offered to that branch."""
    vector = HashingEmbedder().encode(["exchange"])[0].tolist()
    statement, params = _search_statement(vector, "exchange", None, "docs/", 40, 10, gate=Gate(exact=False))
    plan = _generic_plan(crowded_url, statement, params)
    hnsw_branch = plan.split("One-Time Filter: (NOT (InitPlan")[1].split("One-Time Filter: (InitPlan")[0]
    exact_branch = plan.split("One-Time Filter: (InitPlan")[1]
    assert "starts_with(path" in hnsw_branch and not any(i in hnsw_branch for i in PATH_INDEXES), hnsw_branch
    # The exact branch reads the folder's range of a path index (on this small table, any of them; at scale the
    # covering one, see test_a_filter_is_ranked_exactly_from_its_vectors_index_without_reading_the_table).
    assert any(i in exact_branch for i in PATH_INDEXES) and "starts_with" not in exact_branch, exact_branch


def test_a_query_of_common_words_only_scores_its_heaviest_and_the_meaning_candidates(
    crowded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "desk" is in every chunk but one: scoring all of its matches would read the whole table at 100,000
    chunks. In search() its heaviest postings and the meaning ranking's pool are scored."""
    monkeypatch.setattr(search_module, "MAX_WORD_MATCHES", ROWS // 2)
    monkeypatch.setattr(search_module, "WORD_CANDIDATES", 5)
    vector = HashingEmbedder().encode(["desk"])[0]
    pool = candidate_pool(10)
    meaning, meaning_params = search_module._vector_ctes(vector, None, None, pool)
    words, words_params = search_module._text_ctes("desk", None, None, pool, within_meaning=True)
    counted = sql.SQL("WITH {}, {} SELECT count(*) FROM word_matches").format(meaning, words)
    with connect(crowded_url) as conn:
        scored = conn.execute(counted, [*meaning_params, *words_params]).fetchone()
        assert scored is not None and 0 < scored[0] <= pool + 5
        assert len(text_ranking(conn, "desk", None, None, 10_000)) == 5  # alone, its heaviest postings
    hits = search(crowded_url, "desk", k=5, embedder=HashingEmbedder(), per_file=None)
    assert len(hits) == 5


def _half_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity as pgvector computes it for halfvec: components rounded to half precision."""
    a16, b16 = a.astype(np.float16).astype(np.float64), b.astype(np.float16).astype(np.float64)
    return float(a16 @ b16 / np.linalg.norm(a16) / np.linalg.norm(b16))


def _rounding_flips_a_pair(seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query, nearer, farther): `nearer` is the nearer by full precision, `farther` by half precision."""
    rng = np.random.default_rng(seed)
    query = rng.normal(size=384).astype(np.float32)
    query /= np.linalg.norm(query)
    for _ in range(100_000):
        x = query + 0.5 * rng.normal(size=384).astype(np.float32) / np.sqrt(384)
        y = x + 2e-3 * rng.normal(size=384).astype(np.float32) / np.sqrt(384)
        x, y = (v / np.linalg.norm(v) for v in (x, y))
        full = float(query @ x) - float(query @ y)
        half = _half_cosine(query, x) - _half_cosine(query, y)
        if abs(full) > 1e-5 and abs(half) > 1e-5 and (full > 0) != (half > 0):
            return (query, x, y) if full > 0 else (query, y, x)
    raise AssertionError("no pair that half-precision rounding reorders")


def test_an_exact_ranking_orders_by_full_precision_where_half_precision_would_not(migrated_url: str) -> None:
    """Migration 0014: a filter's chunks are ordered by their half-precision copies, then the nearest are re-ranked
    by full precision. Here two chunks' order flips with rounding (and 30 far ones fill the folder): the exact
    ranking, for impact and in search()'s exact branch, puts the nearer by full precision first, with its
    full-precision similarity."""
    query, nearer, farther = _rounding_flips_a_pair()
    far = [-query + 0.01 * np.eye(384, dtype=np.float32)[i] for i in range(30)]
    rows = [("acme/a", "docs/nearer.md", nearer), ("acme/a", "docs/farther.md", farther)]
    rows += [("acme/a", f"docs/far{i}.md", v / np.linalg.norm(v)) for i, v in enumerate(far)]
    copy_chunks(migrated_url, [(r, p, "H", "text", "[" + ",".join(f"{x:.9g}" for x in v) + "]") for r, p, v in rows])
    where, params = filters(None, "docs/")
    meaning, meaning_params = search_module._vector_ctes(query, None, "docs/", 1, None, Gate(exact=True))
    nearest = sql.SQL("WITH {} SELECT c.path, m.sim FROM by_meaning AS m JOIN doc_chunks AS c USING (id)")
    with connect(migrated_url) as conn:
        assert use_exact_scan(conn, None, "docs/")
        ranked = vector_ranking(conn, query, where, params, 1, exact=True)
        paths = search_module.fetch_rows(conn, [i for i, _ in ranked])
        in_search = conn.execute(nearest.format(meaning), meaning_params).fetchall()
    assert [paths[i].path for i, _ in ranked] == ["docs/nearer.md"]
    assert ranked[0][1] == pytest.approx(float(query @ nearer), abs=1e-6)
    assert [(p, round(s, 6)) for p, s in in_search] == [("docs/nearer.md", round(float(query @ nearer), 6))]
