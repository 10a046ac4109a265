"""Indexing into the embedded PostgreSQL with the real model: what is stored, and that re-indexing embeds only
what changed (unchanged, edited, moved, deleted and shortened documents)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from codexk8s_pipelines.knowledge.chunking import chunk_document
from codexk8s_pipelines.knowledge.db import KnowledgeError
from codexk8s_pipelines.knowledge.embedding import Embedder, HashingEmbedder
from codexk8s_pipelines.knowledge.index import IndexStats, index_repository
from codexk8s_pipelines.knowledge.search import search, text_scores
from codexk8s_pipelines.store import DatabaseUrls, PlatformStore
from codexk8s_pipelines.store.roles import APP_ROLE

from .docs_tree import DOCS

REPO = "acme/shop"


def rows(url: str, repository: str = REPO) -> dict[tuple[str, int], dict[str, Any]]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            "SELECT path, chunk_index, heading_path, start_line, end_line, content, content_hash, commit, model,"
            " updated_at, vector_dims(embedding) AS dims, tsv::text AS tsv FROM doc_chunks WHERE repository = %s",
            (repository,),
        )
        names = [d.name for d in cur.description or ()]
        return {(r[0], r[1]): dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def expected_chunks(root: Path) -> dict[str, list[Any]]:
    return {rel: chunk_document((root / rel).read_text(encoding="utf-8"), rel) for rel in DOCS}


def test_index_stores_every_doc_chunk_with_its_place_hash_commit_and_vector(
    migrated_url: str, shop: Path, embedder: Embedder
) -> None:
    progress: list[tuple[int, int]] = []
    stats = index_repository(
        migrated_url, REPO, shop, commit="abc123", embedder=embedder, progress=lambda d, t: progress.append((d, t))
    )

    expected = expected_chunks(shop)
    total = sum(len(v) for v in expected.values())
    assert isinstance(stats, IndexStats)
    assert (stats.repository, stats.files, stats.chunks, stats.deleted) == (REPO, len(DOCS), total, 0)
    assert stats.embedded == len({c.content_hash for v in expected.values() for c in v})
    assert stats.reused == total - stats.embedded == 0
    assert stats.index_bytes > 0 and stats.seconds > 0
    assert progress[0] == (0, stats.embedded) and progress[-1] == (stats.embedded, stats.embedded)

    stored = rows(migrated_url)
    assert len(stored) == total
    assert {p for p, _ in stored} == set(DOCS), "node_modules, .venv and non-doc files are not indexed"
    for path, chunks in expected.items():
        lines = (shop / path).read_text(encoding="utf-8").splitlines()
        for c in chunks:
            row = stored[(path, c.chunk_index)]
            assert tuple(row["heading_path"]) == c.heading_path
            assert (row["start_line"], row["end_line"]) == (c.start_line, c.end_line)
            assert row["content"] == "\n".join(lines[c.start_line - 1 : c.end_line]).strip("\n")
            assert row["content_hash"] == c.content_hash
            assert (row["commit"], row["model"], row["dims"]) == ("abc123", embedder.model_name, 384)
    refunds = next(r for r in stored.values() if r["heading_path"] == ["Payments", "Refunds"])
    assert "'refund':" in refunds["tsv"] and "money" in refunds["tsv"]


def test_reindexing_an_unchanged_checkout_embeds_and_rewrites_nothing(
    migrated_url: str, shop: Path, embedder: Embedder
) -> None:
    first = index_repository(migrated_url, REPO, shop, commit="abc123", embedder=embedder)
    before = rows(migrated_url)
    again = index_repository(migrated_url, REPO, shop, commit="abc123", embedder=embedder)
    assert (again.embedded, again.reused, again.deleted, again.chunks) == (0, first.chunks, 0, first.chunks)
    assert rows(migrated_url) == before  # same rows, same updated_at: nothing was rewritten


def test_editing_one_file_reembeds_only_its_changed_chunks(migrated_url: str, shop: Path, embedder: Embedder) -> None:
    index_repository(migrated_url, REPO, shop, embedder=embedder)
    before = rows(migrated_url)
    api = shop / "docs/api.md"
    old_hashes = {c.content_hash for c in chunk_document(api.read_text(), "docs/api.md")}
    # Blank lines at the top move every section; one section's text changes.
    edited = ("\n\n" + api.read_text()).replace("600 requests per minute", "1000 requests")
    api.write_text(edited)
    new_chunks = chunk_document(edited, "docs/api.md")
    changed = {c.content_hash for c in new_chunks} - old_hashes
    assert len(changed) == 1

    stats = index_repository(migrated_url, REPO, shop, embedder=embedder)
    assert stats.embedded == 1
    assert stats.deleted == 0 and stats.reused == stats.chunks - 1
    after = rows(migrated_url)
    for key, row in after.items():
        if key[0] != "docs/api.md":
            assert row == before[key], f"{key} was rewritten"
    moved = [c for c in new_chunks if c.content_hash not in changed]
    for c in moved:
        row = after[("docs/api.md", c.chunk_index)]
        assert (row["start_line"], row["end_line"]) == (c.start_line, c.end_line), "positions follow the file"
    hits = search(migrated_url, "How many requests per minute may a client send?", k=1, embedder=embedder)
    assert hits[0].path == "docs/api.md" and "1000 requests" in hits[0].text


def test_a_section_moved_to_another_file_reuses_its_vector(migrated_url: str, shop: Path, embedder: Embedder) -> None:
    index_repository(migrated_url, REPO, shop, embedder=embedder)
    (shop / "docs/copy-of-api.md").write_text((shop / "docs/api.md").read_text())
    stats = index_repository(migrated_url, REPO, shop, embedder=embedder)
    assert stats.embedded == 0 and stats.files == len(DOCS) + 1
    stored = rows(migrated_url)
    with psycopg.connect(migrated_url) as conn:
        same = conn.execute(
            "SELECT count(*) FROM doc_chunks a JOIN doc_chunks b USING (content_hash)"
            " WHERE a.path = 'docs/api.md' AND b.path = 'docs/copy-of-api.md' AND a.embedding = b.embedding"
        ).fetchone()
    assert same is not None and same[0] == sum(1 for p, _ in stored if p == "docs/api.md")


def test_deleting_and_shortening_files_removes_their_chunks(migrated_url: str, shop: Path, embedder: Embedder) -> None:
    index_repository(migrated_url, REPO, shop, embedder=embedder)
    before = rows(migrated_url)
    security_chunks = sum(1 for p, _ in before if p == "docs/security.md")
    (shop / "docs/security.md").unlink()
    payments = shop / "docs/payments.md"
    payments.write_text(payments.read_text().split("## Refunds")[0])
    payments_before = sum(1 for p, _ in before if p == "docs/payments.md")

    stats = index_repository(migrated_url, REPO, shop, embedder=embedder)
    after = rows(migrated_url)
    assert not [k for k in after if k[0] == "docs/security.md"]
    assert sum(1 for p, _ in after if p == "docs/payments.md") == 1
    assert stats.deleted == security_chunks + payments_before - 1
    assert stats.embedded == 0 and stats.files == len(DOCS) - 1
    hits = search(migrated_url, "report a vulnerability", repository=REPO, k=10, embedder=embedder)
    assert all(h.path != "docs/security.md" for h in hits)
    with psycopg.connect(migrated_url) as conn:  # the postings were rewritten with the chunks (migration 0010)
        postings = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (SELECT FROM doc_chunks AS d WHERE d.id = p.id"
            " AND d.path = p.path AND d.repository = p.repository)) FROM doc_postings AS p WHERE repository = %s",
            (REPO,),
        ).fetchone()
        terms = conn.execute("SELECT sum(chunks) FROM doc_terms WHERE repository = %s", (REPO,)).fetchone()
    assert postings is not None and terms is not None and postings == (terms[0], 0)


def test_a_model_change_reembeds_everything_and_other_repositories_are_untouched(
    migrated_url: str, shop: Path, embedder: Embedder
) -> None:
    index_repository(migrated_url, REPO, shop, embedder=embedder)
    index_repository(migrated_url, "acme/fork", shop, embedder=embedder)
    fork_before = rows(migrated_url, "acme/fork")
    hashing = HashingEmbedder()
    stats = index_repository(migrated_url, REPO, shop, embedder=hashing)
    assert stats.embedded == stats.chunks and stats.reused == 0
    assert {r["model"] for r in rows(migrated_url).values()} == {"hashing-384"}
    assert rows(migrated_url, "acme/fork") == fork_before


def test_the_commit_defaults_to_the_checkouts_git_head(
    migrated_url: str, shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def commit(root: Path) -> str:
        git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", f"docs of {root.name}"], check=True)
        return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()

    head = commit(shop)
    other = tmp_path / "other"
    other.mkdir()
    assert commit(other) != head
    # As in a shell a git hook started: the checkout indexed is still the one read.
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    index_repository(migrated_url, REPO, shop, embedder=HashingEmbedder())
    assert {r["commit"] for r in rows(migrated_url).values()} == {head}


def test_custom_globs(migrated_url: str, shop: Path) -> None:
    stats = index_repository(migrated_url, REPO, shop, globs=["docs/*.rst", "*.txt"], embedder=HashingEmbedder())
    assert stats.files == 2
    assert {p for p, _ in rows(migrated_url)} == {"docs/architecture.rst", "notes.txt"}


def test_index_migrates_an_empty_database_itself(bare_database: DatabaseUrls, shop: Path) -> None:
    """With the migrator's URL (`codexk8s docs index` on a new local database); the app role may not migrate."""
    stats = index_repository(bare_database.migrator, REPO, shop, embedder=HashingEmbedder())
    assert stats.chunks == len(rows(bare_database.migrator))


