"""The GitHub resource: credentials from the environment only, so nothing secret is ever in run config."""

import threading

import dagster as dg

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
