"""The HNSW candidate list measured on the corpus (knowledge/tuning.py): the shortest list whose recall@10 reaches
the target, recomputed here independently (numpy exact ranking against the graph walk), stored once, measured
again only when the corpus moved, and used by every search."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

import codexk8s_pipelines.knowledge.search as search_module
import codexk8s_pipelines.knowledge.tuning as tuning_module
from codexk8s_pipelines.knowledge.db import HNSW_ORDER, as_array, connect
from codexk8s_pipelines.knowledge.embedding import Embedder, HashingEmbedder
from codexk8s_pipelines.knowledge.search import Searcher
from codexk8s_pipelines.knowledge.tuning import (
    CODE_LADDER,
    CODE_MARGIN,
    SAMPLE,
    TARGET_RECALL,
    UNTUNED_EF_SEARCH,
    current_tuning,
    needs_tuning,
    question_text,
    tune,
)
from codexk8s_pipelines.store.migrations import available_migrations

from .chunk_rows import copy_chunks

ROWS = 2000


def _clustered(n: int, seed: int, spread: float = 0.8) -> np.ndarray:
    """Points around 50 centres in all 384 dimensions: neighbours nearly equidistant, hard for a short list."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, 384))
    points = centres[rng.integers(0, 50, n)] + spread * rng.standard_normal((n, 384))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def _load(url: str, vectors: np.ndarray, start: int = 0) -> None:
    copy_chunks(
        url,
        (
            (f"acme/r{i % 3}", f"docs/n{i}.md", "N", f"chunk {i}", "[" + ",".join(f"{x:.7f}" for x in v) + "]")
            for i, v in enumerate(vectors, start)
        ),
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE doc_chunks")


@pytest.fixture
def hard_url(migrated_url: str) -> Iterator[str]:
    _load(migrated_url, _clustered(ROWS, 3))
    yield migrated_url
    search_module._POOL.close_all()


def _stored_vectors(url: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of every chunk, in id order, for numpy's independent rankings."""
    with connect(url) as conn:
        rows = conn.execute("SELECT id, embedding FROM doc_chunks ORDER BY id").fetchall()
    return np.array([int(r[0]) for r in rows]), np.stack([as_array(r[1]).astype(np.float64) for r in rows])


def _independent_recall(url: str, ef: int, questions: list[tuple[int, np.ndarray]]) -> float:
    """Recall@10 of the graph walk at `ef` for the questions (each without its own chunk), against numpy's exact
    ranking of all vectors."""
    ids, matrix = _stored_vectors(url)
    with connect(url, autocommit=True) as conn:
        conn.execute(f"SET hnsw.ef_search = {ef}")
        recalls = []
        for own, q in questions:
            dist = 1 - matrix @ q / np.linalg.norm(matrix, axis=1) / np.linalg.norm(q)
            tenth = np.sort(dist[ids != own])[9]
            walked = conn.execute(
                "SELECT id, embedding <=> %s FROM (SELECT id, embedding FROM doc_chunks ORDER BY "
                + HNSW_ORDER
                + " LIMIT 41) AS w ORDER BY 2, 1",
                (q, q),
            ).fetchall()
            found = [float(d) for i, d in walked if i != own][:10]
            recalls.append(sum(1 for d in found if d <= tenth + 1e-6) / 10)
    return float(np.mean(recalls))


def _questions(url: str, embedder: Embedder) -> list[tuple[int, np.ndarray]]:
    """The sample's questions, as tuning makes them, about a fixed spread of chunks (by a hash of the id)."""
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT id, heading_path, content FROM doc_chunks ORDER BY hashint8(id), id LIMIT %s", (SAMPLE,)
        ).fetchall()
    texts = [question_text(tuple(r[1] or ()), r[2]) for r in rows]
    assert len(set(texts)) == SAMPLE
    vectors = np.asarray(embedder.encode(texts), dtype=np.float32)
    return [(int(r[0]), v) for r, v in zip(rows, vectors, strict=True)]


def test_the_shortest_list_reaching_the_target_is_kept(
    hard_url: str, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    ladder = (1, 4, 16, 64, 1000)
    monkeypatch.setattr(tuning_module, "LADDER", ladder)
    tuning = tune(hard_url, embedder=embedder)
    assert tuning and tuning.fresh and tuning.chunks == ROWS and tuning.sample == SAMPLE
    questions = _questions(hard_url, embedder)
    recalls = {ef: _independent_recall(hard_url, ef, questions) for ef in ladder}
    first_enough = next(ef for ef in ladder if recalls[ef] >= TARGET_RECALL)
    assert recalls[1] < TARGET_RECALL, recalls  # a list of one misses: the ladder is really climbed
    assert tuning.ef_search == first_enough, recalls
    assert tuning.recall == pytest.approx(recalls[first_enough], abs=1e-6)
    with connect(hard_url) as conn:
        assert current_tuning(conn) == tuning.__class__(**{**tuning.__dict__, "fresh": False})


def _independent_code_recalls(url: str, questions: list[tuple[int, np.ndarray]]) -> dict[int, float]:
    """Recall@10 per count of CODE_LADDER of re-ranking the chunks nearest by binary code (numpy: a bit per
    dimension, set where the stored value is positive; Hamming distance, ties by id), against numpy's exact ranking,
    each question without its own chunk."""
    ids, matrix = _stored_vectors(url)
    codes = matrix > 0
    recalls: dict[int, list[float]] = {n: [] for n in CODE_LADDER}
    for own, q in questions:
        keep = ids != own
        dist = (1 - matrix @ q / np.linalg.norm(matrix, axis=1) / np.linalg.norm(q))[keep]
        hamming = (codes[keep] != (q > 0)).sum(axis=1)
        order = np.lexsort((ids[keep], hamming))
        tenth = np.sort(dist)[9]
        for n in CODE_LADDER:
            found = np.sort(dist[order[:n]])[:10]
            recalls[n].append(float((found <= tenth + 1e-6).sum()) / 10)
    return {n: float(np.mean(r)) for n, r in recalls.items()}


SUBJECTS = (
    "The deploy",
    "A rollback",
    "The cache",
    "Each worker",
    "The scheduler",
    "A migration",
    "The index",
    "A sensor",
)
ACTIONS = ("retries", "blocks", "restarts", "logs", "skips", "pauses", "verifies", "rebuilds", "drops", "copies")
OBJECTS = ("the queue", "every lock", "old tokens", "the backups", "stale pages", "its config", "the mirrors")


def _sentences(url: str, embedder: Embedder) -> None:
    """560 short sentences about operations, embedded by the model: real text vectors, whose codes find their
    neighbours."""
    texts = [
        f"{s} {a} {o} on node {i % 9}." for i, (s, a, o) in enumerate(itertools.product(SUBJECTS, ACTIONS, OBJECTS))
    ]
    vectors = embedder.encode(texts)
    copy_chunks(
        url,
        (
            (f"acme/r{i % 3}", f"docs/s{i}.md", "Ops", text, "[" + ",".join(f"{x:.7f}" for x in v) + "]")
            for i, (text, v) in enumerate(zip(texts, vectors, strict=True))
        ),
    )


def test_the_binary_codes_are_the_fewest_reaching_the_target_with_the_margin_or_none(
    migrated_url: str, embedder: Embedder
) -> None:
    """On the hard set no count of codes finds the neighbours, and filters stay exact; on real sentences the fewest
    codes that reach the target are kept, doubled. Both against an independent numpy computation."""
    outcomes = []
    for load in (lambda: _load(migrated_url, _clustered(ROWS, 3)), lambda: _sentences(migrated_url, embedder)):
        with psycopg.connect(migrated_url, autocommit=True) as conn:
            conn.execute("DELETE FROM doc_chunks")
        load()
        tuning = tune(migrated_url, force=True, embedder=embedder)
        assert tuning and tuning.fresh
        recalls = _independent_code_recalls(migrated_url, _questions(migrated_url, embedder))
        enough = [n for n in CODE_LADDER if recalls[n] >= TARGET_RECALL]
        assert tuning.code_candidates == (CODE_MARGIN * enough[0] if enough else None), recalls
        with connect(migrated_url) as conn:
            stored = current_tuning(conn)
        assert stored and stored.code_candidates == tuning.code_candidates
        outcomes.append((tuning.code_candidates, recalls))
    assert outcomes[0][0] is None and outcomes[1][0] is not None, outcomes


@pytest.mark.parametrize("version", [15, 16])
def test_a_migration_that_rebuilds_the_graph_drops_the_measurement_it_made_stale(
    hard_url: str, migrator_database_url: str, version: int
) -> None:
    """0015 adds the code column, which rewrites the table and so rebuilds the HNSW graph the list was measured on (and
    a stored measurement has no codes); 0016 builds the graph again with a longer construction list. After either, the
    next indexing run measures again, though the corpus has not moved, and searches meanwhile use the untuned list."""
    first = tune(hard_url)
    assert first and not needs_tuning(first, ROWS)
    migration = next(m for m in available_migrations() if m.version == version)
    with psycopg.connect(migrator_database_url, autocommit=True) as conn:
        conn.execute(migration.sql)
    with connect(hard_url) as conn:
        assert current_tuning(conn) is None
        assert tuning_module.tuned_ef_search(conn) == UNTUNED_EF_SEARCH
    again = tune(hard_url)
    assert again and again.fresh


def test_the_graph_is_built_with_the_longer_construction_list(migrated_url: str) -> None:
    """Migration 0016: with a construction list of 400 the tuned list at 100,000 real chunks is 100, not 140, and a
    rebuild no longer brings recall under the goal (the migration's measurements). A later migration or a manual
    REINDEX that dropped the option would silently bring the former graph back."""
    with connect(migrated_url) as conn:
        row = conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'doc_chunks_embedding_idx'").fetchone()
    assert row and sorted(row[0]) == ["ef_construction=400", "m=16"]


def test_measured_again_only_when_the_corpus_moved_by_a_tenth(hard_url: str) -> None:
    first = tune(hard_url)
    assert first and first.fresh
    again = tune(hard_url)
    assert again and not again.fresh and again.measured_at == first.measured_at
    _load(hard_url, _clustered(ROWS // 20, 4), start=ROWS)  # +5%
    assert not (tune(hard_url) or first).fresh
    _load(hard_url, _clustered(ROWS // 5, 5), start=2 * ROWS)  # +15% since the measurement
    moved = tune(hard_url)
    assert moved and moved.fresh and moved.chunks == ROWS + ROWS // 20 + ROWS // 5
    forced = tune(hard_url, force=True)
    assert forced and forced.fresh


def test_a_tuning_in_progress_elsewhere_is_not_repeated(hard_url: str) -> None:
    with psycopg.connect(hard_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(hashtextextended('doc_search_tuning', 0))")
        assert tune(hard_url) is None  # nothing stored yet, and the other measurement is not waited for
        # Freed here, not by closing: a closed session's locks go when its server process exits, a moment later.
        other.execute("SELECT pg_advisory_unlock(hashtextextended('doc_search_tuning', 0))")
    assert (tune(hard_url) or pytest.fail("not measured once the lock was free")).fresh


def test_searches_use_the_measured_list_and_follow_a_new_one(hard_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def session_ef(searcher: Searcher) -> int:
        assert searcher._conn is not None
        row = searcher._conn.execute("SHOW hnsw.ef_search").fetchone()
        return int(row[0]) if row else -1

    with Searcher(hard_url, embedder=HashingEmbedder()) as searcher:
        searcher.search("chunk", k=5)
        assert session_ef(searcher) == UNTUNED_EF_SEARCH  # never measured: the safe long list
        tuning = tune(hard_url)
        assert tuning and tuning.ef_search != UNTUNED_EF_SEARCH
        searcher.search("chunk", k=5)
        assert session_ef(searcher) == UNTUNED_EF_SEARCH, "read again only after TUNING_MAX_AGE"
        monkeypatch.setattr(Searcher, "TUNING_MAX_AGE", 0.0)
        searcher.search("chunk", k=5)
        assert session_ef(searcher) == tuning.ef_search
        searcher.search("chunk", k=200)  # a pool longer than the list: the list grows with it
        assert session_ef(searcher) == search_module.candidate_pool(200)


@pytest.mark.parametrize(
    ("stored", "chunks", "expected"),
    [(None, 0, False), (None, 1, False), (None, 2, True), (1000, 1100, False), (1000, 1101, True), (1000, 899, True)],
)
def test_when_the_corpus_counts_as_moved(stored: int | None, chunks: int, expected: bool) -> None:
    tuning = None if stored is None else tuning_module.SearchTuning(100, 0.99, stored, 100, 1.0)
    assert needs_tuning(tuning, chunks) is expected
