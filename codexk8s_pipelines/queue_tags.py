"""The tags the run queue orders and limits runs by, beside the per-issue ones (`instance.run_queue`).

Why: Dagster's queue has one line for every run and starts the highest `dagster/priority` first (0 when a run has
none), the oldest first among equals. The periodic schedules fan out one run per watched repository: with 300
repositories a schedule tick queues 300 runs, and a label's stage run, queued a moment later, waited behind all of
them, where the platform promises it starts within a tick. So a stage run goes before every periodic run
(STAGE_PRIORITY above PERIODIC_PRIORITY), and periodic runs take at most half of `max_concurrent_runs`
(`periodic_run_limit`), so that a burst of them never holds every slot a stage run could start in.
"""

from __future__ import annotations

TAG_PREFIX = "codexk8s"
KIND_TAG = f"{TAG_PREFIX}/kind"
# One active run per branch: its runs share the branch's working folder and push to it (an issue's revise and a
# review of the PR its dev run opened are under different issue and PR tags, never under two branch tags).
BRANCH_TAG = f"{TAG_PREFIX}/branch"
PERIODIC_KIND = "periodic"

PRIORITY_TAG = "dagster/priority"  # Dagster's: read by its queue, shown in the UI
STAGE_PRIORITY = 10
PERIODIC_PRIORITY = -10  # below the runs with no priority too (spend, insight and platform jobs)


def periodic_run_limit(max_concurrent_runs: int) -> int:
    """How many periodic runs may be in progress at once: half the queue, at least one."""
    return max(1, max_concurrent_runs // 2)
