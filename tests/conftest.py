"""Shared fixtures: the same embedded PostgreSQL + pgvector that `make run` uses, one fresh database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from codexk8s_pipelines.config import loader
from codexk8s_pipelines.store import DatabaseUrls, EmbeddedPostgres, PlatformStore, sigterm_as_interrupt
from codexk8s_pipelines.store.roles import APP_ROLE

REPO_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LC_ALL", "C.UTF-8")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """The session's server. A run stopped by SIGTERM (`timeout`, a killed job) is interrupted as by Ctrl-C, so this
    still stops it: its directory is a temporary one that no later run starts again."""
    with sigterm_as_interrupt():
        server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
        server.start()
        try:
            yield server
        finally:
            server.stop()


def database_url_for(server_url: str, database: str) -> str:
    """The server URL (unix socket, database `postgres`) pointed at another database."""
    base, _, query = server_url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{database}?{query}"


@pytest.fixture(scope="session")
def migrated_template(pg_server: EmbeddedPostgres) -> str:
    """A database migrated once per session by the migrator role, copied for each test (faster than migrating)."""
    urls = pg_server.prepare_database(f"template_{uuid.uuid4().hex[:8]}")
    PlatformStore(urls.migrator).migrate(grant_to=APP_ROLE)
    return urls.name


@pytest.fixture
def platform_database(pg_server: EmbeddedPostgres, migrated_template: str) -> Iterator[DatabaseUrls]:
    """A fresh migrated database per test, as `make run` prepares it: owned by the migrator, used by the app role."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    assert pg_server.url is not None
    yield pg_server.prepare_database(name, template=migrated_template)
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def bare_database(pg_server: EmbeddedPostgres) -> Iterator[DatabaseUrls]:
    """A fresh database with pgvector but no schema yet (for the migrations themselves)."""
    name = f"b_{uuid.uuid4().hex[:12]}"
    assert pg_server.url is not None
    yield pg_server.prepare_database(name)
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(platform_database: DatabaseUrls) -> str:
    """The application role's URL: what every platform process connects with (no superuser, owns nothing)."""
    return platform_database.app


@pytest.fixture
def migrator_database_url(platform_database: DatabaseUrls) -> str:
    """The schema owner's URL of the same database (DDL in tests, Dagster's own storage tables)."""
    return platform_database.migrator


@pytest.fixture
def store(database_url: str) -> PlatformStore:
    s = PlatformStore(database_url)
    s.migrate()
    return s


@pytest.fixture(autouse=True)
def _fresh_config_cache() -> Iterator[None]:
    """The configuration is kept while its file is unchanged; each test starts from its own environment (another
    test's file at the same temporary path is not taken for this one's)."""
    loader.load_config_from_environment.cache_clear()
    yield
    loader.load_config_from_environment.cache_clear()
