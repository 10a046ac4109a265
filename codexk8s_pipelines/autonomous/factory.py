"""The opening every partitioned periodic asset shares, written once: the configuration, the repository of the
partition, its checkout, and the asset's decoration (partitions, group, owners, kinds, checks).

Each check lives in its own folder (`security/`, `freshness/`, `drift/`, `docs_index/`, `self_improve/`) with its
asset and its asset checks; `registry.py` lists the folders and derives jobs and schedules from them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
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
            cannot(f"{self.repo.key}: cannot check out {self.repo.default_branch_shown}: {exc}")
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


class CannotDoItsJob(dg.Failure):
    """The asset could not do its job (no checkout, no database, no cluster): a `dg.Failure`, so that it fails the
    step as one anywhere it is raised, and a type of its own, so that `periodic_asset` can also report it on the
    asset's checks."""


def cannot(description: str, **metadata: Any) -> NoReturn:
    """Fail the step with one clear message: what is wrong and what to do.

    `dg.Failure` is Dagster's way to say "this could not be done" rather than "this code broke": the run page shows
    the description as the error, with the metadata beside it. `from None`: called from an `except` block, the
    caught exception is not chained, so no second message and stack follow ("During handling of…"). Not retried
    (`allow_retries=False`): a missing database or an unreachable checkout does not fix itself in seconds.
    Dagster 1.13 still stores the stack from the raise to its step executor and the run page prints it under the
    message (LogsRowStructuredContent: any non-empty `error.stack`); there is no supported way to drop it. So a
    periodic asset also reports the message on each of its checks (see `periodic_asset`), where it shows alone.
    """
    raise CannotDoItsJob(description=description, metadata=metadata or None, allow_retries=False) from None


def reporting_cannot(fn: Callable[..., Any], checks: Sequence[str] = ()) -> Callable[..., Any]:
    """`fn` as a generator that, when `fn` cannot do its job, first fails each of the asset's checks with the
    message, then fails the step.

    Why both: the failed run is what run-failure alerts (a `run_failure_sensor`, Dagster+ alerts) act on, so a
    scan that did not happen must not end green; the failed checks put the one clear message on the asset's
    Checks tab, the catalog and the run's event log without the stack Dagster prints under a step failure. ERROR
    whatever the configured severity: a check that could not look has not found the repository clean. The step's
    Failure is raised here, anew, so that its stack holds one frame of ours (and the run page names it `Failure`).
    An asset without checks (`osv_database`) takes it as a bare decorator, for that last point."""

    @functools.wraps(fn)
    def compute(*args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            result = fn(*args, **kwargs)
        except CannotDoItsJob as exc:
            description = exc.description or "the asset could not do its job"
            for check in checks:
                yield dg.AssetCheckResult(
                    check_name=check,
                    passed=False,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=f"not checked: {description}",
                )
            raise dg.Failure(description=description, metadata=exc.metadata, allow_retries=False) from None
        yield result

    return compute


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
    as upstream, and its asset checks (name → description), reported by the materialization itself, or failed
    with the message when the asset cannot do its job (`cannot`)."""
    specs = [dg.AssetCheckSpec(check, asset=name, description=text) for check, text in checks.items()]
    decorate = dg.asset(
        name=name,
        partitions_def=REPOSITORY_PARTITIONS,
        group_name=group_name,
        description=description,
        kinds=kinds,
        owners=OWNERS,
        deps=list(deps),
        check_specs=specs or None,
    )
    return lambda fn: decorate(reporting_cannot(fn, list(checks)))


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
