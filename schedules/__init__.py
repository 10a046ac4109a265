"""Cron schedules of the periodic runs: the hourly docs index now; security, freshness, drift and self-improve
arrive with their issue. This function is the one place `definitions` collects them from."""

import dagster as dg


def all_schedules() -> list[dg.ScheduleDefinition]:
    from .docs import docs_index_hourly

    return [docs_index_hourly]
