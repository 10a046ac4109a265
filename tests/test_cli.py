"""`codexk8s`: the installed command answers "why did my label not start anything?" and checks the config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codexk8s_pipelines.store import DatabaseUrls

REPO_ROOT = Path(__file__).resolve().parent.parent
CODEXK8S = Path(sys.executable).with_name("codexk8s")


def codexk8s(*args: str, cwd: Path = REPO_ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "CODEXK8S_CONFIG"}
    environ.update(env or {})
    return subprocess.run([str(CODEXK8S), *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60)


def explain_json(*args: str, **kw: object) -> dict[str, object]:
    result = codexk8s("triggers", "explain", *args, "--json", **kw)  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def test_the_issue_example_runs_stage_dev() -> None:
    result = codexk8s(
        "triggers",
        "explain",
        "--labels",
        "run:dev,bug",
        "--added",
        "run:dev",
        "--actor",
        "alice",
        "--permission",
        "write",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:3] == [
        "decision: run",
        "reason:   trigger_label",
        "          run:dev added by alice starts stage_dev",
    ]
    assert "stage:    dev (revise: no), role: dev, job: stage_dev" in result.stdout


def test_json_has_the_documented_keys() -> None:
    data = explain_json("--labels", "run:dev,bug", "--added", "run:dev", "--actor", "alice", "--permission", "write")
    assert {"kind", "stage", "revise", "role", "reason"} <= set(data)
    assert (data["kind"], data["stage"], data["revise"], data["role"], data["reason"]) == (
        "run",
        "dev",
        False,
        "dev",
        "trigger_label",
    )


@pytest.mark.parametrize(
    ("args", "kind", "reason"),
    [
        (
            ["--labels", "run:dev,run:qa", "--added", "run:qa", "--permission", "admin"],
            "conflict",
            "multiple_trigger_labels",
        ),
        (["--labels", "run:dev", "--added", "run:dev", "--permission", "read"], "ignored", "actor_not_permitted"),
        (["--labels", "run:qa", "--added", "run:qa", "--permission", "write"], "ignored", "dev_run_missing"),
        (["--labels", "bug", "--added", "bug", "--permission", "write"], "ignored", "not_a_trigger_label"),
        (
            ["--pr", "--labels", "need:reviewer", "--added", "need:reviewer", "--permission", "write"],
            "run",
            "reviewer_requested",
        ),
        (
            ["--pr", "--review", "approved", "--labels", "run:dev", "--permission", "write"],
            "ignored",
            "review_not_changes_requested",
        ),
        (
            ["--pr", "--review", "changes_requested", "--labels", "run:plan,run:dev", "--permission", "write"],
            "ignored",
            "stage_ambiguous",
        ),
        (["--pr", "--review", "changes_requested", "--permission", "write"], "ignored", "stage_not_resolved"),
    ],
)
def test_decisions_and_reasons(args: list[str], kind: str, reason: str) -> None:
    data = explain_json("--actor", "alice", *args)
    assert (data["kind"], data["reason"]) == (kind, reason)


def test_explain_a_forks_pull_request() -> None:
    review = ["--pr", "--review", "changes_requested", "--labels", "run:dev", "--actor", "bob", "--permission", "write"]
    assert explain_json(*review)["kind"] == "run"
    assert explain_json(*review, "--fork")["reason"] == "pull_request_from_fork"
    wrong = codexk8s("triggers", "explain", "--pr", "--added", "need:reviewer", "--actor", "alice", "--fork")
    assert wrong.returncode == 2 and "--fork describes the branch of a reviewed pull request" in wrong.stderr


def test_review_revises_the_stage_of_the_issue_then_of_the_history() -> None:
    by_issue = explain_json(
        "--pr",
        "--review",
        "changes_requested",
        "--issue-labels",
        "run:design",
        "--actor",
        "bob",
        "--permission",
        "write",
    )
    assert (by_issue["stage"], by_issue["revise"], by_issue["resolved_from"]) == ("design", True, "issue_labels")
    by_history = explain_json(
        "--pr", "--review", "changes_requested", "--history", "qa,dev", "--actor", "bob", "--permission", "write"
    )
    assert (by_history["stage"], by_history["trigger_label"]) == ("qa", "run:qa:revise")


def test_a_bot_is_refused_whatever_its_permission() -> None:
    data = explain_json(
        "--labels",
        "run:dev",
        "--added",
        "run:dev",
        "--actor",
        "ci[bot]",
        "--actor-type",
        "Bot",
        "--permission",
        "admin",
    )
    assert data["kind"] == "ignored" and data["reason"] == "actor_not_permitted"
    assert "only humans" in str(data["message"])


def test_the_sample_configuration_puts_release_behind_an_approval() -> None:
    args = ("--labels", "run:release", "--added", "run:release", "--dev-run", "--actor", "alice")
    waiting = explain_json(*args, "--permission", "write")
    assert waiting["kind"] == "approval_required"
    assert "maintain" in str(waiting["approvers"])
    assert explain_json(*args, "--permission", "maintain")["kind"] == "run"


def test_an_explicit_config_file_changes_the_answer(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("triggers:\n  min_permission: read\nstages:\n  dev: {label: 'go:dev'}\n")
    data = explain_json(
        "--labels", "go:dev", "--added", "GO:DEV ", "--actor", "al", "--permission", "read", "--config", str(config)
    )
    assert (data["kind"], data["stage"]) == ("run", "dev")


def test_bad_arguments_and_bad_config_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    result = codexk8s("triggers", "explain", "--added", "run:dev", "--actor", "a", "--permission", "owner")
    assert result.returncode == 2 and "'owner' is not a permission" in result.stderr
    result = codexk8s("triggers", "explain", "--actor", "a", "--permission", "write")
    assert result.returncode == 2 and "--added" in result.stderr
    result = codexk8s("triggers", "explain", "--review", "changes_requested", "--actor", "a")
    assert result.returncode == 2 and "add --pr" in result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("stages:\n  deploy: {}\n")
    result = codexk8s("triggers", "explain", "--added", "run:dev", "--actor", "a", "--config", str(broken))
    assert result.returncode == 2
    assert f"{broken}: stages.deploy: unknown stage 'deploy'" in result.stderr


def test_config_check(tmp_path: Path) -> None:
    ok = codexk8s("config", "check")
    assert ok.returncode == 0 and ok.stdout.startswith("codexk8s.yaml: valid — 1 repositories")
    broken = tmp_path / "broken.yaml"
    broken.write_text("triggers: {min_permission: 7}\n")
    bad = codexk8s("config", "check", str(broken))
    assert bad.returncode == 2 and f"{broken}: triggers.min_permission:" in bad.stderr


def test_config_check_refuses_a_repeated_key_and_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    """A `stages:` block appended at the bottom replaced the sample's, release approval gate included, and
    `config check` said valid; a Latin-1 byte ended it in a traceback. Each is now one line naming file and line."""
    sample = (REPO_ROOT / "codexk8s.yaml").read_text(encoding="utf-8")
    first = sample.splitlines().index("stages:") + 1
    appended = tmp_path / "codexk8s.yaml"
    appended.write_text(sample + "\nstages:\n  qa:\n    timeout_minutes: 30\n", encoding="utf-8")
    result = codexk8s("config", "check", str(appended))
    assert (result.returncode, result.stdout) == (2, "")
    second = len(sample.splitlines()) + 2
    assert result.stderr == f"{appended}: line {second}: key 'stages' repeated (first at line {first})\n"

    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(sample.encode("utf-8") + "# owner: José\n".encode("latin-1"))
    result = codexk8s("config", "check", str(latin1))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"{latin1}: line {second - 1}: not UTF-8 (byte 0xe9); save the file as UTF-8\n"


def _fake_make_run(state: Path, database_url: str) -> subprocess.Popen[bytes]:
    """A live process that looks like `codexk8s dev` to the record's check, and its `dev.json` in `state`."""
    from codexk8s_pipelines.platform_record import RunningPlatform, write_record

    state.mkdir(parents=True, exist_ok=True)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "codexk8s", "dev"])
    record = RunningPlatform(
        owner.pid, owner.pid, "http://127.0.0.1:1", database_url, str(state / "dagster"), str(state)
    )
    write_record(state, record)
    return owner


