"""The GitHub resource: credentials from the environment only, so nothing secret is ever in run config."""

import threading

import dagster as dg

from .api import RepoApi
from .client import GitHubConnector, GitHubCredentials

_connectors: dict[tuple[str, str | None, str | None], GitHubConnector] = {}
_lock = threading.Lock()


class GitHubResource(dg.ConfigurableResource):
    """PyGithub clients for the watched repositories (token or GitHub App, see README)."""

    def credentials(self) -> GitHubCredentials:
        return GitHubCredentials.from_environment()

    def connector(self) -> GitHubConnector:
        """One connector per credentials and process, so App installation tokens are reused across ticks."""
        creds = self.credentials()
        key = (creds.api_url, creds.token, creds.app_id)
        with _lock:
            connector = _connectors.get(key)
            if connector is None or connector.credentials != creds:
                connector = _connectors[key] = GitHubConnector(creds)
            return connector

    def repo_api(self, full_name: str) -> RepoApi:
        """The REST calls the platform makes on one repository, through the shared connector."""
        return RepoApi(self.connector().for_repository(full_name), full_name)
