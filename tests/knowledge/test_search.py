"""Hybrid search over the indexed fixture docs with the real model: natural-language questions find the right
section, exact identifiers find theirs, and the repository and path-prefix filters hold in both rankings."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

import codexk8s_pipelines.knowledge.search as search_module
from codexk8s_pipelines.knowledge.db import KnowledgeError, connect
from codexk8s_pipelines.knowledge.embedding import Embedder, HashingEmbedder
from codexk8s_pipelines.knowledge.search import (
    SearchHit,
    fetch_rows,
    search,
    text_ranking,
    use_exact_scan,
)
from codexk8s_pipelines.store import EmbeddedPostgres

from .docs_tree import DOCS

QUESTIONS = [
    ("How do I connect the app to the Postgres database?", "docs/configuration.md", "Database connection"),
    ("What happens when I send too many requests?", "docs/api.md", "Rate limits"),
    ("How can a customer get their money back?", "docs/payments.md", "Refunds"),
    ("How do I undo a bad deploy?", "docs/deployment.md", "Rolling back a release"),
    ("Where do I report a security hole?", "docs/security.md", "Reporting a vulnerability"),
    ("How long until cached product data expires?", "docs/architecture.rst", "Cache layer"),
    (
        "the worker pod keeps getting killed for using too much memory",
        "docs/troubleshooting.md",
        "Out of memory errors",
    ),
    ("how should I write commit messages", "CONTRIBUTING.md", "Commit messages"),
]


def rank_of(hits: list[SearchHit], path: str, heading: str) -> int | None:
    for n, hit in enumerate(hits, start=1):
        if hit.path == path and hit.heading_path[-1:] == (heading,):
            return n
    return None


@pytest.mark.parametrize(("question", "path", "heading"), QUESTIONS, ids=[q[2] for q in QUESTIONS])
def test_questions_find_the_section_that_answers_them(
    indexed_url: str, embedder: Embedder, question: str, path: str, heading: str
) -> None:
    hits = search(indexed_url, question, repository="acme/shop", k=5, embedder=embedder)
    assert rank_of(hits, path, heading) == 1, [(h.path, h.heading_path, h.score) for h in hits]


def test_hits_carry_place_text_and_descending_scores(indexed_url: str, embedder: Embedder) -> None:
    hits = search(indexed_url, "How can a customer get their money back?", k=4, embedder=embedder)
    assert len(hits) == 4
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    top = hits[0]
    assert (top.repository, top.path, top.heading_path) == ("acme/shop", "docs/payments.md", ("Payments", "Refunds"))
    lines = DOCS["docs/payments.md"].splitlines()
    assert top.text == "\n".join(lines[top.start_line - 1 : top.end_line])
    assert top.text.startswith("## Refunds") and "30 days" in top.text
    assert 0 < top.score <= 1.0  # normalised: the best of both rankings at best


def test_exact_identifiers_are_found_by_the_full_text_ranking(indexed_url: str, embedder: Embedder) -> None:
    assert search(indexed_url, "SHOP_LOG_LEVEL", k=1, embedder=embedder)[0].heading_path[-1] == "Logging"
    # With a model that knows nothing, the words alone still rank the section that contains them.
    hits = search(indexed_url, "Retry-After header", k=3, embedder=HashingEmbedder())
    assert hits and hits[0].heading_path[-1] == "Rate limits"


def test_full_text_ranking_speaks_websearch_syntax(indexed_url: str) -> None:
    def headings(query: str) -> list[str]:
        with connect(indexed_url) as conn:
            ids = text_ranking(conn, query, "acme/shop", None, 10)
            rows = fetch_rows(conn, ids)
        return [rows[i].heading_path[-1] for i in ids]

    assert set(headings('"exchange rates"')) == {"Currency conversion", "Slow checkout page"}
    assert headings('"exchange rates" -lookup') == ["Currency conversion"]
    assert {"Refunds", "Rolling back a release"} <= set(headings("refund OR rollback"))
    # A question whose words are never all in one section: every section with any of them, ranked by BM25.
    assert headings("customer refund within days helicopter")[0] == "Refunds"
    assert headings('nothing "matches" -this') == []
    # Dashes that exclude nothing neither exclude nor break the statement (33 NOTs in a row overflow PostgreSQL's
    # tsquery stack): a pasted Markdown underline, a spaced dash, a flag.
    assert headings("exchange rates\n" + "-" * 40) == headings("exchange rates")
    assert headings("refund - - " + "- " * 40 + "rollback") == headings("refund rollback")
    assert headings("exchange --- lookup") == headings("exchange lookup")
    assert headings("--lookup") == headings("lookup") != []


def test_repository_filter(indexed_url: str, embedder: Embedder) -> None:
    question = "Can I get a refund?"
    everywhere = search(indexed_url, question, k=10, embedder=embedder)
    assert {h.repository for h in everywhere} == {"acme/shop", "acme/other"}
    other = search(indexed_url, question, repository="acme/other", k=10, embedder=embedder)
    assert [h.repository for h in other] == ["acme/other", "acme/other"]
    assert other[0].path == "docs/refunds.md"
    shop = search(indexed_url, question, repository="acme/shop", k=10, embedder=embedder, per_file=None)
    assert len(shop) == 10 and {h.repository for h in shop} == {"acme/shop"}
    assert search(indexed_url, question, repository="nobody/nothing", embedder=embedder) == []


def test_path_prefix_filter_keeps_recall(indexed_url: str, embedder: Embedder) -> None:
    with psycopg.connect(indexed_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM doc_chunks WHERE repository = 'acme/shop' AND path LIKE 'docs/%'"
        ).fetchone()
    in_docs = int(row[0]) if row else 0
    hits = search(
        indexed_url, "money back", repository="acme/shop", path_prefix="docs/", k=50, embedder=embedder, per_file=None
    )
    assert len(hits) == in_docs and all(h.path.startswith("docs/") for h in hits)
    assert hits[0].heading_path[-1] == "Refunds"
    contributing = search(indexed_url, "refund", path_prefix="./CONTRIBUTING", k=5, embedder=embedder)
    assert contributing and {h.path for h in contributing} == {"CONTRIBUTING.md"}


def test_filters_hold_on_the_hnsw_path_too(
    indexed_url: str, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small filtered sets are ranked exactly; big ones walk HNSW with iterative scanning. Same answers."""
    with connect(indexed_url) as conn:
        assert use_exact_scan(conn, "acme/other", None)
        assert not use_exact_scan(conn, None, None)
    monkeypatch.setattr(search_module, "EXACT_SCAN_ROWS", 0)
    other = search(indexed_url, "Can I get a refund?", repository="acme/other", k=10, embedder=embedder)
    assert [(h.repository, h.path) for h in other] == [
        ("acme/other", "docs/refunds.md"),
        ("acme/other", "guide/intro.md"),
    ]
    hits = search(indexed_url, "money back", repository="acme/shop", path_prefix="docs/", k=50, embedder=embedder)
    assert hits[0].heading_path[-1] == "Refunds" and all(h.path.startswith("docs/") for h in hits)


