"""Group `github`: the credentials, their validity, each watched `github:` repository and its permissions, the rate
limit. The doctor's own client: a short timeout, no retry, no throttling.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .. import settings
from ..domain.untrusted_data import UntrustedDataError, loads_json
from .base import Check, Context, cause, fail, ok, one_line, skip, warn

GITHUB_TIMEOUT_SECONDS = 5


def _gh_message(body: str) -> str:
    try:
        data = loads_json(body, "GitHub's error answer") if body else {}
    except UntrustedDataError:
        return one_line(body, 120)
    return one_line(data.get("message", "") if isinstance(data, dict) else "", 120)


def _rate_limit_check(status: int, headers: dict[str, Any], body: str) -> Check:
    from ..github.rate_limit import header

    name = "github.rate_limit"
    remaining = header(headers, "x-ratelimit-remaining")
    limit = header(headers, "x-ratelimit-limit")
    reset = header(headers, "x-ratelimit-reset")
    if status == 200:
        try:
            core = loads_json(body, "GitHub's answer to GET /rate_limit")["resources"]["core"]
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


def check_github(ctx: Context) -> list[Check]:
    from ..github.client import GitHubCredentials

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
        return checks + _check_github_app(ctx, credentials, repos, repos_error)
    checks = [ok("github.credentials", f"token ({settings.GITHUB_TOKEN_VAR}) for {credentials.api_url}")]
    return checks + _check_github_token(ctx, credentials, repos, repos_error)


def _check_github_token(ctx: Context, credentials: Any, repos: list[str], repos_error: str | None) -> list[Check]:
    import github

    from ..github.rate_limit import header

    gh = github.Github(auth=github.Auth.Token(credentials.token or ""), **_github_kwargs(credentials))
    requester = gh.requester
    try:
        status, headers, body = requester.requestJson("GET", "/rate_limit")
    except Exception as exc:
        return [
            fail(
                "github.auth",
                f"cannot reach {credentials.api_url}: {cause(exc)}",
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
        check, answer = _check_repo_with_token(requester, repo)
        checks.append(check)
        if answer is not None:
            checks += _default_branch_check(repo, answer, ctx.configured_default_branch(repo))
    try:
        checks.append(_rate_limit_check(*requester.requestJson("GET", "/rate_limit")))
    except Exception as exc:
        checks.append(fail("github.rate_limit", f"cannot read: {cause(exc)}", "retry later"))
    return checks


def _grant_fix(repo: str) -> str:
    return f"grant the token/App access to {repo}"


def _check_repo_with_token(requester: Any, repo: str) -> tuple[Check, Any]:
    """The repository's check, and GitHub's answer when it gave one (None: not reachable or not JSON)."""
    from ..github.rate_limit import header

    name = f"github.repo {repo}"
    try:
        status, headers, body = requester.requestJson("GET", f"/repos/{repo}")
    except Exception as exc:
        return fail(name, f"cannot reach GitHub: {cause(exc)}", "retry later; check the network"), None
    if status in (403, 429) and (header(headers, "x-ratelimit-remaining") == "0" or header(headers, "retry-after")):
        return fail(name, f"rate limited by GitHub ({status}: {_gh_message(body)})", "retry after the reset"), None
    if status == 404:
        return fail(name, f"{repo} is not found or not visible to the token (404)", _grant_fix(repo)), None
    if status in (401, 403):
        return fail(name, f"GitHub answered {status} ({_gh_message(body)}) for {repo}", _grant_fix(repo)), None
    if status >= 400:
        return fail(name, f"GitHub answered {status} ({_gh_message(body)}) for {repo}", "retry later"), None
    try:
        data = loads_json(body, f"GitHub's answer to GET /repos/{repo}")
    except UntrustedDataError as exc:  # nested too deeply raised RecursionError, and the whole group was lost
        return warn(
            name,
            f"reachable, but {exc} (write access not verified)",
            f"retry later; if it persists, check that {settings.GITHUB_API_URL_VAR} points at GitHub's API",
        ), None
    return _permission_check(name, repo, data), data


def _permission_check(name: str, repo: str, data: Any) -> Check:
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


def _default_branch_check(repo: str, data: Any, configured: str | None) -> list[Check]:
    """GitHub's default branch against codexk8s.yaml's `default_branch`: a stage run starts from the configured one
    (an override) and never pushes to either; one that differs is mostly a configuration left behind by a rename
    on GitHub (main -> trunk), or a repository whose default branch never was `main`. A line only when they differ
    (or GitHub names none): with none configured, or the same, the runs follow GitHub and there is nothing to say."""
    from ..github.payloads import PayloadError, Repository

    name = f"github.default_branch {repo}"
    try:
        github = Repository.parse(data, f"GitHub's answer to GET /repos/{repo}").default_branch
    except PayloadError as exc:
        return [warn(name, f"GitHub named no default branch ({exc}); stage runs of {repo} cannot start")]
    if configured is None or configured == github:
        return []
    return [
        warn(
            name,
            f"codexk8s.yaml sets default_branch '{configured}' for {repo}, but GitHub's default branch is '{github}': "
            f"stage runs start from '{configured}' and open their pull requests into it",
            f"remove default_branch of {repo} from codexk8s.yaml to follow GitHub (or set it to '{github}'); keep "
            "it only to open pull requests into another branch on purpose",
        )
    ]


def _check_github_app(ctx: Context, credentials: Any, repos: list[str], repos_error: str | None) -> list[Check]:
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
                        f"GitHub answered 401 ({one_line(message) or 'Bad credentials'}) to the App's JWT",
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
            checks.append(fail(name, f"cannot reach GitHub: {cause(exc)}", "retry later; check the network"))
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
            checks.append(fail(name, f"cannot use installation {installation.id}: {cause(exc)}", _grant_fix(repo)))
            continue
        checks.append(ok(name, f"reachable; installation {installation.id} may write issues and pull requests"))
        try:
            answer = loads_json(body, f"GitHub's answer to GET /repos/{repo}")
        except UntrustedDataError:
            continue  # the repository's own check passed; its default branch is not said
        checks += _default_branch_check(repo, answer, ctx.configured_default_branch(repo))
    if any(c.status == "ok" for c in checks):
        checks.insert(0, ok("github.auth", "the App's JWT and installation tokens are accepted"))
    if rate is not None:
        checks.append(rate)
    return checks