def _without_platform_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CODEXK8S_", "DAGSTER_"))}


def test_db_migrate_migrates_the_running_make_run_as_its_migrator_and_refuses_in_one_line_elsewhere(
    bare_database: DatabaseUrls, tmp_path: Path
) -> None:
    """`make run` records the application role's URL, which the CLI adopts; `db migrate` with it ended in a
    MigrationPermissionError traceback, and doctor's fix said to run exactly that."""
    from codexk8s_pipelines.store.migrations import available_migrations

    env = _without_platform_env()
    # Someone else's database, its application role's URL: the refusal is one line, not a traceback.
    refused = codexk8s("db", "migrate", env={**env, "CODEXK8S_DATABASE_URL": bare_database.app}, cwd=tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert len(refused.stderr.splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith(
        "codexk8s db migrate: the database role may not change the schema (pending migrations: 1,"
    )

    state = tmp_path / "state"
    owner = _fake_make_run(state, bare_database.app)
    try:
        for given in ({}, {"CODEXK8S_DATABASE_URL": bare_database.app}):  # adopted, or exported by `codexk8s env`
            migrated = codexk8s("db", "migrate", env={**env, "CODEXK8S_HOME": str(state), **given}, cwd=tmp_path)
            assert migrated.returncode == 0, migrated.stderr
            latest = max(m.version for m in available_migrations())
            assert migrated.stdout.startswith(f"schema version {latest}; applied now: ")
            assert migrated.stdout.splitlines()[0].endswith("; rights of role codexk8s_app granted")
        exported = codexk8s("env", env={**env, "CODEXK8S_HOME": str(state)}, cwd=tmp_path)
        assert f"export CODEXK8S_DATABASE_URL='{bare_database.app}'" in exported.stdout.splitlines()
        assert "codexk8s_migrator" not in exported.stdout + (state / "dev.json").read_text()
    finally:
        owner.kill()
        owner.wait()


def test_an_embedded_postgresql_that_does_not_start_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from codexk8s_pipelines import cli, local_stack
    from codexk8s_pipelines.store.embedded import EmbeddedPostgresError

    def broken(**_: object) -> int:
        raise EmbeddedPostgresError("embedded PostgreSQL in /x/pgdata did not start: FATAL:  lock file exists\n  HINT")

    monkeypatch.setattr(local_stack, "run_local_stack", broken)
    assert cli.main(["dev"]) == 1
    assert capsys.readouterr().err == (
        "codexk8s dev: embedded PostgreSQL in /x/pgdata did not start: FATAL: lock file exists HINT\n"
    )


def test_env_from_a_subdirectory_finds_the_checkouts_running_platform(tmp_path: Path) -> None:
    """The state directory was `./.codexk8s` of the working directory: from `docs/` the CLI said no platform runs.
    Without CODEXK8S_HOME it is now the checkout's (the directory with workspace.yaml and .codexk8s or this project's
    pyproject.toml, walking up); CODEXK8S_HOME, when set (the Kubernetes pods set it), still means exactly that."""
    checkout = tmp_path / "checkout"
    deep = checkout / "docs" / "adr"
    deep.mkdir(parents=True)
    (checkout / "workspace.yaml").write_text("load_from: []\n", encoding="utf-8")
    (checkout / "pyproject.toml").write_text('[project]\nname = "codexk8s-pipelines"\n', encoding="utf-8")
    state = checkout / ".codexk8s"
    owner = _fake_make_run(state, "postgresql://codexk8s_app:@/codexk8s?host=/nowhere")
    env = _without_platform_env()
    try:
        for cwd in (checkout, deep):
            found = codexk8s("env", env=env, cwd=cwd)
            assert found.returncode == 0, found.stderr
            assert f"export CODEXK8S_HOME={state}" in found.stdout.splitlines()
        # Without this project's pyproject.toml, `.codexk8s` next to workspace.yaml marks the checkout as well.
        (checkout / "pyproject.toml").write_text('[project]\nname = "something-else"\n', encoding="utf-8")
        assert codexk8s("env", env=env, cwd=deep).returncode == 0
        # CODEXK8S_HOME set: that directory and no other, wherever the command runs.
        elsewhere = tmp_path / "elsewhere"
        pinned = codexk8s("env", env={**env, "CODEXK8S_HOME": str(elsewhere)}, cwd=deep)
        assert pinned.returncode == 1 and f"(state in {elsewhere})" in pinned.stderr
    finally:
        owner.kill()
        owner.wait()
    # Outside any checkout, the working directory's `.codexk8s`, as before.
    outside = codexk8s("env", env=env, cwd=tmp_path)
    assert outside.returncode == 1 and f"(state in {tmp_path / '.codexk8s'})" in outside.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["mcp", "serve", "--transport", "http", "--port", "99999"],
            "argument --port: 99999 is not a port number (1 to 65535)",
        ),
        (["mcp", "serve", "--port", "0"], "argument --port: 0 is not a port number (1 to 65535)"),
        (["webhook", "serve", "--port", "http"], "argument --port: 'http' is not a port number"),
        (  # no workspace: even a port taken for valid starts nothing
            ["dev", "--port", "70000", "--workspace", "/nonexistent/workspace.yaml"],
            "argument --port: 70000 is not a port number (1 to 65535)",
        ),
        (["mcp", "token", "--run", "a/b#1:run:dev:1", "--ttl", "-5"], "argument --ttl: -5 is not ≥ 1"),
    ],
)
def test_ports_and_token_lifetimes_out_of_range_are_usage_errors(args: list[str], message: str) -> None:
    """`mcp serve --port 99999` was accepted (and failed later, deep in the server), `mcp token --ttl -5` minted a
    token that had expired before it was printed."""
    result = codexk8s(*args, env={"CODEXK8S_MCP_SECRET": "cli-test-secret-0123456789abcdef"})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[-1].endswith(message), result.stderr


def test_mcp_token_refuses_a_repository_that_is_not_one(tmp_path: Path) -> None:
    env = {"CODEXK8S_MCP_SECRET": "cli-test-secret-0123456789abcdef", "CODEXK8S_DATABASE_URL": ""}
    args = ("mcp", "token", "--run", "manual-1", "--issue", "3")
    refused = codexk8s(*args, "--repository", "not a repo", env=env)
    assert (refused.returncode, refused.stdout) == (2, "")
    assert refused.stderr == (
        "codexk8s mcp token: --repository 'not a repo' is not a repository: give owner/name, or the name of a local "
        "checkout codexk8s.yaml watches\n"
    )
    # GitHub's owner/name; the sample codexk8s.yaml watches this checkout, named after its directory (`main`).
    for repository in ("acme/shop", REPO_ROOT.name.lower()):
        minted = codexk8s(*args, "--repository", repository, env=env)
        assert minted.returncode == 0 and minted.stdout.startswith("ck8s"), minted.stderr
