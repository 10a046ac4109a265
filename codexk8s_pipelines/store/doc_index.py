"""What the docs index holds for a repository, as the `docs_index` asset check asks it."""

from __future__ import annotations

from .database import PlatformStore


def indexed_commits(store: PlatformStore, repository: str) -> dict[str | None, int]:
    """Chunks per commit they were read from: one key (the head) after a whole run; more means a run stopped
    half-way, none means nothing is indexed."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT commit, count(*) AS chunks FROM doc_chunks WHERE repository = %s GROUP BY commit", (repository,)
        ).fetchall()
    return {row["commit"]: int(row["chunks"]) for row in rows}


def indexed_versions(store: PlatformStore, repository: str) -> dict[tuple[str | None, str, str], int]:
    """Chunks per (commit, embedding model, text search configuration) they were indexed with: one key after a
    whole run; another commit, model or language means a re-index is due (the hourly schedule asks this)."""
    with store.connect() as conn:
        rows = conn.execute(
            "SELECT commit, model, text_config::text AS language, count(*) AS chunks FROM doc_chunks"
            " WHERE repository = %s GROUP BY commit, model, text_config",
            (repository,),
        ).fetchall()
    return {(row["commit"], row["model"], row["language"]): int(row["chunks"]) for row in rows}
