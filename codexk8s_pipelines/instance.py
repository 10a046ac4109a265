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


def kubernetes_instance(config: PlatformConfig) -> dict[str, Any]:
    """dagster.yaml of the Kubernetes environment: runs, events and schedules in PostgreSQL (dagster-postgres,
    psycopg2 driver named explicitly: SQLAlchemy ≥ 2.1 reads a bare `postgresql://` as psycopg 3), one pod per run
    (K8sRunLauncher), and the same run queue as locally. Every credential is an environment reference."""
    return {
        "telemetry": {"enabled": False},
        "storage": {
            "postgres": {
                "postgres_db": {
                    "username": {"env": "DAGSTER_PG_USERNAME"},
                    "password": {"env": "DAGSTER_PG_PASSWORD"},
                    "hostname": {"env": "DAGSTER_PG_HOST"},
                    "db_name": {"env": "DAGSTER_PG_DB"},
                    "port": 5432,
                    "scheme": "postgresql+psycopg2",
                }
            }
        },
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": {
                "job_namespace": {"env": "DAGSTER_K8S_JOB_NAMESPACE"},
                "service_account_name": {"env": "DAGSTER_K8S_SERVICE_ACCOUNT"},
                "instance_config_map": {"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"},
                "env_secrets": ["codexk8s-github", "codexk8s-database"],
                "load_incluster_config": True,
            },
        },
        "run_coordinator": run_queue(config),
    }
