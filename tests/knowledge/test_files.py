"""Which files the indexer reads (issue 20): links that loop or leave the checkout never crash or leak a pass,
binary files named like docs are skipped and counted, oversized docs are reported, not silently dropped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import codexk8s_pipelines.knowledge.files as files_module
from codexk8s_pipelines.knowledge.embedding import HashingEmbedder
from codexk8s_pipelines.knowledge.files import MAX_FOLDERS_NOTED, Skipped, discover
from codexk8s_pipelines.knowledge.index import index_repository
from codexk8s_pipelines.security.safe_files import MAX_DEPTH, TOO_DEEP, remove_tree
from tests.helpers import folder_chain


@pytest.fixture
def tricky(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    outside = tmp_path / "secret.md"
    outside.write_text("# Outside\n\nNot this repository's documentation.\n")
    (root / "docs" / "guide.md").write_text("# Guide\n\nHow to use the tool.\n")
    (root / "docs" / "same.md").symlink_to(root / "docs" / "guide.md")  # inside: followed
    (root / "docs" / "out.md").symlink_to(outside)  # out of the checkout: never read
    (root / "docs" / "loop.md").symlink_to(root / "docs" / "loop2.md")
    (root / "docs" / "loop2.md").symlink_to(root / "docs" / "loop.md")  # a loop: resolve() raises
    (root / "docs" / "dangling.md").symlink_to(root / "docs" / "nowhere.md")
    (root / "docs" / "dir-loop").symlink_to(root / "docs", target_is_directory=True)  # never walked into
    (root / "docs" / "image.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (root / "docs" / "big.md").write_text("# Big\n\n" + "generated line\n" * 200)
    return root


def test_discover_skips_loops_outside_links_and_binary_files(tricky: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files_module, "MAX_FILE_BYTES", 1000)
    skipped = Skipped()
    found = [rel for rel, _ in discover(tricky, ("**/*.md",), skipped)]
    assert found == ["docs/guide.md", "docs/same.md"]
    assert skipped.binary == ["docs/image.md"]
    assert skipped.oversized == ["docs/big.md"]
    assert sorted(skipped.links) == ["docs/dangling.md", "docs/loop.md", "docs/loop2.md", "docs/out.md"]


def test_index_reports_what_it_skipped(migrated_url: str, tricky: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files_module, "MAX_FILE_BYTES", 1000)
    stats = index_repository(migrated_url, "acme/tricky", tricky, embedder=HashingEmbedder())
    assert (stats.files, stats.binary_skipped, stats.oversized, stats.links_skipped) == (2, 1, ("docs/big.md",), 4)
    assert os.path.islink(tricky / "docs" / "loop.md")  # nothing was touched


def test_a_folder_chain_deeper_than_any_walk_goes_is_reported_and_the_rest_is_indexed(
    migrated_url: str, tmp_path: Path
) -> None:
    """A repository with a generated folder chain 1,200 deep (in git, a path of 2,400 characters) raised RecursionError
    out of the walk: none of its docs were indexed, and the asset failed without saying where."""
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "guide.md").write_text("# Guide\n\nHow to use the tool.\n")
    chain = root / "generated"
    chain.mkdir()
    folder_chain(chain, 1200, bottom="bottom.md", at={5: "shallow.md"})
    try:
        stats = index_repository(migrated_url, "acme/deep", root, embedder=HashingEmbedder())
        cut = "generated/" + "/".join(["d"] * MAX_DEPTH)
        assert stats.folders_skipped == (f"{cut}: {TOO_DEEP}",)
        assert stats.files == 2  # docs/guide.md and the one six levels down; not the one past the limit
        found = [rel for rel, _ in discover(root, ("**/*.md",))]
        assert found == ["docs/guide.md", "generated/" + "d/" * 6 + "shallow.md"]
    finally:
        remove_tree(chain)  # pytest's own clean-up of tmp_path recurses


def test_folders_not_read_are_listed_up_to_a_limit_then_counted(tmp_path: Path) -> None:
    """Each folder not read is a warning in the run's log and a line of the asset's metadata: a generated tree with
    thousands of them would flood both (review of stop 36)."""
    root = tmp_path / "repo"
    floor = root / Path(*["d"] * MAX_DEPTH)
    for n in range(MAX_FOLDERS_NOTED + 50):
        (floor / f"x{n:03}").mkdir(parents=True)
    skipped = Skipped()
    assert list(discover(root, ("**/*.md",), skipped)) == []
    noted = skipped.folders_noted()
    assert len(noted) == MAX_FOLDERS_NOTED + 1
    assert noted[0] == f"{'/'.join(['d'] * MAX_DEPTH)}/x000: {TOO_DEEP}"
    assert noted[-1] == "… and 50 more folders not read"
