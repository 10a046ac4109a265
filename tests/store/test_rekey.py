"""A local checkout's rows follow its readable name: an installation that stored them under `local:<path>` sees
them under the directory's name after `codexk8s db migrate`, once, however often it runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from psycopg import sql

from codexk8s_pipelines.cli import main
from codexk8s_pipelines.config import load_config_from_environment
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.evidence import PREPARED_EVENT, cadence_key, last_prepared
from codexk8s_pipelines.store.findings import (
    FindingInput,
    open_findings,
    periodic_key,
    platform_issue,
    remember_platform_issue,
    sync_findings,
)

T0 = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)


def _seed_docs(store: PlatformStore, repository: str) -> None:
    vector = "[" + ",".join(["0.1"] * 384) + "]"
    with store.connect() as conn:
        conn.execute(
            "INSERT INTO doc_chunks (repository, path, chunk_index, start_line, end_line, content, content_hash,"
            " model, embedding) VALUES (%s, 'README.md', 0, 1, 2, 'refunds go through the cart', 'h', 'm', %s)",
            (repository, vector),
        )
        conn.execute(
            "INSERT INTO doc_terms (repository, lexeme, chunks) VALUES (%s, 'refund', 1), (%s, 'cart', 1)",
            (repository, repository),
        )
        conn.execute(
            "INSERT INTO doc_corpus (repository, text_config, chunks, lexemes) VALUES (%s, 'english', 1, 2)",
            (repository,),
        )
        conn.execute(
            "INSERT INTO doc_postings (lexeme, repository, impact, id, path)"
            " SELECT 'refund', %s, 1.0, id, path FROM doc_chunks WHERE repository = %s",
            (repository, repository),
        )


def _rows(store: PlatformStore, table: str, repository: str) -> int:
    with store.connect() as conn:
        query = sql.SQL("SELECT count(*) AS n FROM {} WHERE repository = %s").format(sql.Identifier(table))
        row = conn.execute(query, (repository,)).fetchone()
    return int(row["n"]) if row else 0


def _events(store: PlatformStore, key: str) -> int:
    with store.connect() as conn:
        row = conn.execute("SELECT count(*) AS n FROM flow_events WHERE correlation_key = %s", (key,)).fetchone()
    return int(row["n"]) if row else 0


def test_rows_under_the_old_local_key_move_to_the_readable_name_once(
    tmp_path: Path, store: PlatformStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checkout = tmp_path / "work" / "main"
    checkout.mkdir(parents=True)
    config = tmp_path / "codexk8s.yaml"
    config.write_text(f"repositories:\n  - path: {checkout}\n  - github: acme/shop\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(config))
    monkeypatch.setenv("CODEXK8S_DATABASE_URL", store.url)
    old = f"local:{checkout}".lower()
    assert load_config_from_environment().renamed_repositories() == {old: "main"}

    sync_findings(store, old, "security", [FindingInput("ghsa-1", "lodash: prototype pollution", "HIGH", {})], T0)
    remember_platform_issue(store, old, "dashboard:security", 7, "codexk8s-bot")
    _seed_docs(store, old)
    store.append_event(cadence_key(old), PREPARED_EVENT, "system", "codexk8s-periodic", {"issue": 7}, at=T0)
    store.append_event(periodic_key(old, "security"), "findings.synced", "system", "codexk8s-periodic", at=T0)

    assert main(["db", "migrate"]) == 0
    assert "repository keys renamed:" in capsys.readouterr().out

    (finding,) = open_findings(store, "main", "security")
    assert finding["fingerprint"] == "ghsa-1" and finding["first_seen"] == T0
    issue = platform_issue(store, "main", "dashboard:security")
    assert issue is not None and issue["issue_number"] == 7
    assert [_rows(store, t, "main") for t in ("doc_chunks", "doc_terms", "doc_corpus", "doc_postings")] == [1, 2, 1, 1]
    moved = ("findings", "platform_issues", "doc_chunks", "doc_terms", "doc_corpus", "doc_postings")
    assert [_rows(store, t, old) for t in moved] == [0, 0, 0, 0, 0, 0]
    # The audit trail is append-only: its periodic rows are copied under the new key at their original time.
    assert last_prepared(store, "main") == T0
    assert _events(store, periodic_key("main", "security")) == 1 and _events(store, cadence_key(old)) == 1

    assert main(["db", "migrate"]) == 0  # idempotent: nothing left to move, no second copy
    assert "repository keys renamed" not in capsys.readouterr().out
    assert _events(store, cadence_key("main")) == 1 and len(open_findings(store, "main", "security")) == 1


def test_a_newer_row_under_the_readable_name_wins_and_keeps_the_first_sighting(
    tmp_path: Path, store: PlatformStore
) -> None:
    from codexk8s_pipelines.store.rekey import rekey_repositories

    later = datetime(2026, 11, 5, tzinfo=UTC)
    sync_findings(store, "local:./main", "security", [FindingInput("ghsa-1", "old title", "HIGH", {})], T0)
    sync_findings(store, "main", "security", [FindingInput("ghsa-1", "new title", "HIGH", {})], later)
    _seed_docs(store, "local:./main")
    _seed_docs(store, "main")

    moved = rekey_repositories(store, {"local:./main": "main"})

    (finding,) = open_findings(store, "main", "security")
    assert finding["title"] == "new title" and finding["first_seen"] == T0
    assert [_rows(store, t, "main") for t in ("doc_chunks", "doc_terms", "doc_corpus")] == [1, 2, 1]
    assert _rows(store, "doc_chunks", "local:./main") == 0 and "doc_chunks" not in moved