def test_bad_arguments_are_clear_errors(indexed_url: str) -> None:
    hashing = HashingEmbedder()
    with pytest.raises(ValueError, match=r"^query:"):
        search(indexed_url, "   ", embedder=hashing)
    with pytest.raises(ValueError, match=r"^query: must not contain NUL"):
        search(indexed_url, "refund\x00policy", embedder=hashing)
    with pytest.raises(ValueError, match=r"^query: at most 2000 characters"):
        search(indexed_url, "refund " * 400, embedder=hashing)
    with pytest.raises(ValueError, match=r"^k:"):
        search(indexed_url, "refund", k=0, embedder=hashing)
    with pytest.raises(ValueError, match=r"^k:"):
        search(indexed_url, "refund", k="3", embedder=hashing)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^conn_url:"):
        search("", "refund", embedder=hashing)
    with pytest.raises(KnowledgeError, match="384"):
        search(indexed_url, "refund", embedder=HashingEmbedder(dim=16))


def test_a_database_without_the_index_says_how_to_create_it(no_vector_url: str, store_url: str) -> None:
    hashing = HashingEmbedder()
    with pytest.raises(KnowledgeError, match="codexk8s docs index"):
        search(no_vector_url, "refund", embedder=hashing)  # not migrated: no vector type, no table
    with pytest.raises(KnowledgeError, match="codexk8s docs index"):
        search(store_url, "refund", embedder=hashing)  # vector exists, doc_chunks does not


@pytest.fixture
def no_vector_url(pg_server: EmbeddedPostgres) -> str:
    """An empty database without pgvector, as the application role reaches it."""
    import uuid

    return pg_server.prepare_database(f"n_{uuid.uuid4().hex[:12]}", vector=False).app


@pytest.fixture
def store_url(pg_server: object, tmp_path: Path) -> str:
    """A second empty database that has pgvector but no doc_chunks table."""
    import uuid

    from tests.conftest import database_url_for

    name = f"v_{uuid.uuid4().hex[:12]}"
    base = pg_server.url  # type: ignore[attr-defined]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url_for(base, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
    return url
