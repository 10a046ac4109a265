"""The Dagster instance settings the platform needs, generated from `codexk8s.yaml` for each environment.

Why generated: the run queue's tag limits (one active run per issue or PR, N per repository) must match the tags
the sensors put on runs; keeping both in code means a renamed tag cannot silently disable a limit.
"""

from __future__ import annotations

from typing import Any

import yaml

from .config import PlatformConfig
from .delivery.stage_jobs import TAG_PREFIX


def run_queue(config: PlatformConfig) -> dict[str, Any]:
    per_unique = {"applyLimitPerUniqueValue": True}
    return {
        "module": "dagster.core.run_coordinator",
        "class": "QueuedRunCoordinator",
        "config": {
            "max_concurrent_runs": config.concurrency.max_concurrent_runs,
            "tag_concurrency_limits": [
                {"key": f"{TAG_PREFIX}/issue", "value": per_unique, "limit": 1},
                {"key": f"{TAG_PREFIX}/pr", "value": per_unique, "limit": 1},
                {"key": f"{TAG_PREFIX}/repository", "value": per_unique, "limit": config.concurrency.per_repository},
            ],
        },
    }


def local_instance_yaml(config: PlatformConfig) -> str:
    """dagster.yaml of `make run`: SQLite storage under DAGSTER_HOME (the default) and the platform's run queue."""
    body = {"telemetry": {"enabled": False}, "run_coordinator": run_queue(config)}
    header = "# Written by `codexk8s dev` at every start from codexk8s.yaml; edit that file instead.\n"
    return header + yaml.safe_dump(body, sort_keys=False)
