"""The opening every partitioned periodic asset shares, written once: the configuration, the repository of the
partition, its checkout, and the asset's decoration (partitions, group, owners, kinds, checks).

Each check lives in its own folder (`security/`, `freshness/`, `drift/`, `docs_index/`, `self_improve/`) with its
asset and its asset checks; `registry.py` lists the folders and derives jobs and schedules from them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import dagster as dg

from ..config.models import PlatformConfig, RepositoryConfig
from ..github.resource import GitHubResource
from ..resources import PlatformConfigResource, PlatformDatabase
from ..store import PlatformStore
from .checkouts import checkout
from .partitions import REPOSITORY_PARTITIONS
from .periodic import watched_repository

OWNERS = ["team:codex-k8s"]  # who answers for the periodic checks; shown on every asset page
CHECKOUT = dg.AssetKey("repository_checkout")  # the external asset each repository's checkout is


@dataclass(frozen=True)
class PeriodicRun:
    """What a periodic asset works on: the configuration, the repository of its partition, and the store."""

    platform: PlatformConfig
    repo: RepositoryConfig
    store: PlatformStore

    def checked_out(self, github: GitHubResource) -> CheckedOutRun:
        """The same run with a fresh checkout of the repository's default branch (a clear failure when git
        cannot make one)."""
        try:
            root, commit = checkout(self.repo, github.credentials())
        except Exception as exc:  # git's own message says why (auth, network, branch); no traceback is more useful
            cannot(f"{self.repo.key}: cannot check out {self.repo.default_branch!r}: {exc}")
        return CheckedOutRun(self.platform, self.repo, self.store, root, commit)


@dataclass(frozen=True)
class CheckedOutRun(PeriodicRun):
    """A `PeriodicRun` with its checkout: the working tree and the commit it is at."""

    root: Path
    commit: str | None = None


def open_partition(
    context: dg.AssetExecutionContext, platform_db: PlatformDatabase, platform_config: PlatformConfigResource
) -> PeriodicRun:
    """The configuration and the partition's repository (a clear failure when it is no longer watched); a check
    that reads the repository's files asks for its checkout next (`.checked_out(github)`)."""
    platform = platform_config.get()
    repo = watched_repository(platform, context.partition_key)
    return PeriodicRun(platform, repo, platform_db.store())


def cannot(description: str, **metadata: Any) -> NoReturn:
    """Fail the step with one clear message: what is wrong and what to do.

    `dg.Failure` is Dagster's way to say "this could not be done" rather than "this code broke": the run page shows
    the description as the error, with the metadata beside it. `from None`: called from an `except` block, the
    caught exception is not chained, so no second message and stack follow ("During handling of…"). Not retried
    (`allow_retries=False`): a missing database or an unreachable checkout does not fix itself in seconds.
    Dagster 1.13 still stores the stack from here to its step executor and the UI prints it under the message
    (LogsRowStructuredContent: any non-empty `error.stack`); there is no supported way to drop it.
    """
    raise dg.Failure(description=description, metadata=metadata or None, allow_retries=False) from None


def periodic_asset(
    name: str,
    *,
    description: str,
    kinds: set[str],
    checks: Mapping[str, str] = {},
    group_name: str = "periodic",
    deps: Sequence[Any] = (CHECKOUT,),
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`@dg.asset` with what every periodic asset shares: one partition per repository, the owners, the checkout
    as upstream, and its asset checks (name → description), reported by the materialization itself."""
    specs = [dg.AssetCheckSpec(check, asset=name, description=text) for check, text in checks.items()]
    return dg.asset(
        name=name,
        partitions_def=REPOSITORY_PARTITIONS,
        group_name=group_name,
        description=description,
        kinds=kinds,
        owners=OWNERS,
        deps=list(deps),
        check_specs=specs or None,
    )


def check_result(
    platform: PlatformConfig, check: str, passed: bool, description: str, **metadata: Any
) -> dg.AssetCheckResult:
    """A check's result with the severity the user configured (`periodic.check_severity`)."""
    severity = (
        dg.AssetCheckSeverity.ERROR if platform.periodic.severity_of(check) == "error" else dg.AssetCheckSeverity.WARN
    )
    return dg.AssetCheckResult(
        check_name=check, passed=passed, severity=severity, description=description, metadata=metadata or None
    )


# The checkout every partitioned check reads: declared (not materialized) so that the lineage shows where the data
# comes from. The platform fetches it itself at the start of each run.
repository_checkout = dg.AssetSpec(
    CHECKOUT,
    description="A watched repository's default branch: a local path as it is, or a mirror of the GitHub "
    "repository reset to the remote's default branch at the start of each periodic run.",
    group_name="periodic",
    kinds={"git"},
    owners=OWNERS,
    partitions_def=REPOSITORY_PARTITIONS,
)
