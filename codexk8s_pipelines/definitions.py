"""The one `Definitions` of the code location, assembled for the environment `CODEXK8S_ENV` names."""

from __future__ import annotations

import dagster as dg

import schedules
import sensors

from . import settings
from .autonomous.docs_index import docs_index, docs_index_job
from .autonomous.jobs import PERIODIC_ASSETS, PERIODIC_JOBS
from .delivery.stage_jobs import STAGE_JOBS
from .platform_jobs import platform_migrate
from .resources import platform_resources


def build_definitions(env: settings.Environment | None = None) -> dg.Definitions:
    env = env or settings.environment()
    # Locally steps run as processes of one run; in Kubernetes each run is its own pod (K8sRunLauncher, set
    # in the instance's dagster.yaml) and its steps share that pod's process.
    executor = dg.multiprocess_executor if env is settings.Environment.LOCAL else dg.in_process_executor
    return dg.Definitions(
        assets=[docs_index, *PERIODIC_ASSETS],
        jobs=[platform_migrate, docs_index_job, *PERIODIC_JOBS, *STAGE_JOBS],
        sensors=sensors.all_sensors(),
        schedules=schedules.all_schedules(),
        resources=platform_resources(env),
        executor=executor,
    )


defs = build_definitions()
