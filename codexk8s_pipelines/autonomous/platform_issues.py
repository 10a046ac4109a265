"""Issues the platform opens and keeps (dashboards, the self-improve evidence, fix issues): found again through
the platform's own record, never a search, which GitHub indexes with a delay."""

from __future__ import annotations

from typing import Any

from github import GithubException

from ..github.api import RepoApi
from ..store import PlatformStore
from ..store.findings import platform_issue, remember_platform_issue


def recorded_issue(api: RepoApi, store: PlatformStore, repository: str, purpose: str) -> dict[str, Any] | None:
    """The issue recorded for `purpose` as GitHub has it now; None when none was recorded or it is gone (deleted,
    transferred), so the caller opens a new one."""
    record = platform_issue(store, repository, purpose)
    if record is None:
        return None
    try:
        return api.issue(int(record["issue_number"]))
    except GithubException as exc:
        if exc.status not in (404, 410):
            raise
        return None


def open_labelled_issue(
    api: RepoApi, store: PlatformStore, repository: str, purpose: str, title: str, body: str, label: str
) -> int:
    """Open an issue the platform means to start a run on, then label it.

    The record (which login opened it, for which label) is written before the label is put, so the intake sensor
    can never see the label event before it knows the issue is the platform's own.
    """
    created = api.create_issue(title, body)
    number = int(created["number"])
    login = str((created.get("user") or {}).get("login") or "")
    remember_platform_issue(store, repository, purpose, number, login, trigger_label=label)
    api.add_labels(number, [label])
    return number
