"""Shared fixtures: the same embedded PostgreSQL + pgvector that `make run` uses, one fresh database per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from codexk8s_pipelines.config import loader
from codexk8s_pipelines.store import EmbeddedPostgres, PlatformStore

REPO_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LC_ALL", "C.UTF-8")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data")
    server.start()
    yield server
    server.stop()


def database_url_for(server_url: str, database: str) -> str:
    """The server URL (unix socket, database `postgres`) pointed at another database."""
    base, _, query = server_url.partition("?")
    return f"{base.rsplit('/', 1)[0]}/{database}?{query}"


@pytest.fixture
def database_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    assert pg_server.url is not None
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield database_url_for(pg_server.url, name)
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def store(database_url: str) -> PlatformStore:
    s = PlatformStore(database_url)
    s.migrate()
    return s


@pytest.fixture(autouse=True)
def _fresh_config_cache() -> Iterator[None]:
    """The configuration is loaded once per process; each test starts from its own environment."""
    loader.load_config_from_environment.cache_clear()
    yield
    loader.load_config_from_environment.cache_clear()
