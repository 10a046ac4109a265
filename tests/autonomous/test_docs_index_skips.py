"""docs_index says which docs it left out or read garbled, in the asset's metadata and the run's log (the CLI did,
a run said nothing), and a file name that is not UTF-8 no longer fails every hourly run of its repository. The
hashing embedder stands in for the model: what is tested is what gets read and reported, not the vectors."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

import codexk8s_pipelines.autonomous.docs_index.asset as asset_module
import codexk8s_pipelines.knowledge.files as files_module
import codexk8s_pipelines.knowledge.index as index_module
from codexk8s_pipelines.autonomous.docs_index import docs_index
from codexk8s_pipelines.github.resource import GitHubResource
from codexk8s_pipelines.knowledge.embedding import HashingEmbedder
from codexk8s_pipelines.resources import PlatformConfigResource, PlatformDatabase
from codexk8s_pipelines.store import PlatformStore
from tests.helpers import git

KEY = "local"  # the partition of a `path:` repository: its directory's name


def commit(repo: Path, files: dict[bytes, bytes], message: str) -> None:
    """Commit files named by bytes: git takes any bytes in a name, and so may a watched repository."""
    for rel, data in files.items():
        path = os.fsencode(repo) + b"/" + rel
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(data)
    git("add", "-A", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", message, cwd=repo)


@pytest.fixture
def env(tmp_path: Path, store: PlatformStore, monkeypatch: pytest.MonkeyPatch) -> dict:
    local = tmp_path / KEY
    local.mkdir()
    git("init", "-q", "-b", "main", str(local))
    commit(local, {b"README.md": b"# Shop\n\nThe shop sells things.\n"}, "docs")
    config = tmp_path / "codexk8s.yaml"
    config.write_text(f"repositories:\n  - path: {local}\n")
    monkeypatch.setenv("CODEXK8S_CONFIG", str(config))
    monkeypatch.setenv("CODEXK8S_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CODEXK8S_GITHUB_TOKEN", raising=False)
    monkeypatch.setattr(index_module, "default_embedder", HashingEmbedder)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("repositories", [KEY])
    resources = {
        "platform_db": PlatformDatabase(url=store.url),
        "platform_config": PlatformConfigResource(),
        "github": GitHubResource(),
    }
    return {"local": local, "instance": instance, "resources": resources}


def materialize(env: dict) -> tuple[dict, list[str]]:
    """The materialisation's metadata, and the run's warnings."""
    instance: dg.DagsterInstance = env["instance"]
    result = dg.materialize([docs_index], partition_key=KEY, instance=instance, resources=env["resources"])
    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = {k: v.value for k, v in event.materialization.metadata.items()}
    warnings = [r.user_message for r in instance.all_logs(result.run_id) if r.level == 30]  # logging.WARNING
    return metadata, warnings


def indexed(store: PlatformStore) -> dict[str, str]:
    with store.connect() as conn:
        rows = conn.execute("SELECT path, content FROM doc_chunks WHERE repository = %s", (KEY,)).fetchall()
    return {r["path"]: r["content"] for r in rows}


def test_a_file_name_that_is_not_utf8_is_reported_and_the_rest_is_indexed(env: dict, store: PlatformStore) -> None:
    """The insert of docs/r\\xe9sum\\xe9.md raised UnicodeEncodeError, the write rolled back, the run failed: the
    edit of README.md beside it was never indexed, and the next hourly run failed the same way."""
    first, _ = materialize(env)
    assert first["files"] == 1
    commit(
        env["local"],
        {b"README.md": b"# Shop\n\nNEW TEXT about refunds.\n", b"docs/r\xe9sum\xe9.md": b"# Resume\n\nnotes\n"},
        "latin-1 name",
    )
    second, warnings = materialize(env)
    assert second["files"] == 1 and second["skipped_name_not_utf8"] == 1
    assert second["files_noted"] == ["docs/r\\xe9sum\\xe9.md: name is not UTF-8: not indexed"]
    assert f"{KEY}: docs/r\\xe9sum\\xe9.md: name is not UTF-8: not indexed" in warnings
    assert "NEW TEXT about refunds" in indexed(store)["README.md"]


def test_docs_skipped_or_garbled_are_counted_listed_and_logged(
    env: dict, store: PlatformStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files_module, "MAX_FILE_BYTES", 1000)
    commit(
        env["local"],
        {
            b"docs/big.md": b"# Big\n\n" + b"word " * 400,
            b"docs/odd.md": b"# Odd\n\ntext\x00more\n",
            b"docs/deploy.md": "# Развёртывание\n\nЗапустите make release.\n".encode("cp1251"),
            b"docs/bom.md": "\ufeff# Guide\n\nRead me.\n".encode(),
        },
        "odd docs",
    )
    (env["local"] / "docs" / "gone.md").symlink_to(env["local"] / "docs" / "nowhere.md")
    metadata, warnings = materialize(env)
    assert metadata["files"] == 3  # README.md, bom.md, deploy.md (garbled, but indexed)
    counts = ("skipped_too_large", "skipped_binary", "skipped_links", "skipped_name_not_utf8", "skipped_unreadable")
    assert [metadata[k] for k in counts] == [1, 1, 1, 0, 0] and metadata["not_utf8_indexed"] == 1
    noted = [
        "docs/big.md: too large (over 1,000 bytes): not indexed",
        "docs/deploy.md: not UTF-8 (first at line 1): indexed with U+FFFD for the bad bytes",
        "docs/gone.md: a link out of the checkout, dangling or looping: not indexed",
        "docs/odd.md: binary (NUL bytes): not indexed",
    ]
    assert metadata["files_noted"] == noted
    assert all(f"{KEY}: {line}" in warnings for line in noted)
    assert indexed(store)["docs/bom.md"].startswith("# Guide")  # the byte-order mark hid the heading


def test_the_list_of_files_noted_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A generated tree of thousands of binary "docs" must not flood the run's log or the asset's metadata."""
    monkeypatch.setattr(asset_module, "MAX_FILES_NOTED", 2)
    noted = [(f"docs/{n}.md", "binary (NUL bytes): not indexed") for n in range(5)]
    assert asset_module.noted_files(noted) == [
        "docs/0.md: binary (NUL bytes): not indexed",
        "docs/1.md: binary (NUL bytes): not indexed",
        "… and 3 more files skipped or garbled",
    ]
    assert asset_module.noted_files(noted[:2]) == asset_module.noted_files(noted)[:2]
    assert asset_module.noted_files([]) == []
