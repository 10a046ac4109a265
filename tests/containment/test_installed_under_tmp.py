"""An agent installed under a directory the sandbox does not show (a checkout cloned under /tmp, as CI does) still
starts: the link found on PATH resolves inside as outside, and an npm launcher finds its platform package beside
it. Nothing else of that directory is shown."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from codexk8s_pipelines.agents import sandbox as sb


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed (make test installs it)")
def test_a_path_link_into_node_modules_under_tmp_starts_in_the_sandbox(tmp_path: Path) -> None:
    assert str(tmp_path).startswith("/tmp/")  # the case CI's clone is in: /tmp is private inside the sandbox
    tools = tmp_path / "tools"
    launcher = tools / "node_modules" / "@acme" / "agent" / "bin" / "agent"
    platform_binary = tools / "node_modules" / "@acme" / "agent-linux-x64" / "payload.txt"
    for path in (launcher, platform_binary):
        path.parent.mkdir(parents=True)
    platform_binary.write_text("native part\n")
    # Like an npm launcher: it finds the platform package relative to its own real location.
    launcher.write_text(
        '#!/bin/sh\nhere=$(dirname "$(readlink -f "$0")")\ncat "$here/../../agent-linux-x64/payload.txt"\n'
    )
    launcher.chmod(0o755)
    (tools / "bin").mkdir()
    os.symlink("../node_modules/@acme/agent/bin/agent", tools / "bin" / "agent")
    secret = tmp_path / "platform-secret.txt"
    secret.write_text("not for the agent\n")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    path_env = f"{tools / 'bin'}:/usr/bin:/bin"

    bound = sb.command_paths(["agent"], path_env)
    assert tools / "bin" in bound and tools / "node_modules" in bound
    argv = ["bwrap", *sb.bwrap_args(sb.SandboxPlan(workspace=workspace), ["agent"], path_env), "--", "agent"]
    done = subprocess.run(argv, env={"PATH": path_env}, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "native part\n"
    peek = ["bwrap", *sb.bwrap_args(sb.SandboxPlan(workspace=workspace), ["agent"], path_env), "--", "cat", str(secret)]
    looked = subprocess.run(peek, env={"PATH": path_env}, capture_output=True, text=True, timeout=30, check=False)
    assert looked.returncode != 0 and "not for the agent" not in looked.stdout
