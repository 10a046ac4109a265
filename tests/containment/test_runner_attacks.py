"""The agent as an attacker, against the real runner: real processes, real git, a real bare remote.

Each test is one attack that worked before the sandbox and the verified push (issue 12), run through
`python -m codexk8s_pipelines.agents.runner` exactly as Dagster runs it. After every run: no process of the agent is
left on the host, and none of the runner's secrets reached anything the agent could write.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from codexk8s_pipelines.agents import sandbox as sandbox_module
from codexk8s_pipelines.domain.write_scope import SECRET_IN_FILE
from codexk8s_pipelines.security.safe_files import remove_tree
from tests.agents_runner.test_git_workspace import git, make_remote, remote_file, remote_head
from tests.agents_runner.test_runner import (
    BRANCH,
    REPO_ROOT,
    agent_processes,
    make_agent,
    make_spec,
    run_runner,
    runner_cmd,
    wait_for,
)
from tests.helpers import silent_http_server

# Sentinels built at run time (never a key-shaped literal in the tree): each unique, so a leak is unambiguous.
_NONCE = secrets.token_hex(8)
_PEM = "-----{} RSA PRIVATE KEY-----"
SECRETS = {
    "CODEXK8S_GITHUB_TOKEN": "ghs_" + "runnerToken" + _NONCE,
    "CODEXK8S_GITHUB_APP_PRIVATE_KEY": f"{_PEM.format('BEGIN')}\nappkey{_NONCE}\n{_PEM.format('END')}",
    "CODEXK8S_MCP_SECRET": f"mcp-signing-secret-{_NONCE}",
    "CODEXK8S_DATABASE_URL": f"postgresql://postgres:db-pw-{_NONCE}@127.0.0.1:5432/codexk8s",
}


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return make_remote(tmp_path)


@pytest.fixture
def attack(tmp_path: Path, remote: Path) -> Iterator[dict[str, Any]]:
    """Runs one attacking agent; afterwards, nothing of it may be alive and no secret may be in its reach."""
    state: dict[str, Any] = {"markers": []}

    def run(body: str, **spec: Any) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        command = make_agent(tmp_path, body, name=f"attack-{len(state['markers'])}.py")
        state["markers"].append(command[1])
        env = {**SECRETS, **spec.pop("runner_env", {})}
        return run_runner(make_spec(tmp_path, remote, command, **spec), tmp_path, env)

    state["run"] = run
    yield state
    for marker in state["markers"]:
        assert agent_processes(marker) == [], f"agent processes left behind by {marker}"
    workdir = tmp_path / "workdir"
    for path in workdir.rglob("*") if workdir.exists() else ():
        if path.is_file() and not path.is_symlink():
            text = path.read_bytes()
            for name, secret in SECRETS.items():
                assert secret.encode() not in text, f"{name} readable by the agent: found in {path}"


def remote_paths(remote: Path, ref: str) -> list[str]:
    return git(f"--git-dir={remote}", "ls-tree", "-r", "--name-only", ref).split()


# ------------------------------------------------------------------------------------------------ lingering daemons

DAEMON = """\
write("docs/plan.md", "# Plan\\n")
result(summary="plan written")
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        # The daemon of the attack: wait for the runner's commit, then swap in a commit of its own making.
        time.sleep(1.5)
        write("src/app.py", "print('pwned')\\n")
        write("docs/late.md", "written after the agent's exit\\n")
        commit_all("evil")
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        for git_dir in [ROOT / ".git", *ROOT.parent.glob(".*runner-git")]:
            ref = git_dir / "refs" / "heads" / BRANCH_NAME
            try:
                ref.parent.mkdir(parents=True, exist_ok=True)
                ref.write_text(sha + "\\n")
            except OSError:
                pass
        time.sleep(60)
        os._exit(0)
    os._exit(0)
"""


def test_a_lingering_daemon_cannot_swap_the_pushed_commit_nor_edit_after_exit(
    attack: dict[str, Any], remote: Path, tmp_path: Path
) -> None:
    body = f"BRANCH_NAME = {BRANCH!r}\n" + DAEMON
    proc, result = attack["run"](body, write_scope="markdown-only")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (result["status"], result["reason"]) == ("succeeded", "pushed")
    time.sleep(2.5)  # past the moment the daemon would have struck
    assert result["changed_files"] == ["docs/plan.md"]
    assert remote_head(remote, BRANCH) == result["commit"]
    assert remote_paths(remote, BRANCH) == ["README.md", "docs/plan.md", "src/app.py"]
    assert remote_file(remote, BRANCH, "src/app.py") == "print('hello')\n"
    assert not (tmp_path / "workdir" / "docs" / "late.md").exists()
    assert not (tmp_path / "workdir" / "src" / "app.py").read_text().startswith("print('pwned')")


# ------------------------------------------------------------------------------------------------ secrets


LOOT = """\
loot = {"env": dict(os.environ), "proc": {}, "files": {}}
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            loot["proc"][pid] = pathlib.Path(f"/proc/{pid}/environ").read_bytes().decode("utf-8", "replace")
        except OSError as exc:
            loot["proc"][pid] = str(exc)
