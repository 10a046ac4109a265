"""`codexk8s doctor`: a healthy deployment passes every check; each broken piece is exactly one FAIL line with its fix.

The deployment is real where it can be: the embedded PostgreSQL (migrated, pgvector), the fake GitHub over HTTP
with PyGithub, the kmock Kubernetes emulator with the kubernetes client. Nothing is mocked inside doctor.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import kmock
import psycopg
import pytest
import yaml

from codexk8s_pipelines import doctor as doctor_module
from codexk8s_pipelines.cli import main
from codexk8s_pipelines.store import DatabaseUrls, EmbeddedPostgres
from codexk8s_pipelines.store.migrations import available_migrations
from tests.conftest import database_url_for
from tests.github_server import DEFAULT_TOKEN_LOGIN, app_key_pair

from .conftest import MODEL_SECRET, NAMESPACE, PINNED_IMAGE, REPO, SECRET, SECRETS, Deployment

CODEXK8S = Path(sys.executable).with_name("codexk8s")
NAMES = [
    "environment",
    "config",
    "catalog",
    "periodic.osv_database",
    "database.url",
    "database.connect",
    "database.migrations",
    "database.pgvector",
    "database.role",
    "github.credentials",
    "github.auth",
    f"github.repo {REPO}",
    "github.rate_limit",
    "kubernetes.api",
    "kubernetes.namespace",
    "kubernetes.rbac",
    "kubernetes.service_account",
    "kubernetes.secret",
    "kubernetes.model_keys",
    "kubernetes.images",
    "kubernetes.mcp",
]
LOCAL_AGENT_NAMES = ["agents.commands", "agents.sandbox", "agents.model_keys"]
LATEST = max(m.version for m in available_migrations())
LINE = re.compile(r"^(ok  |FAIL|skip|warn) (?P<name>[^:]+): ")


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = main(["doctor", *args])
    return code, capsys.readouterr().out.splitlines()


def names(lines: list[str]) -> list[str]:
    found = []
    for line in lines:
        match = LINE.match(line)
        assert match, f"not a doctor line: {line!r}"
        found.append(match.group("name"))
    return found


def with_status(lines: list[str], label: str) -> list[str]:
    return [line for line in lines if line.startswith(label + " ")]


def only_fail(lines: list[str]) -> str:
    fails = with_status(lines, "FAIL")
    assert len(fails) == 1, "\n".join(lines)
    return fails[0]


@pytest.fixture
def empty_database_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A second, never-migrated database on the embedded server."""
    assert pg_server.url is not None
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield database_url_for(pg_server.url, name)
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- healthy ---------------------------------------------------------------------------------------------------
def test_a_healthy_deployment_passes_every_check(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = doctor(capsys)

    assert code == 0, "\n".join(lines)
    assert names(lines) == NAMES
    assert all(line.startswith("ok   ") for line in lines), "\n".join(lines)
    assert "ok   environment: kubernetes (CODEXK8S_ENV=kubernetes)" in lines
    assert f"ok   database.migrations: schema version {LATEST} (latest)" in lines
    assert any(re.fullmatch(r"ok   database\.pgvector: available \(\S+\), installed \(\S+\)", x) for x in lines)
    assert f"ok   github.repo {REPO}: reachable; the token may push (push, triage, pull)" in lines
    assert f"ok   kubernetes.namespace: {NAMESPACE} exists (Active)" in lines
    assert (
        "ok   kubernetes.rbac: may create pods, get pods, list pods, delete pods, get pods/log, create secrets "
        f"in namespace {NAMESPACE}"
    ) in lines
    assert f"ok   kubernetes.service_account: codexk8s-agent exists in {NAMESPACE}" in lines
    assert f"ok   kubernetes.secret: {SECRET} exists in {NAMESPACE} (metadata only; its keys are not read)" in lines
    assert f"ok   kubernetes.images: 8 agents, images pinned: {PINNED_IMAGE} (" in "\n".join(lines)
    # One SelfSubjectAccessReview per verb the run pod needs, each for the agent namespace.
    asked = [(r["verb"], r["resource"], r.get("subresource") or "", r["namespace"]) for r in deployment.cluster.reviews]
    assert asked == [(v, r, s, NAMESPACE) for v, r, s in doctor_module.POD_VERBS]
    # The Secret is asked for as metadata only.
    secret_reads = deployment.cluster.run(
        lambda em: [dict(r.headers) for r in list(em) if r.url.path.endswith(f"/secrets/{SECRET}")]
    )
    assert len(secret_reads) == 1
    assert "as=PartialObjectMetadata" in secret_reads[0]["Accept"]
    assert "Z2hwX25vdF9hX3JlYWxfdG9rZW4=" not in "\n".join(lines)


def test_json_output_has_every_check(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = doctor(capsys, "--json")

    assert code == 0
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["ok"] is True and report["failed"] == 0
    assert [c["name"] for c in report["checks"]] == NAMES
    assert {c["status"] for c in report["checks"]} == {"ok"}
    assert set(report["checks"][0]) == {"name", "status", "message", "fix"}


def test_the_installed_command_runs_doctor(deployment: Deployment) -> None:
    result = subprocess.run(
        [str(CODEXK8S), "doctor"], env=dict(os.environ), capture_output=True, text=True, timeout=120, check=False
    )

    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert names(lines) == NAMES
    assert all(line.startswith("ok   ") for line in lines), result.stdout


def test_the_installed_command_exits_1_on_a_failure(deployment: Deployment) -> None:
    env = {**os.environ, "CODEXK8S_GITHUB_TOKEN": "revoked-token-123"}
    result = subprocess.run(
        [str(CODEXK8S), "doctor", "--skip", "kubernetes"], env=env, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert only_fail(result.stdout.splitlines()).startswith("FAIL github.auth: GitHub answered 401")
    assert "revoked-token-123" not in result.stdout + result.stderr


# -- database --------------------------------------------------------------------------------------------------
def test_database_url_unset(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.set("CODEXK8S_DATABASE_URL", None)
    code, lines = doctor(capsys)

    assert code == 1
    assert only_fail(lines) == (
        "FAIL database.url: CODEXK8S_DATABASE_URL is not set — fix: set CODEXK8S_DATABASE_URL to the platform "
        "database's URL (postgresql://user@host:5432/dbname, with :password after the user); locally, "
        "`codexk8s dev` starts an embedded database and sets it"
    )
    assert not [n for n in names(lines) if n.startswith("database.") and n != "database.url"]


def test_database_unreachable(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    password = "S3cret-Passw0rd"
    deployment.set("CODEXK8S_DATABASE_URL", f"postgresql://doctor:{password}@127.0.0.1:1/platform")
    code, lines = doctor(capsys)

    assert code == 1
    assert "ok   database.url: CODEXK8S_DATABASE_URL is set (postgresql://[redacted]@127.0.0.1:1/platform)" in lines
    assert re.fullmatch(
        r"FAIL database\.connect: cannot connect to postgresql://\[redacted\]@127\.0\.0\.1:1/platform: "
        r".*[Cc]onnection refused.* — fix: check that the server is running and reachable from here, "
        r"and the host and port in CODEXK8S_DATABASE_URL",
        only_fail(lines),
    )
    assert "database.migrations" not in names(lines)
    assert password not in "\n".join(lines)


def test_database_not_migrated(
    deployment: Deployment, empty_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.set("CODEXK8S_DATABASE_URL", empty_database_url)
    code, lines = doctor(capsys)

    pending = ", ".join(str(m.version) for m in available_migrations())
    assert code == 1
    assert only_fail(lines) == (
        f"FAIL database.migrations: schema version 0, latest is {LATEST} (pending: {pending}) "
        "— fix: codexk8s db migrate as the schema's owner: the migrator role's URL in CODEXK8S_DATABASE_URL, not the "
        "application role's (on Kubernetes the chart's migration Job runs it at each helm upgrade)"
    )
    assert any(
        re.fullmatch(r"ok   database\.pgvector: available \(\S+\), not installed in this database yet", x)
        for x in lines
    )


def test_a_database_role_that_could_rewrite_the_audit_is_a_warning(
    deployment: Deployment,
    platform_database: DatabaseUrls,
    pg_server: EmbeddedPostgres,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert "database.role: codexk8s_app: no superuser, owns nothing" in "\n".join(doctor(capsys)[1])

    deployment.set("CODEXK8S_DATABASE_URL", platform_database.migrator)  # the schema owner's URL given to the platform
    code, lines = doctor(capsys)
    assert code == 0  # a warning, not a failure: the platform works, the audit is weaker
    (line,) = [x for x in lines if x.startswith("warn database.role")]
    assert line.startswith(
        "warn database.role: codexk8s_migrator owns the audit table flow_events: it can disable its triggers or "
        "drop it — fix: connect the platform as a role that owns nothing and is no superuser (e.g. codexk8s_app)"
    )

    assert pg_server.url is not None
    deployment.set("CODEXK8S_DATABASE_URL", database_url_for(pg_server.url, platform_database.name))
    code, lines = doctor(capsys)
    assert "warn database.role: postgres is a superuser: it can switch off the audit trail's append-only triggers" in (
        "\n".join(lines)
    )


@pytest.mark.parametrize("where", ["userinfo", "query"])
def test_the_database_password_never_appears(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    password = "Sup3r-Secret-pw-" + uuid.uuid4().hex[:8]
    base = deployment.database_url  # postgresql://<role>:@/<db>?host=<socket dir>: trust auth ignores a password
    url = base.replace(":@", f":{password}@", 1) if where == "userinfo" else f"{base}&password={password}"
    assert password in url
    deployment.set("CODEXK8S_DATABASE_URL", url)

    code, lines = doctor(capsys)
    json_code, json_lines = doctor(capsys, "--json")

    assert code == 0 and json_code == 0, "\n".join(lines)
    output = "\n".join(lines + json_lines)
    assert password not in output
    assert "[redacted]" in output
    assert any(line.startswith("ok   database.connect: connected to postgresql://") for line in lines)


# -- github ----------------------------------------------------------------------------------------------------
def test_github_token_refused(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.set("CODEXK8S_GITHUB_TOKEN", "expired-token-abc")
    code, lines = doctor(capsys)

    assert code == 1
    assert only_fail(lines) == (
        "FAIL github.auth: GitHub answered 401 (Bad credentials) to the token "
        "— fix: the token is invalid or expired; set CODEXK8S_GITHUB_TOKEN to a valid one"
    )
    assert f"skip github.repo {REPO}: the credentials were refused" in lines
    assert "expired-token-abc" not in "\n".join(lines)


def test_github_repository_not_accessible(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.watch(REPO, "acme/hidden")
    code, lines = doctor(capsys)

    assert code == 1
    assert only_fail(lines) == (
        "FAIL github.repo acme/hidden: acme/hidden is not found or not visible to the token (404) "
        "— fix: grant the token/App access to acme/hidden"
    )
    assert f"ok   github.repo {REPO}: reachable; the token may push (push, triage, pull)" in lines


def _configure_default_branch(deployment: Deployment, branch: str) -> None:
    config = deployment.tmp_path / "codexk8s.yaml"
    config.write_text(yaml.safe_dump({"repositories": [{"github": REPO, "default_branch": branch}]}), encoding="utf-8")


def _use_the_app(deployment: Deployment) -> None:
    private_pem, public_pem = app_key_pair()
    deployment.github.state.add_app(4242, public_pem, repos=[REPO])
    deployment.set("CODEXK8S_GITHUB_TOKEN", None)
    deployment.set("CODEXK8S_GITHUB_APP_ID", "4242")
    deployment.set("CODEXK8S_GITHUB_APP_PRIVATE_KEY", private_pem)


@pytest.mark.parametrize("credentials", ["token", "app"])
def test_a_configured_default_branch_that_is_not_githubs_is_a_warning(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], credentials: str
) -> None:
    """codexk8s.yaml still says `main` after the branch was renamed on GitHub (main -> trunk): stage runs start from
    `main`, which is gone, until someone notices. The doctor says so, naming both and the setting."""
    deployment.github.state.repo(REPO).default_branch = "trunk"
    _configure_default_branch(deployment, "main")
    if credentials == "app":
        _use_the_app(deployment)
    code, lines = doctor(capsys)

    assert code == 0, "\n".join(lines)
    assert with_status(lines, "warn") == [
        f"warn github.default_branch {REPO}: codexk8s.yaml sets default_branch 'main' for {REPO}, but GitHub's "
        "default branch is 'trunk': stage runs start from 'main' and open their pull requests into it — fix: remove "
        f"default_branch of {REPO} from codexk8s.yaml to follow GitHub (or set it to 'trunk'); keep it only to open "
        "pull requests into another branch on purpose"
    ]


def test_a_configured_default_branch_that_is_githubs_says_nothing_more(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.github.state.repo(REPO).default_branch = "trunk"
    _configure_default_branch(deployment, "trunk")
    code, lines = doctor(capsys)

    assert code == 0 and names(lines) == NAMES, "\n".join(lines)


@pytest.mark.parametrize("level", ["read", "triage"])
def test_github_read_only_permission(deployment: Deployment, capsys: pytest.CaptureFixture[str], level: str) -> None:
    deployment.github.state.set_permission(REPO, DEFAULT_TOKEN_LOGIN, level)
    code, lines = doctor(capsys)

    assert code == 1
    assert only_fail(lines) == (
        f"FAIL github.repo {REPO}: the token has {level} access only (push: false); the platform writes labels, "
        f"comments and pull requests — fix: give the token write (push) access to {REPO}"
    )


def test_github_rate_limit_exhausted(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.github.state.rate_limit_remaining = 0
    code, lines = doctor(capsys)

    assert code == 1
    fails = with_status(lines, "FAIL")
    assert fails[0].startswith(f"FAIL github.repo {REPO}: rate limited by GitHub (403: API rate limit exceeded")
    assert fails[0].endswith("— fix: retry after the reset")
    assert re.fullmatch(
        r"FAIL github\.rate_limit: 0 of 5000 requests left this hour, resets at \d\d:\d\d UTC — fix: wait for the "
        r"reset, or spread the load \(fewer watched repositories, longer ticks\)",
        fails[1],
    )
    assert len(fails) == 2


def test_a_github_answer_nested_too_deeply_is_one_warning(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """GitHub's answer about the repository is `[` 200,000 times: json's decoder raised RecursionError, and the whole
    github group became one "the check itself failed" line, its other checks lost."""
    deployment.github.state.inject("deep_json", path_regex=rf"^/repos/{REPO}$")
    code, lines = doctor(capsys)

    assert code == 0, "\n".join(lines)
    assert names(lines) == NAMES
    assert with_status(lines, "warn") == [
        f"warn github.repo {REPO}: reachable, but GitHub's answer to GET /repos/{REPO} is not JSON the platform can "
        "read: nested too deeply (write access not verified) — fix: retry later; if it persists, check that "
        "CODEXK8S_GITHUB_API_URL points at GitHub's API"
    ]


def test_github_credentials_missing(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.set("CODEXK8S_GITHUB_TOKEN", None)
    code, lines = doctor(capsys)

    assert code == 1
    assert only_fail(lines) == (
        "FAIL github.credentials: no GitHub credentials: set CODEXK8S_GITHUB_TOKEN, or CODEXK8S_GITHUB_APP_ID and "
        "CODEXK8S_GITHUB_APP_PRIVATE_KEY (1 `github:` repositories are watched) — fix: set CODEXK8S_GITHUB_TOKEN, "
        "or CODEXK8S_GITHUB_APP_ID and CODEXK8S_GITHUB_APP_PRIVATE_KEY (the PEM text or a path to it)"
    )


def test_github_app_installed_on_the_repository(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    private_pem, public_pem = app_key_pair()
    installation = deployment.github.state.add_app(4242, public_pem, repos=[REPO])
    deployment.set("CODEXK8S_GITHUB_TOKEN", None)
    deployment.set("CODEXK8S_GITHUB_APP_ID", "4242")
    deployment.set("CODEXK8S_GITHUB_APP_PRIVATE_KEY", private_pem)

    code, lines = doctor(capsys)

    assert code == 0, "\n".join(lines)
    assert f"ok   github.credentials: GitHub App 4242 (CODEXK8S_GITHUB_APP_ID) at {deployment.github.url}" in lines
    assert "ok   github.auth: the App's JWT and installation tokens are accepted" in lines
    assert (
        f"ok   github.repo {REPO}: reachable; installation {installation} may write issues and pull requests"
    ) in lines
    assert "BEGIN PRIVATE KEY" not in "\n".join(lines)


def test_github_app_not_installed_on_the_repository(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    private_pem, public_pem = app_key_pair()
    deployment.github.state.add_app(4242, public_pem, repos=["acme/other"])
    deployment.set("CODEXK8S_GITHUB_TOKEN", None)
    deployment.set("CODEXK8S_GITHUB_APP_ID", "4242")
    deployment.set("CODEXK8S_GITHUB_APP_PRIVATE_KEY", private_pem)

    code, lines = doctor(capsys)

    assert code == 1
    assert only_fail(lines) == (
        f"FAIL github.repo {REPO}: App 4242 is not installed on {REPO} (404) "
        f"— fix: grant the token/App access to {REPO}"
    )


# -- kubernetes ------------------------------------------------------------------------------------------------
def test_agent_namespace_missing(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.cluster.namespaces.clear()
    code, lines = doctor(capsys)

    assert code == 1
    assert only_fail(lines) == (
        f"FAIL kubernetes.namespace: namespace {NAMESPACE} does not exist — fix: create it "
        f"(kubectl create namespace {NAMESPACE}), or set CODEXK8S_K8S_NAMESPACE to the agent namespace"
    )
    assert f"skip kubernetes.secret: namespace {NAMESPACE} does not exist" in lines
    assert f"skip kubernetes.service_account: namespace {NAMESPACE} does not exist" in lines


@pytest.mark.parametrize(
    ("denied", "expected"),
    [
        (
            ("delete", "pods", ""),
            f'FAIL kubernetes.rbac: may not delete pods in namespace {NAMESPACE} — fix: add verb "delete" on "pods" '
            f"to the platform's Role in {NAMESPACE} (kubectl auth can-i delete pods -n {NAMESPACE})",
        ),
        (
            ("get", "pods", "log"),
            f'FAIL kubernetes.rbac: may not get pods/log in namespace {NAMESPACE} — fix: add verb "get" on '
            f'"pods/log" to the platform\'s Role in {NAMESPACE} (kubectl auth can-i get pods --subresource=log '
            f"-n {NAMESPACE})",
        ),
    ],
)
def test_a_missing_rbac_verb(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], denied: tuple[str, str, str], expected: str
) -> None:
    deployment.cluster.denied.add(denied)
    code, lines = doctor(capsys)

    assert code == 1
    assert only_fail(lines) == expected


def test_every_missing_verb_is_its_own_line(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.cluster.denied.update({("create", "pods", ""), ("delete", "pods", "")})
    code, lines = doctor(capsys)

    assert code == 1
    fails = with_status(lines, "FAIL")
    assert [f.split(" — ")[0] for f in fails] == [
        f"FAIL kubernetes.rbac: may not create pods in namespace {NAMESPACE}",
        f"FAIL kubernetes.rbac: may not delete pods in namespace {NAMESPACE}",
    ]


def test_token_secret_missing(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.cluster.delete_secret()
    code, lines = doctor(capsys)

    assert code == 1
    assert only_fail(lines) == (
        f"FAIL kubernetes.secret: secret {SECRET} (the GitHub token of the agent pods) does not exist in {NAMESPACE} "
        f"— fix: create it: kubectl -n {NAMESPACE} create secret generic {SECRET} --from-literal=token=<token> "
        "(or set CODEXK8S_K8S_TOKEN_SECRET to the existing one)"
    )


def test_secrets_not_readable_is_not_a_failure(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.cluster.forbid_secrets()
    code, lines = doctor(capsys)

    assert code == 0, "\n".join(lines)
    assert (
        f"skip kubernetes.secret: could not be checked: the platform may not read secrets in {NAMESPACE} (403), "
        f"which it does not need; check by hand: kubectl -n {NAMESPACE} get secret {SECRET}"
    ) in lines


def test_a_kubernetes_error_nested_too_deeply_is_still_its_status(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """The API refuses the Secrets with a body of `[` 200,000 times: reading its message raised RecursionError, and
    the whole kubernetes group became one "the check itself failed" line. The 403 is what counts."""
    deployment.cluster.run(lambda em: em[kmock.action.FETCH, SECRETS] << 403 << b"[" * 200_000)
    code, lines = doctor(capsys)

    assert code == 0, "\n".join(lines)
    assert names(lines) == NAMES
    assert (
        f"skip kubernetes.secret: could not be checked: the platform may not read secrets in {NAMESPACE} (403), "
        f"which it does not need; check by hand: kubectl -n {NAMESPACE} get secret {SECRET}"
    ) in lines


def test_agent_image_tagged_latest_is_a_warning(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.catalog({"dev": "ghcr.io/acme/dev-agent:latest", "qa": "registry.local:5000/qa-agent"})
    code, lines = doctor(capsys)

    assert code == 0, "\n".join(lines)
    fix = "pin a version tag or a digest in the agent catalog ($CODEXK8S_AGENT_CATALOG)"
    assert with_status(lines, "warn") == [
        "warn kubernetes.images: ghcr.io/acme/dev-agent:latest uses the tag latest (agents: dev); runs may differ "
        f"as the tag moves — fix: {fix}",
        "warn kubernetes.images: registry.local:5000/qa-agent has no tag, so latest (agents: qa); runs may differ "
        f"as the tag moves — fix: {fix}",
    ]
    assert not with_status(lines, "FAIL")


def test_kubernetes_api_unreachable(deployment: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = yaml.safe_load(deployment.cluster.kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:1"
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(yaml.safe_dump(config))

    code, lines = doctor(capsys, "--kubeconfig", str(dead))

    assert code == 1
    assert re.fullmatch(
        rf"FAIL kubernetes\.api: cannot reach http://127\.0\.0\.1:1 via kubeconfig {re.escape(str(dead))} "
        r"\(--kubeconfig\): .*[Cc]onnection refused.* — fix: check the API server address in the kubeconfig "
        r"and that this host can reach it",
        only_fail(lines),
    )
    assert "skip kubernetes.namespace: the Kubernetes API is not reachable" in lines


def test_local_environment_skips_kubernetes(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.set("CODEXK8S_ENV", None)
    deployment.local_agents()
    code, lines = doctor(capsys)

    assert code == 0, "\n".join(lines)
    assert lines[-1] == "skip kubernetes: CODEXK8S_ENV=local; pass --kubernetes to check a cluster anyway"
    assert not [n for n in names(lines) if n.startswith("kubernetes.")]
    assert names(lines)[-4:-1] == LOCAL_AGENT_NAMES

    code, lines = doctor(capsys, "--kubernetes")
    assert code == 0
    at = NAMES.index("kubernetes.api")
    assert names(lines) == [*NAMES[:at], *LOCAL_AGENT_NAMES, *NAMES[at:]]


def test_skip_groups(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.set("CODEXK8S_DATABASE_URL", None)  # broken, but skipped
    code, lines = doctor(capsys, "--skip", "database,kubernetes")

    assert code == 0
    assert "skip database: skipped (--skip)" in lines
    assert lines[-1] == "skip kubernetes: skipped (--skip)"
    assert not [n for n in names(lines) if n.startswith(("database.", "kubernetes."))]


def test_bad_arguments_exit_2(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["doctor", "--skip", "network"])

    assert exc.value.code == 2
    assert "unknown check group(s): network" in capsys.readouterr().err


# -- config ----------------------------------------------------------------------------------------------------
def test_config_errors_name_the_file_and_key(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    config = deployment.tmp_path / "broken.yaml"
    config.write_text("repositories:\n  - github: acme/shop\ntriggers:\n  github_token: x\n")
    deployment.set("CODEXK8S_CONFIG", str(config))

    code, lines = doctor(capsys)

    assert code == 1
    assert only_fail(lines) == (
        f"FAIL config: {config}: line 4: triggers.github_token: unknown key 'github_token'; expected one of: "
        "min_permission, allow_logins; secrets are read from the environment only (see README), never from this file "
        f"— fix: correct the configuration in {config} (the line names the key path)"
    )
    assert "skip github.repos: the configuration did not load (see config)" in lines


def test_catalog_errors_name_the_file_and_key(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = deployment.tmp_path / "bad-agents.yaml"
    catalog.write_text("agents:\n  dev:\n    cpu: lots\n")
    deployment.set("CODEXK8S_AGENT_CATALOG", str(catalog))

    code, lines = doctor(capsys)

    assert code == 1
    assert only_fail(lines).startswith(f"FAIL catalog: {catalog}: agents.dev.cpu: expected a positive Kubernetes")
    assert "skip kubernetes.images: the agent catalog did not load (see catalog)" in lines


def test_run_checks_never_raises(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(ctx: object) -> list[doctor_module.Check]:
        raise RuntimeError("boom")

    monkeypatch.setattr(doctor_module, "check_database", broken)
    checks = doctor_module.run_checks(skip_groups=("kubernetes",))

    assert [c.line() for c in checks if c.failed] == [
        "FAIL database: the check itself failed: RuntimeError: boom — fix: report this with the line above"
    ]


# -- agents: model keys and the MCP server -------------------------------------------------------------------------
def test_a_missing_model_key_secret_is_one_fail_line(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.cluster.run(lambda em: em.objects[SECRETS, NAMESPACE, MODEL_SECRET].delete())
    code, lines = doctor(capsys)

    assert code == 1
    assert only_fail(lines) == (
        f"FAIL kubernetes.model_keys: secret {MODEL_SECRET} (model key OPENAI_API_KEY of pm, sa, em, dev, reviewer, "
        f"qa, sre, km) does not exist in {NAMESPACE} — fix: kubectl -n {NAMESPACE} create secret generic "
        f"{MODEL_SECRET} --from-literal=OPENAI_API_KEY=<the API key>"
    )


def test_agents_without_a_model_key_fail(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = deployment.tmp_path / "keyless.yaml"
    catalog.write_text("agents:\n  dev:\n    image: " + PINNED_IMAGE + "\n", encoding="utf-8")
    deployment.set("CODEXK8S_AGENT_CATALOG", str(catalog))
    code, lines = doctor(capsys)

    assert code == 1
    line = next(x for x in lines if x.startswith("FAIL kubernetes.model_keys"))
    assert "agents without a model key Secret: pm (OPENAI_API_KEY)" in line and "modelCredentials" in line


def test_mcp_server_unreachable_or_unset(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.helpers import free_port

    dead = f"http://127.0.0.1:{free_port()}/mcp"
    deployment.set("CODEXK8S_MCP_URL", dead)
    code, lines = doctor(capsys)
    assert code == 1
    assert only_fail(lines).startswith(f"FAIL kubernetes.mcp: the MCP server at {dead} does not answer: ")

    deployment.set("CODEXK8S_MCP_URL", None)
    code, lines = doctor(capsys)
    assert code == 0
    assert "warn kubernetes.mcp: CODEXK8S_MCP_URL is not set: agents get no MCP tools" in "\n".join(lines)


def test_a_healthy_mcp_server_and_model_keys_are_ok(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = doctor(capsys)
    assert code == 0
    mcp_ok = re.compile(r"ok   kubernetes\.mcp: the MCP server at http://127\.0\.0\.1:\d+/mcp answers \(HTTP \d+\)")
    assert any(mcp_ok.fullmatch(x) for x in lines)
    assert f"ok   kubernetes.model_keys: model key Secrets exist in {NAMESPACE}: {MODEL_SECRET}/OPENAI_API_KEY" in (
        "\n".join(lines)
    )


# -- agents, locally ---------------------------------------------------------------------------------------------
def _fake_make_run(home: Path, database_url: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A live process that looks like `codexk8s dev` (its command line) with the environment `env`, and its record."""
    from codexk8s_pipelines.platform_record import RunningPlatform, write_record

    home.mkdir(parents=True, exist_ok=True)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "codexk8s", "dev"], env=env)
    write_record(home, RunningPlatform(owner.pid, owner.pid, "http://127.0.0.1:1", database_url, str(home), str(home)))
    return owner


def test_locally_doctor_says_what_keeps_agents_from_starting(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """A fresh `make run` could not start an agent (`agent_not_found: cannot start the agent command 'codex'`), and
    doctor, locally, checked nothing about agents: neither the program, nor bubblewrap, nor the model key."""
    deployment.set("CODEXK8S_ENV", None)
    bin_dir = deployment.local_agents(key=None)
    for name in ("codex", "bwrap"):
        (bin_dir / name).unlink()
    deployment.set("PATH", str(bin_dir))  # not even the system's bwrap
    code, lines = doctor(capsys, "--skip", "github")

    assert code == 1
    where = "not on the PATH runs use (this shell's as make run passes it on)"
    assert with_status(lines, "FAIL") == [
        f"FAIL agents.commands: the agent command 'codex' of pm, sa, em, dev, reviewer, qa, sre, km is {where}: "
        "their runs fail (agent_not_found) — fix: `make agents` (codex, claude, opencode and aider into .tools/bin, "
        "which `make run` puts first on the PATH of its runs; restart `make run` after it); or give these roles "
        "another agent command in $CODEXK8S_AGENT_CATALOG",
        "FAIL agents.sandbox: bubblewrap (bwrap) is not on the PATH runs use (this shell's as make run passes it on): "
        "every agent run fails — fix: install the Debian package 'bubblewrap' (`make run` does when run as root), or "
        "set CODEXK8S_BWRAP to its path",
        "FAIL agents.model_keys: OPENAI_API_KEY is not set (codex: pm, sa, em, dev, reviewer, qa, sre, km): their "
        "runs cannot reach the model — fix: export OPENAI_API_KEY=<the API key> in the shell that starts `make run`, "
        "then restart it",
    ]


def test_locally_the_checkouts_tools_bin_counts_as_make_run_puts_it_on_path(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make agents` installs into .tools/bin, and `make run` puts it first on PATH: doctor looks there too, from any
    directory of the checkout."""
    deployment.set("CODEXK8S_ENV", None)
    deployment.local_agents(commands=())
    checkout = deployment.tmp_path / "checkout"
    (checkout / "docs").mkdir(parents=True)
    (checkout / "workspace.yaml").write_text("load_from: []\n", encoding="utf-8")
    (checkout / "pyproject.toml").write_text('[project]\nname = "codexk8s-pipelines"\n', encoding="utf-8")
    tools = checkout / ".tools" / "bin"
    tools.mkdir(parents=True)
    (tools / "codex").write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    (tools / "codex").chmod(0o755)
    deployment.monkeypatch.chdir(checkout / "docs")
    code, lines = doctor(capsys, "--skip", "github")

    assert code == 0, "\n".join(lines)
    assert f"ok   agents.commands: codex ({tools}/codex) for pm, sa, em, dev, reviewer, qa, sre, km" in lines
    assert "ok   agents.model_keys: set (values not read): OPENAI_API_KEY (codex: pm, sa, em, dev, reviewer, qa, " \
        "sre, km)" in lines  # fmt: skip
    assert "sk-doctor-test" not in "\n".join(lines)


def test_locally_the_running_make_runs_own_environment_is_checked(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the runs get is the running `make run`'s environment, not this shell's: a `make run` started before
    `make agents` (or without the key exported) still lacks them."""
    deployment.set("CODEXK8S_ENV", None)
    bin_dir = deployment.local_agents()
    home = Path(os.environ["CODEXK8S_HOME"])
    without = {"PATH": f"/usr/bin{os.pathsep}/bin"}  # neither codex nor the key; bwrap from /usr/bin if installed
    owner = _fake_make_run(home, deployment.database_url, env=without)
    try:
        code, lines = doctor(capsys, "--skip", "github")
    finally:
        owner.kill()
        owner.wait()
    assert code == 1
    fails = with_status(lines, "FAIL")
    assert fails[0].startswith(
        f"FAIL agents.commands: the agent command 'codex' of pm, sa, em, dev, reviewer, qa, sre, km is not on the "
        f"PATH runs use (the running make run's, pid {owner.pid}): "
    )
    assert fails[-1].startswith("FAIL agents.model_keys: OPENAI_API_KEY is not set (codex: ")
    assert str(bin_dir) not in "\n".join(lines)  # this shell's PATH was not the one checked


def test_locally_the_migrate_fix_is_the_command_that_migrates_the_running_make_run(
    deployment: Deployment, bare_database: DatabaseUrls, capsys: pytest.CaptureFixture[str]
) -> None:
    """Doctor said `codexk8s db migrate`, which with the URL `make run` hands out (the application role's) ended in
    a MigrationPermissionError traceback."""
    deployment.set("CODEXK8S_ENV", None)
    deployment.set("CODEXK8S_DATABASE_URL", bare_database.app)  # as `eval "$(codexk8s env)"` exports it
    owner = _fake_make_run(Path(os.environ["CODEXK8S_HOME"]), bare_database.app)
    try:
        code, lines = doctor(capsys, "--skip", "github,agents")
        assert code == 1
        assert only_fail(lines).endswith(
            "— fix: codexk8s db migrate (it migrates the running `make run`'s database), or restart `make run`"
        )
        assert main(["db", "migrate"]) == 0
        assert capsys.readouterr().out.startswith(f"schema version {LATEST}; applied now: [1, ")
        code, lines = doctor(capsys, "--skip", "github,agents")
    finally:
        owner.kill()
        owner.wait()
    assert code == 0, "\n".join(lines)
    assert f"ok   database.migrations: schema version {LATEST} (latest)" in lines
    assert "database.role: codexk8s_app: no superuser, owns nothing" in "\n".join(lines)