def test_bad_arguments_are_clear_errors(migrated_url: str, shop: Path, tmp_path: Path) -> None:
    hashing = HashingEmbedder()
    with pytest.raises(ValueError, match=r"^repository:"):
        index_repository(migrated_url, " ", shop, embedder=hashing)
    with pytest.raises(ValueError, match=r"^root:.*not a directory"):
        index_repository(migrated_url, REPO, tmp_path / "missing", embedder=hashing)
    with pytest.raises(ValueError, match=r"^globs:"):
        index_repository(migrated_url, REPO, shop, globs="**/*.md", embedder=hashing)
    with pytest.raises(ValueError, match=r"^conn_url:"):
        index_repository("", REPO, shop, embedder=hashing)
    with pytest.raises(KnowledgeError, match="384"):
        index_repository(migrated_url, REPO, shop, embedder=HashingEmbedder(dim=8))


def test_hashing_embedder_is_deterministic_and_normalised() -> None:
    a, b = HashingEmbedder().encode(["refund the order", "refund the order"]), HashingEmbedder().encode(["x y"])
    assert a.dtype == np.float32 and a.shape == (2, 384)
    assert np.allclose(a[0], a[1]) and np.isclose(np.linalg.norm(a[0]), 1.0) and np.isclose(np.linalg.norm(b), 1.0)