for path in TARGETS:
    try:
        loot["files"][path] = pathlib.Path(path).read_text()
    except OSError as exc:
        loot["files"][path] = "unreadable: " + type(exc).__name__
try:
    loot["listing"] = sorted(os.listdir(RUN_DIR))
except OSError as exc:
    loot["listing"] = ["unlistable: " + type(exc).__name__]
loot["ppid"] = os.getppid()
loot["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
write(".codexk8s/loot.json", json.dumps(loot))
write("docs/loot.md", json.dumps(loot))
result(summary=json.dumps(loot)[:3000])
"""


def test_the_agent_sees_no_secret_in_its_environment_in_proc_or_on_disk(
    attack: dict[str, Any], tmp_path: Path, remote: Path
) -> None:
    secret_file = tmp_path / "runner-home" / "credentials"
    secret_file.parent.mkdir()
    secret_file.write_text(SECRETS["CODEXK8S_GITHUB_TOKEN"])
    runner_git_config = tmp_path / ".workdir.runner-git" / "config"
    targets = [str(secret_file), str(runner_git_config), "/root/.gitconfig", "/etc/shadow"]
    body = f"TARGETS = {targets!r}\nRUN_DIR = {str(tmp_path)!r}\n" + LOOT
    proc, result = attack["run"](
        body, runner_env={"HOME": str(secret_file.parent), "OPENAI_API_KEY": "sk-declared"},
        pass_env=["OPENAI_API_KEY"],
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    loot = json.loads((tmp_path / "workdir" / ".codexk8s" / "loot.json").read_text())
    everything = json.dumps(loot)
    for name, secret in SECRETS.items():
        assert secret not in everything, name
        assert name not in loot["env"]
    # The allow-list: what the catalog declared, the runner's pointers, a private HOME; nothing else of the runner.
    assert loot["env"]["OPENAI_API_KEY"] == "sk-declared"
    assert loot["env"]["HOME"] == "/home/agent"
    assert not {k for k in loot["env"] if k.startswith(("DAGSTER_", "GIT_"))}
    # Its own PID namespace: it is PID 2 under bwrap's init and sees no platform process.
    assert loot["ppid"] == 1 and loot["pids"] == sorted(int(p) for p in loot["proc"])
    assert len(loot["pids"]) <= 3
    for path in targets:
        assert loot["files"][path].startswith("unreadable"), path
    # The runner's own files exist (its git config, the spec with the run's MCP token), out of the agent's sight.
    assert runner_git_config.is_file() and list(tmp_path.glob("spec-*.json"))
    assert not [name for name in loot["listing"] if name.startswith("spec-")]  # only its checkout and git objects
    assert result["pushed"]  # docs/loot.md was pushed, and it holds no secret (checked above)


ENCODED_KEY = """\
import base64
key = os.environ["OPENAI_API_KEY"]
write("docs/notes.md", "# Notes\\n\\nsettings: " + base64.b64encode(("model_key=" + key).encode()).decode() + "\\n")
write("docs/hex.md", "checksum " + key.encode().hex() + "\\n")
write("docs/fine.md", "nothing to see\\n")
wrapped = subprocess.run(["base64"], input=("key: " + key).encode(), capture_output=True, check=True).stdout.decode()
write("docs/wrapped.md", "```\\n" + wrapped + "```\\n")  # as `base64` prints it: lines of 76 characters
result(summary="the key, made safe: " + base64.urlsafe_b64encode(("k:" + key).encode()).decode() + "\\n" + wrapped)
"""


def test_the_model_key_encoded_in_base64_or_hex_is_neither_pushed_nor_reported(
    attack: dict[str, Any], remote: Path
) -> None:
    """Issue text can tell an agent to publish its key "encoded". Base64 and hex of it passed the push's check and the
    redaction, which knew the literal value only: the branch and the service comment would have carried it. So did
    base64 as the `base64` command prints it, wrapped at 76 characters (review of stop 36)."""
    key = f"sk-proj-{_NONCE * 8}"  # as long as real keys: its base64 takes more than one line of 76
    _proc, result = attack["run"](
        ENCODED_KEY, runner_env={"OPENAI_API_KEY": key}, pass_env=["OPENAI_API_KEY"], write_scope="markdown-only"
    )
    outcome = (result["status"], result["reason"], result["pushed"])
    assert outcome == ("failed_precondition", "write_scope_violation", False)
    assert result["violations"] == ["docs/hex.md", "docs/notes.md", "docs/wrapped.md"]
    assert all(SECRET_IN_FILE in rule for rule in result["violation_rules"]), result["violation_rules"]
    assert BRANCH not in git(f"--git-dir={remote}", "branch", "--list")
    written = base64.urlsafe_b64encode(("k:" + key).encode()).decode()
    record = json.dumps(result)
    assert written not in record and key.encode().hex() not in record
    wrapped_lines = base64.encodebytes(("key: " + key).encode()).decode().splitlines()
    assert len(wrapped_lines) > 1 and not any(line in result["summary"] for line in wrapped_lines[1:-1])
    assert result["summary"].startswith("the key, made safe: ")


# ------------------------------------------------------------------------------------------------ git metadata

GIT_TRAPS = """\
pwn = f"touch {MARKER}"
home = pathlib.Path(os.environ["HOME"])
gitconfig = f"[filter \\"x\\"]\\n\\tclean = sh -c '{pwn}; cat'\\n[core]\\n\\thooksPath = {ROOT}/hooks\\n"
gitconfig = gitconfig
(home / ".gitconfig").write_text(gitconfig)
(ROOT / ".gitattributes").write_text("* filter=x\\n")
git_dir = ROOT / ".git"
(git_dir / "info").mkdir(exist_ok=True)
(git_dir / "info" / "attributes").write_text("* filter=x\\n")
hooks = ROOT / "hooks"
hooks.mkdir()
for name in ("pre-commit", "post-commit", "pre-push", "reference-transaction"):
    (hooks / name).write_text(f"#!/bin/sh\\n{pwn}\\n")
    (hooks / name).chmod(0o755)
subprocess.run(["git", "config", "core.hooksPath", str(hooks)], check=True)
subprocess.run(["git", "config", "filter.x.clean", f"sh -c '{pwn}; cat'"], check=True)
(git_dir / "config").unlink()
(git_dir / "config").symlink_to(OUTSIDE)
for runner_git in ROOT.parent.glob(".*runner-git"):
    try:
        (runner_git / "config").write_text("[core]\\n\\thooksPath = /tmp\\n")
    except OSError:
        pass
write("docs/notes.md", "notes\\n")
result(summary="set traps")
"""


def test_git_config_filters_hooks_and_a_symlinked_config_never_run_or_write(
    attack: dict[str, Any], tmp_path: Path, remote: Path
) -> None:
    marker, outside = tmp_path / "pwned", tmp_path / "outside-config"
    runner_home = tmp_path / "runner-home"
    runner_home.mkdir()
    # Even a poisoned ~/.gitconfig of the runner itself is ignored (GIT_CONFIG_GLOBAL=/dev/null).
    (runner_home / ".gitconfig").write_text(
        f'[core]\n\thooksPath = {tmp_path}\n[filter "x"]\n\tclean = touch {marker}\n'
    )
    body = f"MARKER = {str(marker)!r}\nOUTSIDE = {str(outside)!r}\n" + GIT_TRAPS
    proc, result = attack["run"](body, runner_env={"HOME": str(runner_home)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert result["reason"] == "pushed"
    assert not marker.exists()
    assert not outside.exists()
    assert sorted(result["changed_files"]) == [
        ".gitattributes",
        "docs/notes.md",
        "hooks/post-commit",
        "hooks/pre-commit",
        "hooks/pre-push",
        "hooks/reference-transaction",
    ]
    # The content went up as written (no filter ran on it), by the runner's author.
    assert remote_file(remote, BRANCH, "docs/notes.md") == "notes\n"
    assert git(f"--git-dir={remote}", "log", "-1", "--format=%an", BRANCH).strip() == "codex-bot"


# ---------------------------------------------------------------------------------------------- write scope by content

CONTENT_TRICKS = """\
docs = ROOT / "docs"
docs.mkdir()
(docs / "passwd.md").symlink_to("/etc/passwd")
(docs / "blob.md").write_bytes(b"\\0" * (2 * 1024 * 1024))
(docs / "small-binary.md").write_bytes(b"# title\\n\\0\\1\\2")
(docs / "latin1.md").write_bytes("caf\\xe9".encode("latin-1"))
(docs / "run.md").write_text("#!/bin/sh\\n")
(docs / "run.md").chmod(0o755)
(docs / "new\\nline.md").write_text("x\\n")
(docs / "trailing.md ").write_text("x\\n")
(docs / "fine.md").write_text("# fine\\n")
make_submodule(docs / "evil.md")
result(summary="only markdown, honest")
"""


def test_markdown_only_judges_content_not_names(attack: dict[str, Any], remote: Path) -> None:
    proc, result = attack["run"](CONTENT_TRICKS, write_scope="markdown-only")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (result["status"], result["reason"]) == ("failed_precondition", "write_scope_violation")
    assert remote_head(remote, BRANCH) is None and not result["pushed"]
    rules = dict(rule.split(": ", 1) for rule in result["violation_rules"])
    assert rules == {
        "'docs/blob.md'": "2097152 bytes, over the 1000000-byte cap for text files",
        "'docs/evil.md'": "a gitlink (submodule pointer), not a file",
        "'docs/latin1.md'": "not valid UTF-8 text",
        "'docs/new\\nline.md'": "the name holds a control character (U+000A)",
        "'docs/passwd.md'": "a symlink (only regular files are allowed)",
        "'docs/run.md'": "an executable file (mode 100755); only mode 100644 is allowed",
        "'docs/small-binary.md'": "binary content (NUL bytes)",
        "'docs/trailing.md '": "a name part starts or ends with whitespace or ends with a dot",
    }
    assert "docs/fine.md" in result["changed_files"] and "docs/fine.md" not in result["violations"]
    assert "docs/passwd.md" in result["message"] and "symlink" in result["message"]


def test_markdown_only_size_cap_is_configurable(attack: dict[str, Any], remote: Path) -> None:
    body = 'write("docs/big.md", "word " * 400)\nresult(summary="2 kB")\n'
    _proc, result = attack["run"](body, write_scope="markdown-only", max_text_bytes=1000)
    assert result["violation_rules"] == ["'docs/big.md': 2000 bytes, over the 1000-byte cap for text files"]
    _proc, result = attack["run"](body, write_scope="markdown-only", max_text_bytes=4000)
    assert (result["reason"], result["changed_files"]) == ("pushed", ["docs/big.md"])


ANY_FILE_TRICKS = """\
(ROOT / "etc-link").symlink_to("/etc/passwd")
(ROOT / "src" / "up.py").symlink_to("../../outside.py")
(ROOT / "src" / "inside.py").symlink_to("app.py")
make_submodule(ROOT / "vendor")
result(summary="links")
"""


def test_any_file_still_refuses_gitlinks_and_symlinks_out_of_the_repository(
    attack: dict[str, Any], remote: Path
) -> None:
    _proc, result = attack["run"](ANY_FILE_TRICKS)
    assert result["reason"] == "write_scope_violation"
    assert result["violation_rules"] == [
        "'etc-link': a symlink pointing outside the repository",
        "'src/up.py': a symlink pointing outside the repository",
        "'vendor': a gitlink (submodule pointer) is never pushed",
    ]
    assert "src/inside.py" in result["changed_files"] and remote_head(remote, BRANCH) is None


# ------------------------------------------------------------------------------------------------ hidden entries

HIDDEN_GITLINK = """\
make_submodule(ROOT / "vendor")
write(".gitmodules", '[submodule "v"]\\n\\tpath = vendor\\n\\turl = https://a.example/p.git\\n\\tignore = all\\n')
write(".gitignore", ".gitignore\\n.gitmodules\\n")
write("docs/plan.md", "# plan\\n")
result(summary="plan written")
"""


@pytest.mark.parametrize(
    ("scope", "rule"),
    [
        ("any-file", "a gitlink (submodule pointer) is never pushed"),
        ("markdown-only", "not a Markdown or reST file name (markdown-only)"),
    ],
)
def test_a_gitlink_hidden_by_its_own_gitmodules_ignore_setting_is_still_seen_and_refused(
    attack: dict[str, Any], remote: Path, scope: str, rule: str
) -> None:
    """`ignore = all` in a `.gitmodules` that a `.gitignore` keeps out of the commit: diff-tree would honour it and
    leave the gitlink out of the changes it reports, and the commit with it would be pushed."""
    _proc, result = attack["run"](HIDDEN_GITLINK, write_scope=scope)
    assert result["reason"] == "write_scope_violation"
    assert result["violation_rules"] == [f"'vendor': {rule}"]
    assert "vendor" in result["changed_files"] and remote_head(remote, BRANCH) is None


SYMLINK_CHAIN = """\
(ROOT / "docs").mkdir(exist_ok=True)
os.symlink("..", ROOT / "docs" / "loop")
os.symlink("docs/loop/..", ROOT / "up")
os.symlink("docs/loop/src/app.py", ROOT / "app-link")
result(summary="links")
"""


def test_any_file_follows_a_symlink_through_the_others_before_it_lets_it_through(
    attack: dict[str, Any], remote: Path
) -> None:
    """`docs/loop -> ..` stays inside, and `up -> docs/loop/..` reads as `docs` when taken alone; followed as a file
    system does, `up` is the checkout's parent folder."""
    _proc, result = attack["run"](SYMLINK_CHAIN)
    assert result["reason"] == "write_scope_violation"
    assert result["violation_rules"] == ["'up': a symlink pointing outside the repository"]
    assert remote_head(remote, BRANCH) is None


LINKS_FIRST = """\
(ROOT / "a" / "b").mkdir(parents=True)
(ROOT / "a" / "b" / "keep").write_text("k\\n")
os.symlink("a/b", ROOT / "L")
os.symlink("L/../..", ROOT / "x")
result(summary="links")
"""
LINK_MADE_A_FOLDER = """\
os.unlink(ROOT / "L")
(ROOT / "L").mkdir()
(ROOT / "L" / "f").write_text("f\\n")
result(summary="a folder")
"""


def test_a_link_made_a_folder_in_a_later_run_cannot_send_an_older_link_out(
    attack: dict[str, Any], remote: Path
) -> None:
    """Two runs on one branch: the first pushes `L -> a/b` and `x -> L/../..`, inside (`a/b/../..` is the root); the
    second changes no link, only makes `L` a folder, and `x` becomes `L/../..`: the checkout's parent."""
    _proc, first = attack["run"](LINKS_FIRST)
    assert first["reason"] == "pushed", first
    _proc, second = attack["run"](LINK_MADE_A_FOLDER)
    assert second["reason"] == "write_scope_violation", second
    assert second["violation_rules"] == ["'x': a symlink pointing outside the repository (not before this change)"]
    assert remote_head(remote, BRANCH) == first["commit"]


MD_LINK_FIRST = """\
(ROOT / "a" / "b" / "c").mkdir(parents=True)
(ROOT / "a" / "b" / "c" / "keep").write_text("k\\n")
os.symlink("a/b/c", ROOT / "L.md")
os.symlink("L.md/../..", ROOT / "x")
result(summary="links")
"""
MD_LINK_MADE_A_FOLDER = """\
os.unlink(ROOT / "L.md")
write("L.md/notes.md", "# notes\\n")
result(summary="notes")
"""


def test_a_markdown_only_run_cannot_make_a_link_with_a_markdown_name_a_folder_that_sends_an_older_link_out(
    attack: dict[str, Any], remote: Path
) -> None:
    """Markdown-only may delete `L.md` and write `L.md/notes.md`: names it allows, no link added. The links were
    followed under any-file only, and `x -> L.md/../..` (inside through `L.md -> a/b/c`) was pushed as the
    checkout's parent folder."""
    _proc, first = attack["run"](MD_LINK_FIRST)
    assert first["reason"] == "pushed", first
    _proc, second = attack["run"](MD_LINK_MADE_A_FOLDER, write_scope="markdown-only")
    assert second["reason"] == "write_scope_violation", second
    assert second["violation_rules"] == ["'x': a symlink pointing outside the repository (not before this change)"]
    assert remote_head(remote, BRANCH) == first["commit"]


LINKS_THROUGH_WHAT_THE_TREE_LACKS = """\
(ROOT / "docs" / "sub").mkdir(parents=True)
(ROOT / "docs" / "sub" / "notes.md").write_text("# notes\\n")
os.symlink("missing/../../etc/passwd", ROOT / "docs" / "x")   # read as text: the repository's etc/passwd
os.symlink("sub/../../README.md", ROOT / "docs" / "readme")    # through a folder the tree has: fine
os.symlink("../build/html/index.html", ROOT / "docs" / "api")  # a build's output, dangling: fine
(ROOT / "a" / "b").mkdir(parents=True)
os.symlink("../..", ROOT / "a" / "b" / "l")
os.symlink("L/../../.ssh/id_rsa", ROOT / "a" / "b" / "x")     # on a Mac `L` is `l`: the checkout's ../.ssh/id_rsa
os.symlink(".git/config", ROOT / "git-config")
result(summary="links")
"""


def test_any_file_follows_links_through_the_tree_as_checked_out_not_through_their_text(
    attack: dict[str, Any], remote: Path
) -> None:
    """A part of a link's way that the tree does not hold as a folder is not climbed out of with `..` (a file system
    does not resolve `missing/..`; a checkout's own `missing` decides where it leads), a name is looked up as a
    case-insensitive file system would too, and the checkout's `.git` is no file of the repository."""
    _proc, result = attack["run"](LINKS_THROUGH_WHAT_THE_TREE_LACKS)
    assert result["reason"] == "write_scope_violation", result
    assert result["violation_rules"] == [
        "'a/b/x': a symlink pointing outside the repository (on a case-insensitive file system, where 'a/b/L' is"
        " the symlink 'a/b/l')",
        "'docs/x': a symlink through 'docs/missing/..', where 'docs/missing' is not a folder of the repository"
        " (missing, a file or a submodule): where it leads depends on what a checkout has there",
        "'git-config': a symlink into '.git', git's own folder in a checkout, not a file of the repository",
    ]
    assert {"docs/readme", "docs/api", "a/b/l"} <= set(result["changed_files"]) and remote_head(remote, BRANCH) is None


BAD_NAMES = """\
(ROOT / "docs").mkdir(exist_ok=True)
open(os.fsencode(str(ROOT / "docs")) + b"/notes-\\xff.md", "w").write("# notes\\n")
write("docs/invoice\\u202egpj.md", "# invoice\\n")
write("docs/\\u200bREADME.md", "# readme\\n")
write("docs/a\\x85b.md", "# next line\\n")
result(summary="notes")
"""


@pytest.mark.parametrize("scope", ["markdown-only", "any-file"])
def test_names_that_are_not_utf8_or_hide_characters_are_refused_and_the_result_is_still_written(
    attack: dict[str, Any], remote: Path, scope: str
) -> None:
    """A name that is not UTF-8 was pushed, and then the result could not be written (the run read as crashed with
    the commit on GitHub); bidi overrides and zero-width characters make a name read as another one."""
    proc, result = attack["run"](BAD_NAMES, write_scope=scope)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert result["reason"] == "write_scope_violation" and remote_head(remote, BRANCH) is None
    rules = sorted(rule.split(": ", 1)[1] for rule in result["violation_rules"])
    assert rules == [
        "the name holds a control character (U+0085)",
        "the name holds an invisible formatting character (U+200B)",
        "the name holds an invisible formatting character (U+202E)",
        "the name is not valid UTF-8",
    ]
    assert "'docs/notes-\\udcff.md': the name is not valid UTF-8" in result["violation_rules"]


def test_a_result_with_a_lone_surrogate_is_written_after_the_push(attack: dict[str, Any], remote: Path) -> None:
    """JSON allows `\\udcff`; the agent's summary carried one into the result, whose writing then failed after the
    push: the platform recorded a crashed runner while the commit was on GitHub."""
    body = 'write("docs/ok.md", "# ok\\n")\nresult(summary="caf\\udcff")\n'
    proc, result = attack["run"](body, write_scope="markdown-only")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (result["reason"], result["summary"]) == ("pushed", "caf\\udcff")
    assert remote_file(remote, BRANCH, "docs/ok.md") == "# ok\n"


# ------------------------------------------------------------------------------------------------ a reused workdir

NESTED_REPO_WITH_A_COMMAND = """\
evil = ROOT / "evil"
make_submodule(evil)
subprocess.run(["git", "config", "remote.origin.url", "/nonexistent"], cwd=evil, check=True)
subprocess.run(["git", "config", "remote.origin.uploadpack", "sh -c 'env > {marker}; exit 1' --"], cwd=evil, check=True)
write(".gitmodules", '[submodule "evil"]\\n\\tpath = evil\\n\\turl = ./x\\n\\tfetchRecurseSubmodules = true\\n')
write("docs/plan.md", "# plan\\n")
result(summary="plan written")
"""


def test_a_nested_repository_left_for_the_next_run_never_runs_its_command_on_the_host(
    attack: dict[str, Any], remote: Path, tmp_path: Path
) -> None:
    """The workdir is reused run after run on a branch. A refused run left a nested repository whose config names
    a command, staged as a gitlink; the next run's fetch recursed into it and ran that command outside the sandbox,
    with the token's header in its environment (over HTTPS)."""
    marker = tmp_path / "ran-on-the-host"
    _proc, first = attack["run"](NESTED_REPO_WITH_A_COMMAND.format(marker=marker), write_scope="markdown-only")
    assert first["reason"] == "write_scope_violation" and not marker.exists()
    body = 'write("docs/plan.md", "# plan v2\\n")\nresult(summary="plan rewritten")\n'
    _proc, second = attack["run"](body, write_scope="markdown-only")
    assert not marker.exists(), f"the agent's command ran on the host: {marker.read_text()[:300]}"
    assert (second["status"], second["reason"]) == ("succeeded", "pushed"), second["message"]
    assert remote_file(remote, BRANCH, "docs/plan.md") == "# plan v2\n"
    assert "evil" not in remote_paths(remote, BRANCH)


DEEP_TREES = """\
def chain(top, levels):
    # Each folder made from the one above it, so the chain goes past PATH_MAX, with a file at the bottom.
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(levels):
        os.mkdir("d", dir_fd=fd)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(os.open("bottom.md", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)
for top in (ROOT / "deep", pathlib.Path(os.environ["HOME"]) / "deep"):
    top.mkdir()
    chain(top, 3000)
    shut = top.parent / "shut"
    (shut / "in").mkdir(parents=True)
    (shut / "in" / "f.md").write_text("x")
    os.chmod(shut / "in", 0)
    os.chmod(shut, 0o100)
write("docs/a.md", "a\\n")
result(summary="ok")
"""


def test_folders_an_agent_nests_past_any_limit_do_not_stop_the_next_run_of_its_branch(
    attack: dict[str, Any], remote: Path, tmp_path: Path
) -> None:
    """The workdir and the agent's HOME are wiped at the start of the branch's next run. An agent left a chain of
    3,000 folders in each (made one inside the other, so its paths pass PATH_MAX) and folders it made unreadable:
    `shutil.rmtree` recursed once per level, and every later run of the branch ended `runner_error` with
    `RecursionError`, until an operator removed the folder by hand."""
    try:
        attack["run"](DEEP_TREES, write_scope="markdown-only")
        body = 'write("docs/plan.md", "# plan v2\\n")\nresult(summary="plan rewritten")\n'
        _proc, second = attack["run"](body, write_scope="markdown-only")
        assert (second["status"], second["reason"]) == ("succeeded", "pushed"), second["message"]
        assert remote_file(remote, BRANCH, "docs/plan.md") == "# plan v2\n"
        for leftover in (tmp_path / "workdir" / "deep", tmp_path / ".workdir.agent-home" / "deep"):
            assert not leftover.exists(), f"{leftover} was not wiped"
    finally:  # pytest's own clean-up of tmp_path recurses too
        for top in (tmp_path / "workdir", tmp_path / ".workdir.agent-home"):
            remove_tree(top)


SESSION_LINKED_TO_THE_RUNNERS_ENVIRONMENT = """\
home = pathlib.Path(os.environ["HOME"])
folder = home / ".codex" / "sessions" / "x"
folder.mkdir(parents=True, exist_ok=True)
os.symlink("/proc/self/environ", folder / "rollout-PWN.jsonl")
print(json.dumps({"type": "thread.started", "thread_id": "PWN"}), flush=True)
write("docs/a.md", "a\\n")
result(summary="ok")
"""


def test_a_session_file_linked_to_the_runners_environment_is_not_kept_for_the_next_agent(
    attack: dict[str, Any], remote: Path, tmp_path: Path
) -> None:
    """The runner keeps a Codex session for the branch's next revise, copying it out of the agent's HOME with its
    own rights. A session file linked to `/proc/self/environ` was the runner's environment, the token among it, and
    the next revise put that into the next agent's HOME."""
    sessions = tmp_path / "agent-sessions" / "codex"
    with silent_http_server() as model:
        agent = {
            "kind": "codex",
            "model": "m",
            "session_dir": str(sessions),
            "endpoint": {"base_url": f"{model}/v1", "key_env": "OPENAI_API_KEY"},
        }
        _proc, result = attack["run"](
            SESSION_LINKED_TO_THE_RUNNERS_ENVIRONMENT,
            agent=agent,
            write_scope="markdown-only",
            runner_env={"OPENAI_API_KEY": "sk-model"},
        )
    assert result["reason"] == "pushed"
    assert any("session PWN not kept: " in note and "symlink" in note for note in result["agent_notes"]), result
    kept = [p for p in sessions.rglob("*") if p.is_file()] if sessions.exists() else []
    for path in kept:
        for name, secret in SECRETS.items():
            assert secret.encode() not in path.read_bytes(), f"{name} kept for the next agent in {path}"
    assert not (sessions / "session.json").exists()


# ------------------------------------------------------------------------------------------------ resources

FORK_BOMB = """\
write("docs/bomb.md", "boom\\n")
while True:
    if os.fork() == 0:
        time.sleep(120)
        os._exit(0)
"""

MEMORY_HOG = """\
write("docs/hog.md", "hog\\n")
hog = bytearray(8 * 1024 ** 3)
result(summary="got 8 GiB")
"""


def test_a_fork_bomb_is_contained_and_the_run_fails(attack: dict[str, Any], remote: Path) -> None:
    started = time.monotonic()
    _proc, result = attack["run"](FORK_BOMB, max_processes=48, timeout_seconds=20)
    assert result["status"] in ("failed", "timed_out"), result
    assert "BlockingIOError" in result["message"] or result["status"] == "timed_out"  # fork refused at the cap
    assert time.monotonic() - started < 60
    assert remote_head(remote, BRANCH) is None
    assert subprocess.run(["true"], check=False).returncode == 0  # and the platform can still start processes


def test_a_memory_hog_is_contained_and_the_run_fails(attack: dict[str, Any], remote: Path) -> None:
    _proc, result = attack["run"](MEMORY_HOG, memory_bytes=512 * 1024 * 1024)
    assert (result["status"], result["reason"]) == ("failed", "agent_exit_code"), result
    assert "MemoryError" in result["message"]
    assert remote_head(remote, BRANCH) is None


MEMORY_IN_FILES = """\
def fill(folder, most):
    written, block = 0, b"x" * (1 << 20)
    try:
        with open(os.path.join(folder, "fill"), "wb") as out:
            while written < most:
                out.write(block)
                out.flush()
                written += len(block)
    except OSError:
        pass
    return written
tmp = fill("/tmp", 1536 << 20)
shm = fill("/dev/shm", 1536 << 20)
dev = fill("/dev", 64 << 20)
masks = {m: fill(m, 64 << 20) for m in MASKS}
write("docs/fill.md", json.dumps({"tmp": tmp, "shm": shm, "dev": dev, "masks": masks}))
result(summary="filled")
"""


def test_an_agent_cannot_fill_the_hosts_memory_through_its_tmpfs_mounts(
    attack: dict[str, Any], tmp_path: Path, remote: Path
) -> None:
    """The sandbox's `/tmp`, `/dev`, `/dev/shm` and the mounts that hide the host's private folders are tmpfs, in the
    host's memory and outside the agent's per-process data cap, and the agent owns them. Unsized, each took up to half
    the machine's memory: with a 512 MiB cap, the agent wrote 1.5 GiB to `/tmp` and to `/dev/shm` (12 GB would have
    fit, and two such mounts are the whole machine). Now `/tmp` and `/dev/shm` hold half the cap, `/dev` nothing, and
    a mask next to nothing."""
    masks = [p for p in sandbox_module._private_system_paths() if os.path.isdir(p)]
    body = f"MASKS = {masks!r}\n" + MEMORY_IN_FILES
    _proc, result = attack["run"](body, memory_bytes=512 * 1024 * 1024)
    assert result["pushed"], result["message"]
    filled = json.loads(remote_file(remote, BRANCH, "docs/fill.md"))
    assert 0 < filled["tmp"] <= 256 << 20, filled
    assert 0 < filled["shm"] <= 256 << 20 and filled["dev"] == 0, filled
    assert all(written <= sandbox_module.MASK_BYTES for written in filled["masks"].values()), filled


# ------------------------------------------------------------------------------------------------ no sandbox, no run


def test_without_bubblewrap_the_run_is_a_failed_precondition(attack: dict[str, Any], remote: Path) -> None:
    body = 'write("docs/x.md", "x\\n")\nresult(summary="x")\n'
    proc, result = attack["run"](body, runner_env={"CODEXK8S_BWRAP": "/nonexistent/bwrap"})
    assert proc.returncode == 2
    assert (result["status"], result["reason"]) == ("failed_precondition", "sandbox_unavailable")
    assert "bubblewrap" in result["message"] and "/nonexistent/bwrap" in result["message"]
    assert remote_head(remote, BRANCH) is None


def test_the_unsafe_opt_out_runs_bare_and_says_so_loudly(attack: dict[str, Any], remote: Path) -> None:
    body = 'write("docs/x.md", "x\\n")\nresult(summary="x")\n'
    env = {"CODEXK8S_UNSAFE_NO_AGENT_SANDBOX": "1", "CODEXK8S_BWRAP": "/nonexistent/bwrap"}
    proc, result = attack["run"](body, runner_env=env)
    assert proc.returncode == 0 and result["sandboxed"] is False
    assert "WITHOUT a sandbox" in proc.stdout and "WITHOUT a sandbox" in proc.stderr


def test_a_runner_whose_parent_died_cancels_and_leaves_no_agent_behind(tmp_path: Path, remote: Path) -> None:
    """The Dagster step process is killed (OOM, a node going away): the runner must not go on with the agent."""
    command = make_agent(tmp_path, SLEEPER)
    spec = make_spec(tmp_path, remote, command)
    result = tmp_path / "orphan-result.json"
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen(sys.argv[1:]); time.sleep(300)",
         *runner_cmd(spec, result)],
        cwd=REPO_ROOT, env={**os.environ, **SECRETS}, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(tmp_path / "workdir" / ".codexk8s" / "started")
        assert [p for p in agent_processes(command[1]) if p.name() != "bwrap"]
        parent.kill()
        parent.wait(timeout=10)
        outcome = json.loads(wait_for(result, seconds=30))
    finally:
        if parent.poll() is None:
            parent.kill()
    assert (outcome["status"], outcome["reason"]) == ("cancelled", "cancelled")
    deadline = time.monotonic() + 10
    while agent_processes(command[1]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert agent_processes(command[1]) == []
    assert remote_head(remote, BRANCH) is None


SLEEPER = """\
write(".codexk8s/started", "yes")
write("docs/never.md", "never pushed\\n")
time.sleep(300)
"""


# ------------------------------------------------------------------------------------------------ the output channel


TAP = """\
# A tool command of the agent (a child, same user) goes for the agent program's stdout through /proc: to write a
# forged line into it, and to read lines out of it before the runner does.
probe = r'''
import os, sys
agent = os.getppid()
found = {}
for mode, name in ((os.O_WRONLY, "write"), (os.O_RDONLY | os.O_NONBLOCK, "read")):
    try:
        fd = os.open(f"/proc/{agent}/fd/1", mode)
    except OSError as exc:
        found[name] = exc.strerror
        continue
    if name == "write":
        os.write(fd, b'{"type":"forged"}\\n')
        found[name] = "opened"
    else:
        try:
            found[name] = "stole " + repr(os.read(fd, 4096))
        except BlockingIOError:
            found[name] = "opened"
    os.close(fd)
print(repr(found), file=sys.stderr)
'''
tapped = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
print("a line of the agent's own")
sys.stdout.flush()
by_path = subprocess.run(["sh", "-c", "echo by-path > /dev/stderr"], stderr=None).returncode  # stderr is a pipe
write("docs/plan.md", "# Plan\\n")
result(summary=f"tap: {tapped.stderr.strip()} by path: {by_path}", status="done", diagnosis=None, next_step_hint=None)
"""


def test_a_tool_command_can_neither_write_into_nor_read_out_of_the_agents_output(
    attack: dict[str, Any], remote: Path
) -> None:
    """The runner reads the agent program's output (its usage reports and the cap with them) from a socket: through
    /proc a pipe opens for anyone of the agent's user, a socket does not (ENXIO)."""
    proc, result = attack["run"](TAP, write_scope="markdown-only")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tap = "{'write': 'No such device or address', 'read': 'No such device or address'}"
    assert result["summary"] == f"tap: {tap} by path: 0"  # a script's `> /dev/stderr` still works
    assert "[agent:stderr] by-path" in proc.stdout
    assert "[agent] a line of the agent's own" in proc.stdout and '"forged"' not in proc.stdout
