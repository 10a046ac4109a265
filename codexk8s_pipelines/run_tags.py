"""The platform's tags on every run, however it was launched: sensor, schedule, a UI materialization or the
Launchpad.

The run queue's limits (one active run per issue or PR, N per repository) match on tags. Sensors put them on the
runs they request, but a run launched by hand from the UI carries only what Dagster knows: a stage run from the
Launchpad would have no `codexk8s/issue` tag and skip every limit, a materialization from an asset page runs as
`__ASSET_JOB` with no tag of ours. `PlatformRunCoordinator` is the queue itself: before a run is enqueued it adds
the tags the run's own config and assets imply, so the limits hold for manual runs too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import DagsterRun
from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext

from .queue_tags import KIND_TAG


def _stage_config(run_config: Mapping[str, Any]) -> Any:
    from .delivery.stage_jobs import StageRunConfig

    try:
        raw = run_config["ops"]["prepare_context"]["config"]
        return StageRunConfig(**raw)
    except (KeyError, TypeError, ValueError):
        return None  # the run fails in prepare_context with the config error; nothing to derive tags from


def platform_tags(run: DagsterRun) -> dict[str, str]:
    """The tags a run of this job, config and asset selection carries when a sensor or schedule launches it."""
    from .autonomous.registry import PERIODIC_CHECKS, PERIODIC_TAGS
    from .delivery.stage_jobs import STAGE_JOBS, stage_run_tags

    tags: dict[str, str] = {}
    if run.job_name in {job.name for job in STAGE_JOBS}:
        tags[KIND_TAG] = "stage"
        config = _stage_config(run.run_config or {})
        if config is not None:
            tags.update(stage_run_tags(config))
    periodic = {check.asset.key for check in PERIODIC_CHECKS}
    if run.asset_selection and set(run.asset_selection) <= periodic:
        tags.update(PERIODIC_TAGS)
    return tags


class PlatformRunCoordinator(QueuedRunCoordinator):
    """Dagster's queued run coordinator (same config), adding the platform's tags before a run is queued."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        run = context.dagster_run
        missing = {k: v for k, v in platform_tags(run).items() if k not in run.tags}
        if missing:
            self._instance.add_run_tags(run.run_id, missing)
            refreshed = self._instance.get_run_by_id(run.run_id)
            if refreshed is not None:
                context = SubmitRunContext(refreshed, context.workspace)
        return super().submit_run(context)
