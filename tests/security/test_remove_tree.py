"""`safe_files.remove_tree`: the wipe of what an agent left for the next run of its branch (its checkout, its HOME),
whatever the agent made of it: chains of folders deeper than Python's recursion and than PATH_MAX, links to outside
folders, folders it made unreadable. The runner-level attack is in tests/containment/test_runner_attacks.py."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from codexk8s_pipelines.security.safe_files import remove_tree
from tests.helpers import folder_chain

NOBODY = 65534


def test_a_chain_deeper_than_recursion_and_path_max_is_removed_and_no_link_is_followed(tmp_path: Path) -> None:
    top = tmp_path / "workdir"
    top.mkdir()
    folder_chain(top, 3000, at={n: "f.md" for n in range(0, 3000, 500)})  # 6,000 characters of path: past PATH_MAX
    for depth in (1, 1000):  # paths short enough to name
        (top / Path(*["d"] * depth) / "etc").symlink_to("/etc")
    for n in range(2000):
        (top / "wide" / f"p{n}").mkdir(parents=True)
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "keep" / "file").write_text("kept")
    (top / "out").symlink_to(outside)
    (top / "wide" / "p7" / "out").symlink_to(outside / "keep")
    with pytest.raises(RecursionError):  # why it exists
        shutil.rmtree(top)
    remove_tree(top)
    assert not top.exists()
    assert (outside / "keep" / "file").read_text() == "kept"
    assert len(os.listdir("/etc")) > 0


def test_a_file_a_link_and_nothing_are_removed_as_such(tmp_path: Path) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "folder")
    remove_tree(tmp_path / "file")
    remove_tree(tmp_path / "link")
    remove_tree(tmp_path / "missing")
    assert sorted(os.listdir(tmp_path)) == ["folder"]


def _as_nobody(top: Path, root_owned: Path) -> dict[str, object]:
    """In a child process that became the ordinary user `nobody`: what `shutil.rmtree` and `remove_tree` make of a
    HOME with shut folders, and whether removing what nobody may remove is an error."""
    (top / "shut" / "in").mkdir(parents=True)
    (top / "shut" / "in" / "f.md").write_text("x")
    os.chmod(top / "shut" / "in", 0)
    os.chmod(top / "shut", 0o100)
    (top / "readonly").mkdir()
    (top / "readonly" / "f").write_text("x")
    os.chmod(top / "readonly", 0o500)
    shutil.rmtree(top, ignore_errors=True)
    left_by_rmtree = top.exists()
    remove_tree(top)
    try:
        remove_tree(root_owned)
        refused = None
    except OSError as exc:
        refused = type(exc).__name__
    return {"left_by_rmtree": left_by_rmtree, "removed": not top.exists(), "refused": refused}


@pytest.mark.skipif(os.geteuid() != 0, reason="becomes the ordinary user nobody, which takes root")
def test_as_an_ordinary_user_folders_the_agent_shut_are_opened_and_removed(tmp_path: Path) -> None:
    """The runner need not be root: an agent's folder of mode 000 (or without write) under its HOME stopped
    `rmtree`, which left the earlier run's files for the next agent. What the user may not remove is an error."""
    folder = Path(tempfile.mkdtemp(prefix="remove-tree-"))
    try:
        os.chmod(folder, 0o755)
        (folder / "home").mkdir()
        os.chown(folder / "home", NOBODY, NOBODY)
        (folder / "roots" / "kept").mkdir(parents=True)  # root's, in a folder of root's: not nobody's to remove
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                os.close(read)
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
                os.write(write, json.dumps(_as_nobody(folder / "home" / "agent", folder / "roots" / "kept")).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            report = json.loads(pipe.read() or b"null")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0 and report is not None
        assert report["left_by_rmtree"] is True
        assert report["removed"] is True
        assert report["refused"] == "PermissionError"
        assert (folder / "roots" / "kept").is_dir()
    finally:
        remove_tree(folder)


def test_a_folder_moved_away_while_it_is_emptied_stops_the_removal_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing of the agent runs when its tree is wiped; were something to move a folder out while it is emptied, the
    way back up (by `..`) would lead into the folder it was moved to, and its neighbours there would go next (review
    of stop 36). The way up must lead where the way down came from, or the removal stops."""
    tree, elsewhere = tmp_path / "tree", tmp_path / "elsewhere"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "c").mkdir()
    for name in ("b", "c"):
        (elsewhere / name).mkdir(parents=True)
        (elsewhere / name / "precious").write_text("keep me")
    listing = os.scandir
    moved: list[str] = []

    def racing(fd: int) -> Any:
        here = os.readlink(f"/proc/self/fd/{fd}")
        if not moved and here.startswith(f"{tree / 'a'}/"):
            name = os.path.basename(here)
            os.rename(elsewhere / name, elsewhere / f"{name}.aside")
            os.rename(here, elsewhere / name)  # the folder being emptied, moved out of the tree
            moved.append(name)
        return listing(fd)

    monkeypatch.setattr(os, "scandir", racing)
    with pytest.raises(OSError, match="a folder was moved while it was removed"):
        remove_tree(tree)
    monkeypatch.undo()
    assert moved
    left = {name: sorted(os.listdir(elsewhere / name)) for name in sorted(os.listdir(elsewhere))}
    assert all(files == ["precious"] for name, files in left.items() if name != moved[0]), left