def chunk_weights(url: str) -> dict[int, dict[str, float]]:
    """Each chunk's sparse vector of BM25 weights (migration 0017), with its dimensions read back as lexemes."""
    with psycopg.connect(url) as conn:
        names = dict(conn.execute("SELECT dim, lexeme FROM doc_lexemes").fetchall())
        stored = conn.execute("SELECT id, weights::text FROM doc_chunk_weights").fetchall()
    out: dict[int, dict[str, float]] = {}
    for chunk, text in stored:
        body, dims = text.split("/")
        assert dims == "1000000000"
        pairs = [item.split(":") for item in body.strip("{}").split(",")]
        out[chunk] = {names[int(dim)]: float(np.float32(value)) for dim, value in pairs}
    return out


def postings(url: str) -> dict[int, dict[str, float]]:
    with psycopg.connect(url) as conn:
        found: dict[int, dict[str, float]] = {}
        for chunk, lexeme, impact in conn.execute("SELECT id, lexeme, impact FROM doc_postings").fetchall():
            found.setdefault(chunk, {})[lexeme] = float(np.float32(impact))
    return found


def test_each_chunk_s_weights_are_its_postings_over_lexemes_numbered_once(
    migrated_url: str, shop: Path, embedder: Embedder
) -> None:
    """Search scores a candidate by the inner product of its sparse vector with the query's idf (migration 0017): the
    vector must hold exactly the chunk's postings, follow them when files change, and keep each lexeme's number, as
    a number spent by every indexing run would run out (pgvector's dimensions end at 1,000,000,000)."""
    index_repository(migrated_url, REPO, shop, embedder=embedder)
    index_repository(migrated_url, "acme/fork", shop, embedder=embedder)
    weights = chunk_weights(migrated_url)
    assert weights == postings(migrated_url) and len(weights) == len(rows(migrated_url)) * 2
    with psycopg.connect(migrated_url) as conn:
        numbered = conn.execute("SELECT max(dim), count(*), count(DISTINCT lexeme) FROM doc_lexemes").fetchone()
        assert numbered is not None and numbered[0] == numbered[1] == numbered[2]
        numbers = dict(conn.execute("SELECT lexeme, dim FROM doc_lexemes").fetchall())

    (shop / "docs/security.md").unlink()
    (shop / "docs/new.md").write_text("# Helicopters\n\nThe platform never lands helicopters on the roof.\n")
    index_repository(migrated_url, REPO, shop, embedder=embedder)
    index_repository(migrated_url, "acme/fork", shop, embedder=embedder)
    after = chunk_weights(migrated_url)
    assert after == postings(migrated_url) and len(after) == len(rows(migrated_url)) * 2
    with psycopg.connect(migrated_url) as conn:
        gone = conn.execute(
            "SELECT count(*) FROM doc_chunk_weights AS w WHERE NOT EXISTS (SELECT FROM doc_chunks AS d"
            " WHERE d.id = w.id)"
        ).fetchone()
        renumbered = dict(conn.execute("SELECT lexeme, dim FROM doc_lexemes").fetchall())
    assert gone == (0,)
    assert {k: v for k, v in renumbered.items() if k in numbers} == numbers  # a lexeme keeps its number
    added = sorted(v for k, v in renumbered.items() if k not in numbers)
    assert "helicopt" in renumbered and added == list(range(len(numbers) + 1, len(numbers) + 1 + len(added)))


