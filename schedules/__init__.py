"""Cron schedules of the periodic runs: the hourly docs index, and the security scan, dependency freshness, ops
drift, OSV refresh and self-improve cadence (crons from `periodic:` in codexk8s.yaml). This function is the one
place `definitions` collects them from."""

import logging

import dagster as dg

log = logging.getLogger(__name__)


def all_schedules() -> list[dg.ScheduleDefinition]:
    from codexk8s_pipelines.config import ConfigError, PlatformConfig, load_config_from_environment

    from .periodic import build_periodic_schedules

    try:
        config = load_config_from_environment()
    except ConfigError as exc:
        # The code location still loads on default crons; the runs (and the ticks that read the file) then
        # report the configuration error.
        log.warning("codexk8s.yaml cannot be read, periodic schedules use their default crons: %s", exc)
        config = PlatformConfig()
    return build_periodic_schedules(config)
