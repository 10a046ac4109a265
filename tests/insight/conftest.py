"""One synthetic history of 1,000 issues for the whole package (written once: the metrics only read it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from codexk8s_pipelines.store import EmbeddedPostgres, PlatformStore
from tests.conftest import database_url_for
from tests.insight.history import Truth, generate


@pytest.fixture(scope="package")
def history(pg_server: EmbeddedPostgres) -> Iterator[tuple[PlatformStore, Truth, str]]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    assert pg_server.url is not None
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url_for(pg_server.url, name)
    store = PlatformStore(url)
    store.migrate()
    truth = generate(store, issues=1000)
    yield store, truth, url
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