def test_migrating_an_indexed_database_writes_the_weights_its_postings_hold(
    platform_database: DatabaseUrls, shop: Path, embedder: Embedder
) -> None:
    """An installation indexed before migration 0017 has postings but no sparse vectors: the migration writes them
    from the postings, so its searches score as a new index does, without indexing again."""
    url = platform_database.app
    index_repository(url, REPO, shop, embedder=embedder)
    index_repository(url, "acme/fork", shop, embedder=embedder)
    questions = [("refund money back", None), ("deploy release rollback", REPO), ("report a vulnerability", None)]
    with psycopg.connect(url) as conn:
        before = [dict(text_scores(conn, q, repo, None, 1000)) for q, repo in questions]
    assert all(before)
    with psycopg.connect(platform_database.migrator, autocommit=True) as conn:  # the schema as 0016 left it
        conn.execute("DROP TABLE doc_chunk_weights, doc_lexemes")
        conn.execute("CREATE INDEX doc_postings_chunk_idx ON doc_postings (id, lexeme) INCLUDE (impact)")
        conn.execute("DELETE FROM schema_migrations WHERE version = 17")

    assert PlatformStore(platform_database.migrator).migrate(grant_to=APP_ROLE) == [17]
    assert chunk_weights(url) == postings(url) and len(chunk_weights(url)) == 2 * len(rows(url))
    with psycopg.connect(url) as conn:
        after = [dict(text_scores(conn, q, repo, None, 1000)) for q, repo in questions]
        assert conn.execute("SELECT to_regclass('doc_postings_chunk_idx')").fetchone() == (None,)
    for old, new in zip(before, after, strict=True):
        assert new.keys() == old.keys()
        assert all(new[chunk] == pytest.approx(score, rel=1e-6) for chunk, score in old.items())
    index_repository(url, REPO, shop, embedder=embedder)  # and the indexer goes on from the migration's numbers
    assert chunk_weights(url) == postings(url)
