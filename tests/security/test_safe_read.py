"""`read_untrusted_file`: the one read of a file an agent wrote (its result file, the outcome record of its
container, aider's analytics log in its HOME), shared by the runner and the usage reader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from codexk8s_pipelines.security.safe_files import UnsafeFile, read_untrusted_file


@pytest.mark.timeout(20)
def test_a_file_the_agent_wrote_is_read_only_through_no_link_and_absence_is_its_own_answer(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    (root / "out").mkdir(parents=True)
    (root / "out" / "result.json").write_text('{"summary": "done"}')
    assert read_untrusted_file(root, "out/result.json", max_bytes=100) == b'{"summary": "done"}'
    host = tmp_path / "host-secret"
    host.write_text("the runner's own file")
    (root / "leak.json").symlink_to(host)  # the last step a link
    (root / "via").symlink_to(root / "out")  # a link on the way to a regular file
    (root / "dangling.json").symlink_to(tmp_path / "nowhere")
    for relative in ("leak.json", "via/result.json", "dangling.json"):
        with pytest.raises(UnsafeFile, match="is a symlink: not followed"):
            read_untrusted_file(root, relative, max_bytes=100)
    os.mkfifo(root / "fifo.json")  # a plain open would wait for a writer forever
    with pytest.raises(UnsafeFile, match=r"not a regular file \(FIFO\)"):
        read_untrusted_file(root, "fifo.json", max_bytes=100)
    with pytest.raises(UnsafeFile, match="over the"):
        read_untrusted_file(root, "out/result.json", max_bytes=5)
    for outside in ("../host-secret", str(host)):
        with pytest.raises(UnsafeFile, match="not a path inside"):
            read_untrusted_file(root, outside, max_bytes=100)
    with pytest.raises(FileNotFoundError):  # not written at all: "no result file", not "cannot read"
        read_untrusted_file(root, "absent.json", max_bytes=100)
