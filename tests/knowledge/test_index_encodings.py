"""How the indexer reads a file's name and bytes: a name that is not UTF-8 (git allows any bytes) is skipped and
named, where it failed the whole repository's write; a file that is not UTF-8 is indexed with U+FFFD and noted,
where it was garbled silently; a UTF-8 byte-order mark is dropped, where it hid the title and the front matter."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from codexk8s_pipelines.knowledge.embedding import HashingEmbedder
from codexk8s_pipelines.knowledge.files import Skipped, discover, printable
from codexk8s_pipelines.knowledge.index import index_repository

LATIN1_NAME = b"r\xe9sum\xe9.md"  # "résumé.md" in Latin-1: not UTF-8


def rows(url: str, repository: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT path, heading_path, start_line, end_line, content, heading_text FROM doc_chunks"
            " WHERE repository = %s ORDER BY path, chunk_index",
            (repository,),
        ).fetchall()


def write_raw(root: Path, rel: bytes, data: bytes) -> None:
    """Write a file whose path holds bytes that are not UTF-8 (no `str` path can name it portably)."""
    path = os.fsencode(root) + b"/" + rel
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text("# Shop\n\nRefunds take five days.\n", encoding="utf-8")
    write_raw(root, b"docs/" + LATIN1_NAME, b"# Resume\n\nnotes\n")
    write_raw(root, b"docs/caf\xe9/menu.md", b"# Menu\n\ncoffee\n")  # in a folder whose name is not UTF-8
    return root


def test_printable_escapes_the_bytes_that_are_not_utf8() -> None:
    assert printable(os.fsdecode(b"docs/" + LATIN1_NAME)) == "docs/r\\xe9sum\\xe9.md"
    assert printable("docs/résumé.md") == "docs/résumé.md"
    assert printable("lone \ud800 surrogate") == "lone \\ud800 surrogate"


def test_discover_skips_a_name_that_is_not_utf8_and_names_it_escaped(repo: Path) -> None:
    skipped = Skipped()
    assert [rel for rel, _ in discover(repo, ("**/*.md",), skipped)] == ["README.md"]
    assert sorted(skipped.bad_names) == ["docs/caf\\xe9/menu.md", "docs/r\\xe9sum\\xe9.md"]
    assert skipped.files_noted() == (
        ("docs/caf\\xe9/menu.md", "name is not UTF-8: not indexed"),
        ("docs/r\\xe9sum\\xe9.md", "name is not UTF-8: not indexed"),
    )


def test_a_name_that_is_not_utf8_no_longer_stops_the_repository(migrated_url: str, repo: Path) -> None:
    """The insert of such a path raised UnicodeEncodeError and the whole write rolled back: an edit of any other
    file of the repository was never indexed again, every hour."""
    first = index_repository(migrated_url, "acme/names", repo, commit="1", embedder=HashingEmbedder())
    assert first.files == 1 and first.names_skipped == ("docs/caf\\xe9/menu.md", "docs/r\\xe9sum\\xe9.md")
    (repo / "README.md").write_text("# Shop\n\nRefunds now take two days.\n", encoding="utf-8")
    second = index_repository(migrated_url, "acme/names", repo, commit="2", embedder=HashingEmbedder())
    assert second.embedded == 1 and len(second.files_noted) == 2
    ((path, _, _, _, content, _),) = rows(migrated_url, "acme/names")
    assert path == "README.md" and "two days" in content


def test_a_file_that_is_not_utf8_is_indexed_with_replacement_characters_and_noted(
    migrated_url: str, tmp_path: Path
) -> None:
    """Indexed, not skipped: one stray Latin-1 byte in a UTF-8 file (the usual case) must not take the document
    out of search; noted, with the line of the first bad byte, so that its owner re-encodes it."""
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "deploy.md").write_bytes("# Развёртывание\n\nЗапустите make release.\n".encode("cp1251"))
    (root / "docs" / "stray.md").write_bytes(b"# Stray\n\nfine\nCaf\xe9 opens at nine.\n")
    (root / "docs" / "good.md").write_text("# Good\n\nНормальный текст.\n", encoding="utf-8")
    stats = index_repository(migrated_url, "acme/enc", root, commit="1", embedder=HashingEmbedder())
    assert stats.files == 3 and stats.not_utf8 == ("docs/deploy.md", "docs/stray.md")
    assert stats.files_noted == (
        ("docs/deploy.md", "not UTF-8 (first at line 1): indexed with U+FFFD for the bad bytes"),
        ("docs/stray.md", "not UTF-8 (first at line 4): indexed with U+FFFD for the bad bytes"),
    )
    content = {path: text for path, _, _, _, text, _ in rows(migrated_url, "acme/enc")}
    assert content["docs/stray.md"].endswith("Caf\ufffd opens at nine.")
    assert "make release" in content["docs/deploy.md"] and content["docs/good.md"].endswith("Нормальный текст.")


def test_a_byte_order_mark_is_dropped_and_line_numbers_stay(migrated_url: str, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "guide.md").write_bytes("\ufeff# Guide\n\nIntro.\n\n## Install\n\nRun make.\n".encode())
    (root / "front.md").write_bytes("\ufeff---\ntitle: Real Title\n---\n\n## Use\n\nCall it.\n".encode())
    stats = index_repository(migrated_url, "acme/bom", root, commit="1", embedder=HashingEmbedder())
    assert stats.files_noted == ()
    assert [(*r[:4], r[5]) for r in rows(migrated_url, "acme/bom")] == [
        ("front.md", ["Use"], 5, 7, "Real Title > Use"),
        ("guide.md", ["Guide"], 1, 3, "Guide"),
        ("guide.md", ["Guide", "Install"], 5, 7, "Guide > Install"),
    ]
    assert all("\ufeff" not in r[4] for r in rows(migrated_url, "acme/bom"))


def test_a_file_that_cannot_be_read_is_noted(
    migrated_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "a.md").write_text("# A\n\na\n")
    (root / "b.md").write_text("# B\n\nb\n")
    read_bytes = Path.read_bytes

    def failing(self: Path) -> bytes:
        if self.name == "b.md":
            raise PermissionError(13, "Permission denied")
        return read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", failing)
    stats = index_repository(migrated_url, "acme/unreadable", root, commit="1", embedder=HashingEmbedder())
    assert stats.files == 1 and stats.unreadable == ("b.md",)
    assert stats.files_noted == (("b.md", "unreadable (Permission denied): not indexed"),)
