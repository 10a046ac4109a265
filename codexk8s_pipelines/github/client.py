"""PyGithub clients built from the environment, one per repository when a GitHub App is used.

Why the settings: a sensor tick has 60 s. PyGithub's default retry sleeps through rate limits and retries
ten times, which can eat the whole tick; here a request times out after a few seconds, a 5xx is retried at most
twice with a short backoff, and rate limits are raised at once so the caller can back off until the reset.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import github
from urllib3.util.retry import Retry

from .. import settings

DEFAULT_API_URL = "https://api.github.com"


@dataclass(frozen=True)
class GitHubCredentials:
    """Token or GitHub App credentials. `repr` hides the secrets so they never reach a log."""

    api_url: str = DEFAULT_API_URL
    token: str | None = None
    app_id: str | None = None
    app_private_key: str | None = None
    timeout_seconds: int = 8
    retries: int = 2
    seconds_between_requests: float = 0.0

    def __repr__(self) -> str:
        mode = "app" if self.uses_app else "token" if self.token else "none"
        return f"GitHubCredentials(api_url={self.api_url!r}, mode={mode})"

    @property
    def uses_app(self) -> bool:
        return bool(self.app_id and self.app_private_key)

    @property
    def configured(self) -> bool:
        return bool(self.token) or self.uses_app

    def missing_reason(self) -> str | None:
        if self.configured:
            return None
        if self.app_id and not self.app_private_key:
            return f"{settings.GITHUB_APP_ID_VAR} is set but {settings.GITHUB_APP_PRIVATE_KEY_VAR} is not"
        return (
            f"no GitHub credentials: set {settings.GITHUB_TOKEN_VAR}, or {settings.GITHUB_APP_ID_VAR} and "
            f"{settings.GITHUB_APP_PRIVATE_KEY_VAR}"
        )

    @classmethod
    def from_environment(cls) -> GitHubCredentials:
        key = os.environ.get(settings.GITHUB_APP_PRIVATE_KEY_VAR) or None
        if key and not key.lstrip().startswith("-----") and os.path.isfile(key):
            with open(key, encoding="utf-8") as fh:  # a path to the PEM file is accepted too
                key = fh.read()
        return cls(
            api_url=(os.environ.get(settings.GITHUB_API_URL_VAR) or DEFAULT_API_URL).rstrip("/"),
            token=os.environ.get(settings.GITHUB_TOKEN_VAR) or None,
            app_id=os.environ.get(settings.GITHUB_APP_ID_VAR) or None,
            app_private_key=key,
        )


def _retry(total: int) -> Retry:
    return Retry(
        total=total,
        connect=total,
        read=0,  # a read timeout is not retried inside the tick: the next tick will ask again
        status=total,
        backoff_factor=0.2,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=False,
        raise_on_status=False,
    )


TOKEN_CREDENTIAL = "token"  # what `credential_of` names the one token every repository is read with


class GitHubConnector:
    """Hands out PyGithub clients: one for a token, one per App installation (cached, thread-safe)."""

    def __init__(self, credentials: GitHubCredentials) -> None:
        self.credentials = credentials
        self._lock = threading.Lock()
        self._clients: dict[str, github.Github] = {}

    def _options(self) -> dict[str, Any]:
        """The request settings every client gets (see the module's docstring), written once for both kinds."""
        c = self.credentials
        return {
            "base_url": c.api_url,
            "timeout": c.timeout_seconds,
            "retry": _retry(c.retries),
            "per_page": 100,
            "seconds_between_requests": c.seconds_between_requests,
            "seconds_between_writes": c.seconds_between_requests,
        }

    def _github(self, auth: github.Auth.Auth) -> github.Github:
        return github.Github(auth=auth, **self._options())

    def credential_of(self, full_name: str) -> str:
        """What GitHub counts the rate limit of `full_name`'s requests against: the one token, or the App's
        installation on the repository's owner (an App is installed per account)."""
        if not self.credentials.uses_app:
            return TOKEN_CREDENTIAL
        return f"App installation on {full_name.split('/', 1)[0].lower()}"

    def for_repository(self, full_name: str) -> github.Github:
        c = self.credentials
        if not c.configured:
            raise RuntimeError(c.missing_reason())
        key = full_name.lower() if c.uses_app else "*"
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._build(full_name)
                self._clients[key] = client
            return client

    def _build(self, full_name: str) -> github.Github:
        c = self.credentials
        if not c.uses_app:
            return self._github(github.Auth.Token(c.token or ""))
        app_auth = github.Auth.AppAuth(c.app_id or "", c.app_private_key or "")
        integration = github.GithubIntegration(auth=app_auth, **self._options())
        owner, repo = full_name.split("/", 1)
        installation = integration.get_repo_installation(owner, repo)
        return self._github(app_auth.get_installation_auth(installation.id))
