"""`codexk8s doctor`: check a deployment's environment, one line per check, each problem with its fix.

    ok   <check>: <what was found>
    warn <check>: <what may bite later> — fix: <what to do>
    skip <check>: <why the check does not apply or could not be made>
    FAIL <check>: <problem> — fix: <what to do>

Groups (each can be left out with `--skip`): `config` (the environment switch, the platform configuration and
the agent catalog), `database` (URL, connection, migrations, pgvector), `github` (credentials, their validity,
each watched `github:` repository and the permissions on it, the rate limit) and `kubernetes` (only when
`CODEXK8S_ENV=kubernetes` or `--kubernetes`: the API, the agent namespace, the RBAC the run pods need there, the
agent service account, the token Secret, the agent images).

Every check catches its own errors and turns them into one FAIL line naming the cause: `run_checks` never
raises. No secret is ever printed: every line goes through `redact_text`, and the database password, the GitHub
token and the App key are scrubbed from the output literally as well. The Secret is read as metadata only.
Every network call has a short timeout, so a doctor run against a dead host ends in seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from . import settings
from .domain.redaction import REDACTED, redact_text
from .kube import KubeClient, load_kube

Status = Literal["ok", "fail", "skip", "warn"]
GROUPS: tuple[str, ...] = ("config", "database", "github", "kubernetes")
DB_CONNECT_TIMEOUT_SECONDS = 5
GITHUB_TIMEOUT_SECONDS = 5
K8S_TIMEOUT_SECONDS = 5
# What a run pod needs in the agent namespace (dagster-k8s PipesK8sClient: create, follow, read the log, delete).
POD_VERBS: tuple[tuple[str, str, str], ...] = (
    ("create", "pods", ""),
    ("get", "pods", ""),
    ("list", "pods", ""),
    ("delete", "pods", ""),
    ("get", "pods", "log"),
)
# Written without `user:password@`, which the redaction of every output line would blank out.
_URL_EXAMPLE = "postgresql://user@host:5432/dbname, with :password after the user"
# Secrets shorter than this are left to `redact_text` (replacing a two-letter password everywhere would garble).
_MIN_SCRUBBED = 6
_LABELS: dict[str, str] = {"ok": "ok", "fail": "FAIL", "skip": "skip", "warn": "warn"}


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def line(self) -> str:
        text = f"{_LABELS[self.status]:<4} {self.name}: {self.message}"
        if self.fix and self.status in ("fail", "warn"):
            text += f" — fix: {self.fix}"
        return text


def ok(name: str, message: str) -> Check:
    return Check(name, "ok", message)


def fail(name: str, message: str, fix: str) -> Check:
    return Check(name, "fail", message, fix)


def skip(name: str, message: str) -> Check:
    return Check(name, "skip", message)


def warn(name: str, message: str, fix: str | None = None) -> Check:
    return Check(name, "warn", message, fix)


def _one_line(text: object, limit: int = 300) -> str:
    """An error as one short line: whitespace collapsed, cut at `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _cause(exc: BaseException) -> str:
    text = _one_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def parse_skip(value: str) -> tuple[str, ...]:
    """`--skip kubernetes,github`: known group names only (argparse turns the error into a usage message and exit 2)."""
    import argparse

    names = tuple(x.strip().lower() for x in value.split(",") if x.strip())
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown check group(s): {', '.join(unknown)}; expected a comma-separated list of: {', '.join(GROUPS)}"
        )
    return names


# -- shared state between groups -----------------------------------------------------------------------------
@dataclass
class _Context:
    """What later checks need from earlier ones, loaded once: the configuration, the catalog, secrets to scrub."""

    secrets: set[str] = field(default_factory=set)
    _config: Any = None
    _config_error: BaseException | None = None
    _config_loaded: bool = False
    _catalog: Any = None
    _catalog_error: BaseException | None = None
    _catalog_loaded: bool = False

    def config_source(self) -> tuple[Path, bool]:
        where = settings.config_location()
        return where.path, where.explicit or where.path.exists()

    def config(self) -> Any:
        """The platform configuration (raises what loading raised, every time it is asked)."""
        if not self._config_loaded:
            from .config import PlatformConfig, load_config

            self._config_loaded = True
            path, present = self.config_source()
            try:
                self._config = load_config(path) if present else PlatformConfig()
            except Exception as exc:
                self._config_error = exc
        if self._config_error is not None:
            raise self._config_error
        return self._config

    def catalog(self) -> Any:
        if not self._catalog_loaded:
            from .agents.catalog import load_catalog

            self._catalog_loaded = True
            try:
                self._catalog = load_catalog()
            except Exception as exc:
                self._catalog_error = exc
        if self._catalog_error is not None:
            raise self._catalog_error
        return self._catalog

    def github_repositories(self) -> list[str]:
        return [r.github for r in self.config().repositories if r.github]

    def scrub(self, text: str) -> str:
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= _MIN_SCRUBBED:
                text = text.replace(secret, REDACTED)
        return redact_text(text)


def _config_error_checks(name: str, exc: BaseException, what: str) -> list[Check]:
    from .config import ConfigError

    if isinstance(exc, ConfigError):
        fix = f"correct {what} in {exc.path} (the line names the key path)"
        return [fail(name, f"{exc.path}: {problem}", fix) for problem in exc.problems[:20]]
    return [fail(name, f"{what} could not be loaded: {_cause(exc)}", "see the error above")]


# -- config --------------------------------------------------------------------------------------------------
def check_environment() -> Check:
    raw = os.environ.get(settings.ENV_VAR)
    try:
        env = settings.environment()
    except settings.SettingsError as exc:
        return fail("environment", str(exc), f"set {settings.ENV_VAR} to local or kubernetes")
    shown = f"{settings.ENV_VAR}={raw}" if raw else f"{settings.ENV_VAR} unset"
    return ok("environment", f"{env.value} ({shown})")


def check_config(ctx: _Context) -> list[Check]:
    path, present = ctx.config_source()
    try:
        config = ctx.config()
    except Exception as exc:
        return _config_error_checks("config", exc, "the configuration")
    on_github = sum(1 for r in config.repositories if r.github)
    source = str(path) if present else f"no {path} (built-in defaults)"
    return [
        ok(
            "config",
            f"{source}: {_plural(len(config.repositories), 'repository', 'repositories')} ({on_github} on GitHub), "
            f"trigger permission ≥ {config.triggers.min_permission.value}",
        )
    ]


def check_catalog(ctx: _Context) -> list[Check]:
    from .agents.catalog import CATALOG_ENV_VAR

    try:
        catalog = ctx.catalog()
    except Exception as exc:
        return _config_error_checks("catalog", exc, "the agent catalog")
    user_file = os.environ.get(CATALOG_ENV_VAR, "").strip()
    source = f"packaged catalog + {user_file}" if user_file else "packaged catalog"
    return [ok("catalog", f"{source}: {len(catalog.agents)} agents ({', '.join(catalog.agents)})")]


# -- database ------------------------------------------------------------------------------------------------
def check_database(ctx: _Context) -> list[Check]:
    import psycopg
    import psycopg.conninfo

    from .store import PlatformStore

    var = settings.DATABASE_URL_VAR
    raw = settings.database_url()
    if not raw:
        return [
            fail(
                "database.url",
                f"{var} is not set",
                f"set {var} to the platform database's URL ({_URL_EXAMPLE}); locally, `codexk8s dev` starts an "
                "embedded database and sets it",
            )
        ]
    url = PlatformStore(raw).url
    try:
        password = psycopg.conninfo.conninfo_to_dict(url).get("password")
    except Exception as exc:
        return [
            fail(
                "database.url",
                f"{var} is not a PostgreSQL connection URL: {_one_line(exc)}",
                f"set {var} to a URL like {_URL_EXAMPLE}",
            )
        ]
    if password:
        ctx.secrets.add(str(password))
    shown = ctx.scrub(url)
    checks = [ok("database.url", f"{var} is set ({shown})")]
    try:
        conn = psycopg.connect(url, connect_timeout=DB_CONNECT_TIMEOUT_SECONDS, autocommit=True)
    except Exception as exc:
        cause = _one_line(exc)
        if "password authentication failed" in cause or "no password supplied" in cause:
            fix = f"check the user and password in {var}"
        elif "does not exist" in cause and "database" in cause:
            fix = f"create the database, or correct its name in {var}"
        else:
            fix = f"check that the server is running and reachable from here, and the host and port in {var}"
        return [*checks, fail("database.connect", f"cannot connect to {shown}: {cause}", fix)]
    with conn:
        version = conn.info.server_version
        checks.append(ok("database.connect", f"connected to {shown} (PostgreSQL {version // 10000}.{version % 10000})"))
        checks.append(_check_migrations(conn))
        checks.append(_check_pgvector(conn))
    return checks


def _check_migrations(conn: Any) -> Check:
    from .store.migrations import available_migrations, current_version

    name = "database.migrations"
    try:
        migrations = available_migrations()
        latest = max(m.version for m in migrations)
        current = current_version(conn)
    except Exception as exc:
        return fail(name, f"cannot read the schema version: {_cause(exc)}", "check the database user's rights")
    if current == latest:
        return ok(name, f"schema version {current} (latest)")
    if current < latest:
        pending = ", ".join(str(m.version) for m in migrations if m.version > current)
        return fail(name, f"schema version {current}, latest is {latest} (pending: {pending})", "codexk8s db migrate")
    return fail(
        name,
        f"schema version {current} is newer than this platform's latest migration {latest}",
        "run the codexk8s_pipelines release that migrated this database",
    )


def _check_pgvector(conn: Any) -> Check:
    name = "database.pgvector"
    try:
        row = conn.execute(
            "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'vector'"
        ).fetchone()
    except Exception as exc:
        return fail(name, f"cannot read pg_available_extensions: {_cause(exc)}", "check the database user's rights")
    if row is None:
        return fail(
            name,
            "the pgvector extension is not available on this server",
            "install pgvector on the PostgreSQL server (a pgvector image, or a managed PostgreSQL with pgvector)",
        )
    default_version, installed = row
    if installed:
        return ok(name, f"available ({default_version}), installed ({installed})")
    return ok(name, f"available ({default_version}), not installed in this database yet")


# -- github --------------------------------------------------------------------------------------------------
def _gh_message(body: str) -> str:
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return _one_line(body, 120)
    return _one_line(data.get("message", "") if isinstance(data, dict) else "", 120)


def _rate_limit_check(status: int, headers: dict[str, Any], body: str) -> Check:
    from .github.rate_limit import header

    name = "github.rate_limit"
    remaining = header(headers, "x-ratelimit-remaining")
    limit = header(headers, "x-ratelimit-limit")
    reset = header(headers, "x-ratelimit-reset")
    if status == 200:
        try:
            core = json.loads(body)["resources"]["core"]
            remaining, limit, reset = str(core["remaining"]), str(core["limit"]), str(core["reset"])
        except (ValueError, KeyError, TypeError):
            pass
    if remaining is None or limit is None:
        return skip(name, "GitHub sent no rate-limit figures")
    when = ""
    if reset and reset.isdigit():
        when = f", resets at {datetime.fromtimestamp(int(reset), tz=UTC).strftime('%H:%M')} UTC"
    text = f"{remaining} of {limit} requests left this hour{when}"
    if remaining.isdigit() and int(remaining) == 0:
        return fail(name, text, "wait for the reset, or spread the load (fewer watched repositories, longer ticks)")
    if remaining.isdigit() and limit.isdigit() and int(remaining) < int(limit) // 10:
        return warn(name, text, "the sensors back off until the reset; check what else uses these credentials")
    return ok(name, text)


def _github_kwargs(credentials: Any) -> dict[str, Any]:
    """The doctor's own client settings, not `GitHubConnector`'s: a short timeout, no retry, no throttling."""
    return {
        "base_url": credentials.api_url,
        "timeout": GITHUB_TIMEOUT_SECONDS,
        "retry": None,
        "seconds_between_requests": 0,
        "seconds_between_writes": 0,
    }


def check_github(ctx: _Context) -> list[Check]:
    from .github.client import GitHubCredentials

    credentials = GitHubCredentials.from_environment()
    for secret in (credentials.token, credentials.app_private_key):
        if secret:
            ctx.secrets.add(secret)
    try:
        repos = ctx.github_repositories()
        repos_error: str | None = None
    except Exception:
        repos, repos_error = [], "the configuration did not load (see config)"
    if not credentials.configured:
        reason = credentials.missing_reason() or "no GitHub credentials"
        if not repos and not credentials.app_id:
            why = repos_error or "no `github:` repository is watched"
            return [skip("github", f"{reason}; {why}")]
        watched = f" ({len(repos)} `github:` repositories are watched)" if repos else ""
        return [
            fail(
                "github.credentials",
                f"{reason}{watched}",
                f"set {settings.GITHUB_TOKEN_VAR}, or {settings.GITHUB_APP_ID_VAR} and "
                f"{settings.GITHUB_APP_PRIVATE_KEY_VAR} (the PEM text or a path to it)",
            )
        ]
    if credentials.uses_app:
        found = f"GitHub App {credentials.app_id} ({settings.GITHUB_APP_ID_VAR}) at {credentials.api_url}"
        checks = [ok("github.credentials", found)]
        return checks + _check_github_app(credentials, repos, repos_error)
    checks = [ok("github.credentials", f"token ({settings.GITHUB_TOKEN_VAR}) for {credentials.api_url}")]
    return checks + _check_github_token(credentials, repos, repos_error)


def _check_github_token(credentials: Any, repos: list[str], repos_error: str | None) -> list[Check]:
    import github

    from .github.rate_limit import header

    gh = github.Github(auth=github.Auth.Token(credentials.token or ""), **_github_kwargs(credentials))
    requester = gh.requester
    try:
        status, headers, body = requester.requestJson("GET", "/rate_limit")
    except Exception as exc:
        return [
            fail(
                "github.auth",
                f"cannot reach {credentials.api_url}: {_cause(exc)}",
                f"check {settings.GITHUB_API_URL_VAR} and that this host can reach GitHub",
            ),
            *[skip(f"github.repo {r}", "GitHub is not reachable") for r in repos],
        ]
    if status == 401:
        return [
            fail(
                "github.auth",
                f"GitHub answered 401 ({_gh_message(body) or 'Bad credentials'}) to the token",
                f"the token is invalid or expired; set {settings.GITHUB_TOKEN_VAR} to a valid one",
            ),
            *[skip(f"github.repo {r}", "the credentials were refused") for r in repos],
        ]
    if status >= 400:
        return [
            fail(
                "github.auth",
                f"GitHub answered {status} ({_gh_message(body)}) to GET /rate_limit",
                "retry later; if it persists, check the token and GitHub's status",
            ),
            *[skip(f"github.repo {r}", "the credentials could not be verified") for r in repos],
        ]
    scopes = header(headers, "x-oauth-scopes")
    if scopes is None:
        scope_text = "no X-OAuth-Scopes header (fine-grained or installation token)"
    else:
        scope_text = f"scopes: {scopes.strip() or '(none)'}"
    checks = [ok("github.auth", f"the token is valid; {scope_text}")]
    if repos_error:
        checks.append(skip("github.repos", repos_error))
    elif not repos:
        checks.append(skip("github.repos", "no `github:` repository is watched"))
    for repo in repos:
        checks.append(_check_repo_with_token(requester, repo))
    try:
        checks.append(_rate_limit_check(*requester.requestJson("GET", "/rate_limit")))
    except Exception as exc:
        checks.append(fail("github.rate_limit", f"cannot read: {_cause(exc)}", "retry later"))
    return checks


def _grant_fix(repo: str) -> str:
    return f"grant the token/App access to {repo}"


def _check_repo_with_token(requester: Any, repo: str) -> Check:
    from .github.rate_limit import header

    name = f"github.repo {repo}"
    try:
        status, headers, body = requester.requestJson("GET", f"/repos/{repo}")
    except Exception as exc:
        return fail(name, f"cannot reach GitHub: {_cause(exc)}", "retry later; check the network")
    if status in (403, 429) and (header(headers, "x-ratelimit-remaining") == "0" or header(headers, "retry-after")):
        return fail(name, f"rate limited by GitHub ({status}: {_gh_message(body)})", "retry after the reset")
    if status == 404:
        return fail(name, f"{repo} is not found or not visible to the token (404)", _grant_fix(repo))
    if status in (401, 403):
        return fail(name, f"GitHub answered {status} ({_gh_message(body)}) for {repo}", _grant_fix(repo))
    if status >= 400:
        return fail(name, f"GitHub answered {status} ({_gh_message(body)}) for {repo}", "retry later")
    try:
        data = json.loads(body)
    except ValueError:
        data = {}
    permissions = data.get("permissions") if isinstance(data, dict) else None
    if not isinstance(permissions, dict):
        return ok(name, "reachable; GitHub reported no permissions object (write access not verified)")
    granted = [p for p in ("admin", "maintain", "push", "triage", "pull") if permissions.get(p)]
    if permissions.get("push"):
        return ok(name, f"reachable; the token may push ({', '.join(granted)})")
    level = "triage" if permissions.get("triage") else "read" if permissions.get("pull") else "no"
    return fail(
        name,
        f"the token has {level} access only (push: false); the platform writes labels, comments and pull requests",
        f"give the token write (push) access to {repo}",
    )


def _check_github_app(credentials: Any, repos: list[str], repos_error: str | None) -> list[Check]:
    import github

    if repos_error:
        return [skip("github.auth", f"the App is checked against the watched repositories; {repos_error}")]
    if not repos:
        return [skip("github.auth", "no `github:` repository is watched to check the App's installation against")]
    app_auth = github.Auth.AppAuth(credentials.app_id or "", credentials.app_private_key or "")
    integration = github.GithubIntegration(auth=app_auth, **_github_kwargs(credentials))
    checks: list[Check] = []
    rate: Check | None = None
    for repo in repos:
        name = f"github.repo {repo}"
        owner, _, short = repo.partition("/")
        try:
            installation = integration.get_repo_installation(owner, short)
        except github.GithubException as exc:
            if exc.status == 401:
                message = exc.data.get("message", "") if isinstance(exc.data, dict) else ""
                return [
                    fail(
                        "github.auth",
                        f"GitHub answered 401 ({_one_line(message) or 'Bad credentials'}) to the App's JWT",
                        f"the App id or private key is wrong: check {settings.GITHUB_APP_ID_VAR} and "
                        f"{settings.GITHUB_APP_PRIVATE_KEY_VAR} (the App's current private key)",
                    ),
                    *[skip(f"github.repo {r}", "the credentials were refused") for r in repos],
                ]
            if exc.status == 404:
                checks.append(
                    fail(name, f"App {credentials.app_id} is not installed on {repo} (404)", _grant_fix(repo))
                )
                continue
            checks.append(fail(name, f"GitHub answered {exc.status} for the installation of {repo}", "retry later"))
            continue
        except Exception as exc:
            checks.append(fail(name, f"cannot reach GitHub: {_cause(exc)}", "retry later; check the network"))
            continue
        perms = installation.raw_data.get("permissions") or {}
        missing = [p for p in ("issues", "pull_requests") if perms.get(p) != "write"]
        if missing:
            have = ", ".join(f"{p}: {perms.get(p, 'none')}" for p in ("issues", "pull_requests"))
            checks.append(
                fail(
                    name,
                    f"installation {installation.id} lacks write access ({have}); the platform writes labels, "
                    "comments and pull requests",
                    f"give the App issues: write and pull_requests: write, and accept the new permissions for {repo}",
                )
            )
            continue
        gh = github.Github(auth=app_auth.get_installation_auth(installation.id), **_github_kwargs(credentials))
        try:
            status, _headers, body = gh.requester.requestJson("GET", f"/repos/{repo}")
            if status >= 400:
                checks.append(
                    fail(name, f"GitHub answered {status} ({_gh_message(body)}) for {repo}", _grant_fix(repo))
                )
                continue
            if rate is None:
                rate = _rate_limit_check(*gh.requester.requestJson("GET", "/rate_limit"))
        except Exception as exc:
            checks.append(fail(name, f"cannot use installation {installation.id}: {_cause(exc)}", _grant_fix(repo)))
            continue
        checks.append(ok(name, f"reachable; installation {installation.id} may write issues and pull requests"))
    if any(c.status == "ok" for c in checks):
        checks.insert(0, ok("github.auth", "the App's JWT and installation tokens are accepted"))
    if rate is not None:
        checks.append(rate)
    return checks


# -- kubernetes ----------------------------------------------------------------------------------------------
def _api_error(exc: BaseException) -> tuple[int | None, str]:
    import kubernetes

    if isinstance(exc, kubernetes.client.ApiException):
        message = ""
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(exc.body or "{}").get("message", "")
        return exc.status, _one_line(message or exc.reason or "", 200)
    return None, _cause(exc)


def check_kubernetes(ctx: _Context, kubeconfig: str | None) -> list[Check]:
    from .agents.k8s_runtime import runtime_from_environment

    runtime = runtime_from_environment(os.environ)
    checks: list[Check] = []
    kube: KubeClient | None = None
    try:
        kube = load_kube(kubeconfig)
    except Exception as exc:
        checks.append(
            fail(
                "kubernetes.api",
                f"no usable Kubernetes configuration: {_cause(exc)}",
                f"run inside the cluster, or set {settings.KUBECONFIG_VAR} / pass --kubeconfig",
            )
        )
    if kube is not None:
        checks.extend(_check_cluster(kube, runtime))
        kube.api.close()
    checks.extend(check_images(ctx))
    return checks


def _check_cluster(kube: KubeClient, runtime: Any) -> list[Check]:
    import kubernetes

    ns = runtime.namespace
    try:
        version = kubernetes.client.VersionApi(kube.api).get_code(_request_timeout=K8S_TIMEOUT_SECONDS)
    except Exception as exc:
        status, cause = _api_error(exc)
        if status in (401, 403):
            fix = "the credentials of the kubeconfig / service account were refused: renew them"
        else:
            fix = "check the API server address in the kubeconfig and that this host can reach it"
        return [
            fail("kubernetes.api", f"cannot reach {kube.host} via {kube.source}: {cause}", fix),
            skip("kubernetes.namespace", "the Kubernetes API is not reachable"),
        ]
    checks = [
        ok(
            "kubernetes.api",
            f"{kube.host} ({version.git_version}) via {kube.source}; RBAC below is that identity's",
        )
    ]
    core = kubernetes.client.CoreV1Api(kube.api)
    namespace_missing = False
    try:
        found = core.read_namespace(ns, _request_timeout=K8S_TIMEOUT_SECONDS)
        phase = getattr(found.status, "phase", None) or "phase unknown"
        checks.append(ok("kubernetes.namespace", f"{ns} exists ({phase})"))
    except Exception as exc:
        status, cause = _api_error(exc)
        if status == 404:
            namespace_missing = True
            checks.append(
                fail(
                    "kubernetes.namespace",
                    f"namespace {ns} does not exist",
                    f"create it (kubectl create namespace {ns}), or set {settings.K8S_NAMESPACE_VAR} to the "
                    "agent namespace",
                )
            )
        elif status == 403:
            checks.append(
                skip("kubernetes.namespace", f"could not be checked: may not get namespace {ns} (403); not needed")
            )
        else:
            checks.append(fail("kubernetes.namespace", f"cannot read namespace {ns}: {cause}", "retry; check the API"))
    checks.extend(_check_rbac(kube, ns))
    if namespace_missing:
        why = f"namespace {ns} does not exist"
        checks.append(skip("kubernetes.service_account", why))
        checks.append(skip("kubernetes.secret", why))
        return checks
    checks.append(_check_service_account(core, ns, runtime.service_account))
    checks.append(_check_secret(kube, ns, runtime.token_secret_name, runtime.token_secret_key))
    return checks


def _check_rbac(kube: KubeClient, ns: str) -> list[Check]:
    import kubernetes

    authz = kubernetes.client.AuthorizationV1Api(kube.api)
    allowed: list[str] = []
    checks: list[Check] = []
    for verb, resource, subresource in POD_VERBS:
        what = f"{verb} {resource}/{subresource}" if subresource else f"{verb} {resource}"
        review = kubernetes.client.V1SelfSubjectAccessReview(
            spec=kubernetes.client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=kubernetes.client.V1ResourceAttributes(
                    namespace=ns, verb=verb, resource=resource, subresource=subresource or None
                )
            )
        )
        try:
            answer = authz.create_self_subject_access_review(review, _request_timeout=K8S_TIMEOUT_SECONDS)
        except Exception as exc:
            _status, cause = _api_error(exc)
            checks.append(
                fail(
                    "kubernetes.rbac",
                    f"cannot ask whether it may {what} in namespace {ns} (SelfSubjectAccessReview: {cause})",
                    "check that the API server serves authorization.k8s.io/v1",
                )
            )
            continue
        if answer.status is not None and answer.status.allowed:
            allowed.append(what)
            continue
        reason = getattr(answer.status, "reason", None) or getattr(answer.status, "evaluation_error", None)
        checks.append(
            fail(
                "kubernetes.rbac",
                f"may not {what} in namespace {ns}" + (f" ({_one_line(reason, 150)})" if reason else ""),
                f'add verb "{verb}" on "{resource + ("/" + subresource if subresource else "")}" to the '
                f"platform's Role in {ns} (kubectl auth can-i {verb} {resource}"
                f"{' --subresource=' + subresource if subresource else ''} -n {ns})",
            )
        )
    if not checks:
        checks.append(ok("kubernetes.rbac", f"may {', '.join(allowed)} in namespace {ns}"))
    return checks


def _check_service_account(core: Any, ns: str, name: str) -> Check:
    check = "kubernetes.service_account"
    try:
        core.read_namespaced_service_account(name, ns, _request_timeout=K8S_TIMEOUT_SECONDS)
    except Exception as exc:
        status, cause = _api_error(exc)
        if status == 404:
            return fail(
                check,
                f"service account {name} (the agent pods' identity) does not exist in {ns}",
                f"create it (kubectl -n {ns} create serviceaccount {name}), or set "
                f"{settings.K8S_SERVICE_ACCOUNT_VAR} to an existing one",
            )
        if status == 403:
            return skip(check, f"could not be checked: may not get serviceaccounts in {ns} (403)")
        return fail(check, f"cannot read service account {name} in {ns}: {cause}", "retry; check the API")
    return ok(check, f"{name} exists in {ns}")


def _check_secret(kube: KubeClient, ns: str, name: str, key: str) -> Check:
    """The token Secret's existence, reading its metadata only (PartialObjectMetadata): no value is fetched."""
    check = "kubernetes.secret"
    try:
        response = kube.api.call_api(
            "/api/v1/namespaces/{namespace}/secrets/{name}",
            "GET",
            path_params={"namespace": ns, "name": name},
            header_params={"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=K8S_TIMEOUT_SECONDS,
        )
        raw = response[0] if isinstance(response, tuple) else response
        metadata = json.loads(raw.data or b"{}").get("metadata") or {}  # nothing but the metadata is kept
    except Exception as exc:
        status, cause = _api_error(exc)
        if status == 404:
            return fail(
                check,
                f"secret {name} (the GitHub token of the agent pods) does not exist in {ns}",
                f"create it: kubectl -n {ns} create secret generic {name} --from-literal={key}=<token> "
                f"(or set {settings.K8S_TOKEN_SECRET_VAR} to the existing one)",
            )
        if status == 403:
            return skip(
                check,
                f"could not be checked: the platform may not read secrets in {ns} (403), which it does not need; "
                f"check by hand: kubectl -n {ns} get secret {name}",
            )
        return fail(check, f"cannot read secret {name} in {ns}: {cause}", "retry; check the API")
    return ok(check, f"{metadata.get('name', name)} exists in {ns} (metadata only; its keys are not read)")


def _image_tag(image: str) -> str | None:
    """The tag of an image reference; None when it is pinned by digest."""
    if "@" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def check_images(ctx: _Context) -> list[Check]:
    name = "kubernetes.images"
    try:
        catalog = ctx.catalog()
    except Exception:
        return [skip(name, "the agent catalog did not load (see catalog)")]
    by_image: dict[str, list[str]] = {}
    checks: list[Check] = []
    for agent in catalog.agents.values():
        image = (agent.image or "").strip()
        if not image:
            checks.append(fail(name, f"agent {agent.name} has no image", "set `image:` for it in the agent catalog"))
            continue
        by_image.setdefault(image, []).append(agent.name)
    for image, agents in by_image.items():
        tag = _image_tag(image)
        if tag == "latest":
            found = "uses the tag latest" if ":" in image.rsplit("/", 1)[-1] else "has no tag, so latest"
            checks.append(
                warn(
                    name,
                    f"{image} {found} (agents: {', '.join(agents)}); runs may differ as the tag moves",
                    "pin a version tag or a digest in the agent catalog ($CODEXK8S_AGENT_CATALOG)",
                )
            )
    if not checks:
        listing = "; ".join(f"{image} ({', '.join(agents)})" for image, agents in by_image.items())
        checks.append(ok(name, f"{sum(map(len, by_image.values()))} agents, images pinned: {listing}"))
    return checks


# -- running -------------------------------------------------------------------------------------------------
def _guarded(name: str, fn: Callable[[], Iterable[Check]]) -> list[Check]:
    try:
        return list(fn())
    except Exception as exc:  # a check that raised is a failed check, never a traceback
        return [fail(name, f"the check itself failed: {_cause(exc)}", "report this with the line above")]


def _kubernetes_wanted(force: bool) -> tuple[bool, str]:
    if force:
        return True, "--kubernetes"
    try:
        env = settings.environment()
    except settings.SettingsError:
        return False, f"{settings.ENV_VAR} is invalid (see environment)"
    if env is settings.Environment.KUBERNETES:
        return True, f"{settings.ENV_VAR}=kubernetes"
    return False, f"{settings.ENV_VAR}={env.value}; pass --kubernetes to check a cluster anyway"


def run_checks(
    skip_groups: Sequence[str] = (),
    *,
    kubernetes: bool = False,
    kubeconfig: str | None = None,
) -> list[Check]:
    """Every check of every group not in `skip_groups`, in order; never raises, never returns a secret."""
    ctx = _Context()
    checks: list[Check] = []

    def group(name: str, run: Callable[[], Iterator[Check] | list[Check]]) -> None:
        if name in skip_groups:
            checks.append(skip(name, "skipped (--skip)"))
        else:
            checks.extend(_guarded(name, run))

    def config_group() -> list[Check]:
        return [check_environment(), *_guarded("config", lambda: check_config(ctx)), *check_catalog(ctx)]

    group("config", config_group)
    group("database", lambda: check_database(ctx))
    group("github", lambda: check_github(ctx))
    wanted, why = _kubernetes_wanted(kubernetes)
    if "kubernetes" in skip_groups or wanted:
        group("kubernetes", lambda: check_kubernetes(ctx, kubeconfig))
    else:
        checks.append(skip("kubernetes", why))
    return [
        replace(c, message=ctx.scrub(c.message), fix=ctx.scrub(c.fix) if c.fix else None, name=ctx.scrub(c.name))
        for c in checks
    ]


def render_text(checks: Sequence[Check]) -> str:
    return "\n".join(c.line() for c in checks)


def render_json(checks: Sequence[Check]) -> str:
    failed = sum(1 for c in checks if c.failed)
    return json.dumps({"ok": failed == 0, "failed": failed, "checks": [asdict(c) for c in checks]}, ensure_ascii=False)


def run_doctor(
    skip_groups: Sequence[str] = (),
    *,
    as_json: bool = False,
    kubernetes: bool = False,
    kubeconfig: str | None = None,
) -> int:
    """Print the checks; 0 when none failed, 1 otherwise (bad arguments are argparse's exit 2)."""
    checks = run_checks(skip_groups, kubernetes=kubernetes, kubeconfig=kubeconfig)
    print(render_json(checks) if as_json else render_text(checks), flush=True)
    return 1 if any(c.failed for c in checks) else 0
