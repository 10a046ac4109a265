"""The one `Definitions` of the code location, assembled for the environment `CODEXK8S_ENV` names."""

from __future__ import annotations

import warnings

import dagster as dg

import schedules
import sensors

from . import settings
from .autonomous import registry as periodic
from .delivery.stage_jobs import STAGE_JOBS
from .insight.assets import INSIGHT_ASSETS, insight_daily_job, insight_daily_schedule
from .platform_jobs import platform_migrate
from .resources import platform_resources
from .spend.assets import spend, spend_daily_job, spend_hourly_schedule


def _with_code_references(assets: list) -> list:
    """Each asset page links to the code that defines it. Dagster marks the API beta: a deliberate choice here,
    so its warning is not printed at every start of the UI."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return list(dg.with_source_code_references(assets))


def build_definitions(env: settings.Environment | None = None) -> dg.Definitions:
    env = env or settings.environment()
    # Locally steps run as processes of one run; in Kubernetes each run is its own pod (K8sRunLauncher, set
    # in the instance's dagster.yaml) and its steps share that pod's process.
    executor = dg.multiprocess_executor if env is settings.Environment.LOCAL else dg.in_process_executor
    return dg.Definitions(
        assets=_with_code_references([*periodic.ASSETS, *INSIGHT_ASSETS, spend]),
        jobs=[platform_migrate, *periodic.JOBS.values(), insight_daily_job, spend_daily_job, *STAGE_JOBS],
        sensors=sensors.all_sensors(),
        schedules=[*schedules.all_schedules(), insight_daily_schedule, spend_hourly_schedule],
        resources=platform_resources(env),
        executor=executor,
    )


defs = build_definitions()
