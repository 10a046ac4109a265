"""The docs tools over the real knowledge core (index, hybrid search, change impact), with its hashing embedder so
no model is loaded. Skipped while the knowledge package is not importable."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import REPO, Platform, data_of

pytest.importorskip("codexk8s_pipelines.knowledge.search")
pytest.importorskip("codexk8s_pipelines.knowledge.impact")


@pytest.fixture
def indexed(platform: Platform, tmp_path: Path) -> Platform:
    from codexk8s_pipelines.knowledge.embedding import HashingEmbedder
    from codexk8s_pipelines.knowledge.index import index_repository

    docs = tmp_path / "checkout"
    (docs / "docs").mkdir(parents=True)
    (docs / "docs" / "checkout.md").write_text(
        "# Checkout\n\n## Empty cart\n\nAn empty cart shows a hint; see `shop/cart.py` for the rules.\n"
    )
    (docs / "README.md").write_text("# Shop\n\nRun `make run` to start the shop locally.\n")
    embedder = HashingEmbedder()
    index_repository(platform.store.url, REPO, docs, embedder=embedder)
    other = tmp_path / "other"
    other.mkdir()
    (other / "cart.md").write_text("# Cart\n\nThe other shop's empty cart hint, about `shop/cart.py` too.\n")
    index_repository(platform.store.url, "acme/other", other, embedder=embedder)
    platform.services.search = None  # the real functions, imported lazily by the tools
    platform.services.change_impact = None
    platform.services.embedder = embedder
    return platform


def test_docs_search_with_the_real_index(indexed: Platform) -> None:
    data = data_of(indexed.call("docs_search", {"token": indexed.token, "query": "empty cart hint", "k": 5}))
    assert data["hits"], data
    assert {h["repository"] for h in data["hits"]} == {REPO}  # acme/other matches too: never shown
    assert data["hits"][0]["path"] == "docs/checkout.md"
    assert "Empty cart" in data["hits"][0]["heading_path"]
    only = data_of(indexed.call("docs_search", {"token": indexed.token, "query": "shop", "path_prefix": "docs/"}))
    assert {h["path"] for h in only["hits"]} <= {"docs/checkout.md"}


def test_docs_change_impact_with_the_real_index(indexed: Platform) -> None:
    data = data_of(indexed.call("docs_change_impact", {"token": indexed.token, "files": ["shop/cart.py"], "k": 3}))
    assert data["hits"], data
    assert data["hits"][0]["path"] == "docs/checkout.md"
    assert data["hits"][0]["reasons"] and all(isinstance(r, str) for r in data["hits"][0]["reasons"])
    assert {h["repository"] for h in data["hits"]} == {REPO}


def test_a_token_minted_with_the_repository_in_another_case_finds_its_docs(indexed: Platform) -> None:
    """GitHub names are case-insensitive and the index keys them lower-case: a token for `Acme/Shop` (a repository
    configured or reported so) found no docs and no impact at all (review 41)."""
    token = indexed.token_for(repository="Acme/Shop")
    data = data_of(indexed.call("docs_search", {"token": token, "query": "empty cart hint", "k": 5}))
    assert data["repository"] == REPO and data["hits"][0]["path"] == "docs/checkout.md"
    impact = data_of(indexed.call("docs_change_impact", {"token": token, "files": ["shop/cart.py"], "k": 3}))
    assert impact["hits"] and {h["repository"] for h in impact["hits"]} == {REPO}
