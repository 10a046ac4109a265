"""What deciding a trigger may read of the platform's memory, as a typed protocol with two implementations.

Why a protocol: deciding needs a few read-only answers (did this issue have a dev run, which stages ran, is an
approval waiting, which issues did the platform open itself, which runs do the budgets hold), and `codexk8s
triggers explain` must be able to decide without a database at all. The sensor reads them from the platform
store (`StoreHistory`); explain without `CODEXK8S_DATABASE_URL` uses `NoHistory`, which knows nothing. Writing
is not part of deciding: the sensor acts on its decisions with the `PlatformStore` itself.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.findings import platform_issue_by_number
from codexk8s_pipelines.store.usage import RESCUE_WINDOW, BudgetHold, open_holds, released_not_started


class DecisionHistory(Protocol):
    def has_stage_run(
        self,
        repository: str,
        issue_number: int,
        stage: str,
        statuses: tuple[str, ...] = (),
        *,
        writing_only: bool = False,
    ) -> bool:
        """Whether the issue had a run of `stage` in one of `statuses` (any status when empty); with `writing_only`,
        a discussion's run (it only commented) does not count."""
        ...

    def recent_stages(self, repository: str, issue_number: int | None, pr_number: int | None) -> list[str]: ...

    def get_run(self, correlation_key: str) -> dict[str, Any] | None: ...

    def events(self, correlation_key: str) -> list[dict[str, Any]]: ...

    def has_event(self, correlation_key: str, event_type: str) -> bool: ...

    def platform_issues(self, repository: str, number: int) -> list[dict[str, Any]]: ...

    def open_approval(self, repository: str, number: int) -> dict[str, Any] | None: ...

    def latest_approval(self, repository: str, number: int) -> dict[str, Any] | None: ...

    def open_holds(self, repository: str, number: int) -> list[BudgetHold]: ...


class StoreHistory:
    """The platform database as decision history."""

    def __init__(self, store: PlatformStore) -> None:
        self.store = store

    def has_stage_run(
        self,
        repository: str,
        issue_number: int,
        stage: str,
        statuses: tuple[str, ...] = (),
        *,
        writing_only: bool = False,
    ) -> bool:
        return self.store.has_stage_run(repository, issue_number, stage, statuses=statuses, writing_only=writing_only)

    def recent_stages(self, repository: str, issue_number: int | None, pr_number: int | None) -> list[str]:
        return self.store.recent_stages(repository, issue_number=issue_number, pr_number=pr_number)

    def get_run(self, correlation_key: str) -> dict[str, Any] | None:
        return self.store.get_run(correlation_key)

    def events(self, correlation_key: str) -> list[dict[str, Any]]:
        return self.store.events(correlation_key)

    def has_event(self, correlation_key: str, event_type: str) -> bool:
        return self.store.has_event(correlation_key, event_type)

    def platform_issues(self, repository: str, number: int) -> list[dict[str, Any]]:
        return platform_issue_by_number(self.store, repository, number)

    def open_approval(self, repository: str, number: int) -> dict[str, Any] | None:
        return self.store.open_approval_for_issue(repository, number)

    def latest_approval(self, repository: str, number: int) -> dict[str, Any] | None:
        return self.store.approval_for_issue(repository, number)

    def open_holds(self, repository: str, number: int) -> list[BudgetHold]:
        # A hold released in a tick whose run record then failed still holds its run: an override starts it.
        since = datetime.now(UTC) - RESCUE_WINDOW
        rescued = released_not_started(self.store, since, repository=repository, issue_number=number)
        return open_holds(self.store, repository, number) + rescued


class NoHistory:
    """Stands in for the platform database when none is reachable: no earlier runs, no approvals, no issues the
    platform opened (so a bot's label is refused, as the sensor would refuse it without that record)."""

    def has_stage_run(
        self,
        repository: str,
        issue_number: int,
        stage: str,
        statuses: tuple[str, ...] = (),
        *,
        writing_only: bool = False,
    ) -> bool:
        return False

    def recent_stages(self, repository: str, issue_number: int | None, pr_number: int | None) -> list[str]:
        return []

    def get_run(self, correlation_key: str) -> dict[str, Any] | None:
        return None

    def events(self, correlation_key: str) -> list[dict[str, Any]]:
        return []

    def has_event(self, correlation_key: str, event_type: str) -> bool:
        return False

    def platform_issues(self, repository: str, number: int) -> list[dict[str, Any]]:
        return []

    def open_approval(self, repository: str, number: int) -> dict[str, Any] | None:
        return None

    def latest_approval(self, repository: str, number: int) -> dict[str, Any] | None:
        return None

    def open_holds(self, repository: str, number: int) -> list[BudgetHold]:
        return []
