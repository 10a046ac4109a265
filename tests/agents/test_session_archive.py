"""Keeping an agent's session for the branch's next revise (`agent_setup.archive_session`), as an attacker would
shape it: the session id comes from the agent's own output and the files from its HOME, so both are the agent's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codexk8s_pipelines.agents.agent_setup import SESSION_RECORD, archive_session, read_session_record
from codexk8s_pipelines.security.safe_files import remove_tree
from tests.helpers import folder_chain

SECRET = "ghs_" + "sessionSecret" + "0123456789"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".codex" / "sessions" / "2026" / "12").mkdir(parents=True)
    return home


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    """A host file the runner may read and the agent may not: what a symlink would make the runner copy."""
    path = tmp_path / "host" / "environ"
    path.parent.mkdir()
    path.write_text(f"CODEXK8S_GITHUB_TOKEN={SECRET}\n")
    return path


def kept_bytes(sessions: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sessions.rglob("*") if p.is_file() and not p.is_symlink())


def test_a_regular_session_file_is_kept_with_its_record(home: Path, tmp_path: Path) -> None:
    rollout = home / ".codex" / "sessions" / "2026" / "12" / "rollout-2026-abc-123.jsonl"
    rollout.write_text('{"type":"session_meta"}\n')
    sessions = tmp_path / "sessions"
    assert archive_session("codex", home, sessions, "abc-123", {"input_tokens": 5}) is None
    kept = sessions / "files" / ".codex" / "sessions" / "2026" / "12" / rollout.name
    assert kept.read_text() == '{"type":"session_meta"}\n' and not kept.is_symlink()
    record = read_session_record(sessions)
    assert record is not None and (record.kind, record.session_id) == ("codex", "abc-123")


def test_a_session_file_linked_to_a_host_file_is_not_copied(home: Path, tmp_path: Path, secret_file: Path) -> None:
    os.symlink(secret_file, home / ".codex" / "sessions" / "2026" / "12" / "rollout-PWN.jsonl")
    sessions = tmp_path / "sessions"
    note = archive_session("codex", home, sessions, "PWN", None)
    assert note is not None and note.startswith("session PWN not kept: ") and "symlink" in note.lower()
    assert SECRET.encode() not in kept_bytes(sessions)
    assert not (sessions / SESSION_RECORD).exists() and not (sessions / "files").exists()


def test_a_session_file_under_a_linked_folder_is_not_copied(home: Path, tmp_path: Path, secret_file: Path) -> None:
    """A folder of the session tree linked to the host: the file in it is reached through a symlink."""
    os.symlink(secret_file.parent, home / ".codex" / "sessions" / "2026" / "host")
    (secret_file.parent / "rollout-PWN.jsonl").write_text(secret_file.read_text())
    sessions = tmp_path / "sessions"
    note = archive_session("codex", home, sessions, "PWN", None)
    assert note is not None and "not kept" in note
    assert SECRET.encode() not in kept_bytes(sessions)


def test_a_linked_sessions_folder_is_not_even_searched(home: Path, tmp_path: Path, secret_file: Path) -> None:
    """Globbing `**` under a link to `/` would walk the host's whole file system with the runner's rights."""
    sessions_dir = home / ".codex" / "sessions"
    for child in sorted(sessions_dir.rglob("*"), reverse=True):
        child.rmdir()
    sessions_dir.rmdir()
    os.symlink(secret_file.parent, sessions_dir)
    (secret_file.parent / "rollout-PWN.jsonl").write_text(secret_file.read_text())
    sessions = tmp_path / "sessions"
    assert archive_session("codex", home, sessions, "PWN", None) == (
        "session PWN not kept: .codex/sessions is a symlink: not followed"
    )
    assert SECRET.encode() not in kept_bytes(sessions)


@pytest.mark.parametrize("session_id", ["*", "../x", "a/b", "x" * 200, "id with space", ""])
def test_a_session_id_that_is_not_a_plain_name_keeps_nothing(home: Path, tmp_path: Path, session_id: str) -> None:
    (home / ".codex" / "sessions" / "2026" / "12" / "rollout-other-run.jsonl").write_text("another session\n")
    sessions = tmp_path / "sessions"
    note = archive_session("codex", home, sessions, session_id, None)
    assert (note is None) if not session_id else ("not a session id the platform can resume" in (note or ""))
    assert not sessions.exists() or kept_bytes(sessions) == b""


def test_a_refused_session_leaves_the_previously_kept_one_whole(home: Path, tmp_path: Path, secret_file: Path) -> None:
    folder = home / ".codex" / "sessions" / "2026" / "12"
    (folder / "rollout-first.jsonl").write_text("first session\n")
    sessions = tmp_path / "sessions"
    assert archive_session("codex", home, sessions, "first", None) is None
    os.symlink(secret_file, folder / "rollout-second.jsonl")
    assert archive_session("codex", home, sessions, "second", None) is not None
    record = read_session_record(sessions)
    assert record is not None and record.session_id == "first"
    assert kept_bytes(sessions).endswith(b"first session\n") and SECRET.encode() not in kept_bytes(sessions)


def test_a_folder_chain_under_the_sessions_does_not_stop_the_session_being_kept(home: Path, tmp_path: Path) -> None:
    """`Path.glob`'s `**` recursed once per folder: 1,200 folders one inside the other under `.codex/sessions` raised
    RecursionError out of the runner after the agent's turn. The search stops at the platform's depth limit."""
    rollout = home / ".codex" / "sessions" / "2026" / "12" / "rollout-2026-abc-123.jsonl"
    rollout.write_text('{"type":"session_meta"}\n')
    folder_chain(home / ".codex" / "sessions", 1200, bottom="rollout-2026-abc-123.jsonl")
    sessions = tmp_path / "sessions"
    try:
        assert archive_session("codex", home, sessions, "abc-123", None) is None
        kept = [p.relative_to(sessions / "files").as_posix() for p in (sessions / "files").rglob("*.jsonl")]
        assert kept == [".codex/sessions/2026/12/rollout-2026-abc-123.jsonl"]
    finally:
        remove_tree(home / ".codex" / "sessions" / "d")  # pytest's own clean-up of tmp_path recurses


def test_a_claude_session_is_found_one_folder_down_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".claude" / "projects" / "-work-repo" / "nested").mkdir(parents=True)
    (home / ".claude" / "projects" / "-work-repo" / "s-1.jsonl").write_text("{}\n")
    (home / ".claude" / "projects" / "-work-repo" / "nested" / "s-1.jsonl").write_text("{}\n")
    sessions = tmp_path / "sessions"
    assert archive_session("claude-code", home, sessions, "s-1", None) is None
    kept = sorted(p.relative_to(sessions / "files").as_posix() for p in (sessions / "files").rglob("*.jsonl"))
    assert kept == [".claude/projects/-work-repo/s-1.jsonl"]
